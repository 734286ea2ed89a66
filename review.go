package pam

import (
	"context"
	"errors"
	"fmt"
	"sort"
)

// Reviewable returns the requests waiting for the actor: pending, not
// their own, not yet decided by them, under a policy with an approver
// group they belong to. Oldest first.
func (m *Manager) Reviewable(ctx context.Context) ([]Request, error) {
	actor, err := actorOf(ctx)
	if err != nil {
		return nil, err
	}
	s, err := m.current(ctx)
	if err != nil {
		return nil, err
	}
	now, err := m.now(ctx)
	if err != nil {
		return nil, err
	}
	member := map[string]bool{} // group → the actor is in it
	inGroups := func(p *compiled) (bool, error) {
		for _, g := range p.ApproverGroups {
			ok, seen := member[g.Group]
			if !seen {
				if ok, err = m.isMember(ctx, g.Group, actor); err != nil {
					return false, err
				}
				member[g.Group] = ok
			}
			if ok {
				return true, nil
			}
		}
		return false, nil
	}
	var out []Request
	f := RequestFilter{States: []State{Pending}, Limit: MaxPageSize}
	for {
		page, err := m.store.Requests(ctx, f)
		if err != nil {
			return nil, err
		}
		for _, r := range page {
			p := s.policies[r.PolicyID]
			if p == nil || r.Requester == actor || r.StateAt(now) != Pending || contains(approvers(r.Decisions), actor) {
				continue
			}
			ok, err := inGroups(p)
			if err != nil {
				return nil, err
			}
			if ok {
				r.State = Pending
				out = append(out, r)
			}
		}
		if len(page) < f.Limit {
			break
		}
		f.After = page[len(page)-1].ID
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, nil
}

// IsAdmin reports whether the actor is in Options.AdminGroup.
func (m *Manager) IsAdmin(ctx context.Context) (bool, error) {
	_, err := m.requireAdmin(ctx)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrForbidden):
		return false, nil
	}
	return false, err
}

// MayView reports whether the actor may see request r: its requester, an
// admin, or a member of one of its policy's approver groups.
func (m *Manager) MayView(ctx context.Context, r Request) (bool, error) {
	actor, err := actorOf(ctx)
	if err != nil {
		return false, err
	}
	if actor == r.Requester {
		return true, nil
	}
	if ok, err := m.IsAdmin(ctx); ok || err != nil {
		return ok, err
	}
	s, err := m.current(ctx)
	if err != nil {
		return false, err
	}
	p := s.policies[r.PolicyID]
	if p == nil {
		return false, nil
	}
	for _, g := range p.ApproverGroups {
		ok, err := m.isMember(ctx, g.Group, actor)
		if err != nil {
			return false, fmt.Errorf("pam: %w", err)
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}
