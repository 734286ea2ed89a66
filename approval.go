package pam

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"
)

// Verdict is an approver's answer.
type Verdict string

const (
	Approve Verdict = "approve"
	Deny    Verdict = "deny"
)

// Decision is one approver's approve or deny. An approver decides a
// request at most once.
type Decision struct {
	Approver string    `json:"approver"` // canonical identity, or "auto:NAME" for automatic ones
	Verdict  Verdict   `json:"verdict"`
	Comment  string    `json:"comment,omitempty"`
	At       time.Time `json:"at"`
	// PolicyVersion is the policy's version when the decision was made.
	PolicyVersion int64 `json:"policy_version"`
	// Automatic marks decisions made by the policy (Auto), its
	// AutoApproveRule or an Approver plug-in rather than a person.
	Automatic bool `json:"automatic,omitempty"`
	// Escalation marks a decision made by a member of the policy's
	// EscalationGroup after the request escalated: it decides alone.
	Escalation bool `json:"escalation,omitempty"`
}

// Approver is an automatic reviewer the host plugs in (a rule engine, an
// on-call schedule, a ticket system). Submit consults each configured
// Approver in order for requests under Manual policies, until one returns
// a verdict; that verdict settles the request at once. Extend consults
// them alike for an extension, passing the request with its Extension
// pending.
type Approver interface {
	// Review returns a Review with an empty Verdict to abstain. An error
	// counts as abstaining; it is reported through Options.OnError.
	Review(ctx context.Context, r Request, p Policy) (Review, error)
}

// Review is an Approver's answer.
type Review struct {
	Verdict Verdict // "" abstains
	// By names the reviewer in the audit trail (recorded as "auto:By").
	By      string
	Comment string
}

// ApproverFunc adapts a function to the Approver interface.
type ApproverFunc func(ctx context.Context, r Request, p Policy) (Review, error)

// Review calls f.
func (f ApproverFunc) Review(ctx context.Context, r Request, p Policy) (Review, error) {
	return f(ctx, r, p)
}

// Approve records the actor's approval of request id. The request is
// approved, and its window opens, when every approver group of its policy
// has its minimum of distinct approvers who are still members.
func (m *Manager) Approve(ctx context.Context, id, comment string) (Request, error) {
	return m.act(ctx, id, ActionApprove, comment)
}

// Deny records the actor's denial of request id, which denies it.
func (m *Manager) Deny(ctx context.Context, id, comment string) (Request, error) {
	return m.act(ctx, id, ActionDeny, comment)
}

// Cancel withdraws a pending request. Only its requester may.
func (m *Manager) Cancel(ctx context.Context, id, comment string) (Request, error) {
	return m.act(ctx, id, ActionCancel, comment)
}

// Revoke ends an approved request's window now. Admins, members of the
// policy's approver groups and the requester (giving up their own access;
// Relinquish records that as the holder's own choice) may revoke. Every Manager sharing the store denies the grant from its
// next Guard on, and the context of every fn already running under it
// ends (see Guard): on this Manager before Revoke returns.
func (m *Manager) Revoke(ctx context.Context, id, comment string) (Request, error) {
	return m.act(ctx, id, ActionRevoke, comment)
}

// Relinquish ends the actor's own approved grant now, as its holder: the
// request becomes Relinquished (EventRequestRelinquished), and its
// requester is notified. Only the requester may relinquish (others get
// ErrForbidden, or ErrNotFound when they may not see the request); a
// request that is not approved and active is ErrWrongState. Running work
// ends as with Revoke: the context of every fn running under the grant
// ends with a *GrantEndedError whose Reason is GrantRelinquished, on this
// Manager before Relinquish returns.
func (m *Manager) Relinquish(ctx context.Context, id, comment string) (Request, error) {
	return m.act(ctx, id, ActionRelinquish, comment)
}

// act takes action a on request id as the context's actor.
func (m *Manager) act(ctx context.Context, id string, a Action, comment string) (Request, error) {
	actor, err := actorOf(ctx)
	if err != nil {
		return Request{}, err
	}
	if err := checkText("comment", comment, MaxReasonLen); err != nil {
		return Request{}, err
	}
	return m.change(ctx, id, a, facts{Actor: actor, Comment: comment})
}

// maxAttempts bounds the retries of a write that lost a version race.
const maxAttempts = 32

// change is every request change after submission: read the request,
// gather the facts (to those the caller gives: the actor, the comment,
// the extension's length), apply the lifecycle, commit the result with
// its events and notifications, and start again from the read when
// another writer committed first.
func (m *Manager) change(ctx context.Context, id string, a Action, given facts) (Request, error) {
	ctx, span := m.tel.start(ctx, "pam.request."+string(a), attrRequest.String(id))
	r, err := m.changeRequest(ctx, id, a, given)
	end(span, err)
	return r, err
}

func (m *Manager) changeRequest(ctx context.Context, id string, a Action, given facts) (Request, error) {
	actor := given.Actor
	if err := checkName("ID", id); err != nil {
		return Request{}, err
	}
	for range maxAttempts {
		cur, err := m.store.Request(ctx, id)
		if err != nil {
			return Request{}, err
		}
		s, err := m.cache.current(ctx)
		if err != nil {
			return Request{}, err
		}
		now, err := m.now(ctx)
		if err != nil {
			return Request{}, err
		}
		p := s.policy(cur.PolicyID)
		f, err := m.gather(ctx, &cur, a, given, p, now)
		if err != nil {
			return Request{}, err
		}
		next, events, err := apply(cur, a, f)
		if err != nil && actor != "" && actor != cur.Requester {
			// No one who may not see a request may act on it, or learn
			// from the refusal what state it is in: tell them what
			// Request tells them.
			if vf, verr := m.viewFacts(ctx, actor, &cur); verr == nil && !mayView(&cur, vf) {
				return Request{}, fmt.Errorf("%w: request %q", ErrNotFound, id)
			}
		}
		if err != nil {
			return Request{}, err
		}
		next.Version = cur.Version + 1
		tx := &Tx{Requests: []Request{next}, Events: events, Messages: m.notifications(ctx, events, next, p, now)}
		err = m.commit(ctx, tx)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return Request{}, err
		}
		m.after(tx)
		next.State = next.StateAt(now)
		return next, nil
	}
	return Request{}, fmt.Errorf("%w: request %s kept changing, gave up after %d attempts", ErrConflict, id, maxAttempts)
}

// escalator gathers the Escalator fact: r escalated, and actor is in
// policy p's EscalationGroup.
func (m *Manager) escalator(ctx context.Context, r *Request, p *Policy, actor string) (bool, error) {
	if r.EscalatedAt.IsZero() || p == nil || p.EscalationGroup == "" || actor == "" {
		return false, nil
	}
	return m.isMember(ctx, p.EscalationGroup, actor)
}

// gather collects the facts action a on r depends on. It asks the
// directory only what the action reads, and nothing when the lifecycle
// table already refuses the action (so that answer does not depend on
// the directory being up).
func (m *Manager) gather(ctx context.Context, r *Request, a Action, given facts, p *compiled, now time.Time) (facts, error) {
	f := facts{Actor: given.Actor, Now: now, Comment: given.Comment, By: given.By}
	actor := f.Actor
	if p != nil {
		f.Policy = &p.Policy
	}
	if checkState(r, a, now) != nil {
		return f, nil
	}
	var err error
	switch a {
	case ActionApprove, ActionDeny:
		f.MemberOf, err = m.memberships(ctx, f.Policy, append(approvers(r.pendingDecisions()), actor))
		if err == nil && !r.extensionPending() {
			// An escalation was the request's; an extension asked
			// later is the approvers' again.
			f.Escalator, err = m.escalator(ctx, r, f.Policy, actor)
		}
	case ActionExtend:
		if p != nil && actor == r.Requester {
			f.Verdict, f.Rejected = m.judgeExtension(ctx, r, p, f.By, f.Comment, now)
		}
	case ActionConfirm, ActionFlag:
		if actor == r.Requester {
			break // never their own review
		}
		if f.Admin, err = m.isAdmin(ctx, actor); err == nil {
			f.MemberOf, err = m.memberships(ctx, f.Policy, []string{actor})
		}
	case ActionRevoke:
		if actor == r.Requester {
			break // the requester may always give up their own access
		}
		if f.Admin, err = m.isAdmin(ctx, actor); err == nil {
			f.MemberOf, err = m.memberships(ctx, f.Policy, []string{actor})
		}
	}
	return f, err
}

// memberships returns the approver groups of p that each of people is in
// now.
func (m *Manager) memberships(ctx context.Context, p *Policy, people []string) (membership, error) {
	memberOf := make(membership, len(people))
	if p == nil {
		return memberOf, nil
	}
	for _, who := range people {
		for gi, g := range p.ApproverGroups {
			ok, err := m.isMember(ctx, g.Group, who)
			if err != nil {
				return nil, err
			}
			if ok {
				memberOf[who] = append(memberOf[who], gi)
			}
		}
	}
	return memberOf, nil
}

// Reviewable returns the requests waiting for the actor: pending, or
// active with an extension pending, not their own, not yet decided by
// them (the extension, for those), under a policy with an approver group
// they belong to, or escalated to them. All of them, oldest first, by
// when the request or the extension was asked; ReviewableRequests reads
// them a page at a time.
func (m *Manager) Reviewable(ctx context.Context) ([]Request, error) {
	var out []Request
	f := RequestFilter{Limit: MaxPageSize}
	for {
		page, next, err := m.ReviewableRequests(ctx, f)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if next == "" {
			break
		}
		f.After = next
	}
	SortReviewable(out)
	return out, nil
}

// SortReviewable orders requests as Reviewable returns them: by when
// the request, or its pending extension, was asked.
func SortReviewable(rs []Request) {
	asked := func(r *Request) time.Time {
		if r.extensionPending() {
			return r.Extension.RequestedAt
		}
		return r.CreatedAt
	}
	sort.SliceStable(rs, func(i, j int) bool { return asked(&rs[i]).Before(asked(&rs[j])) })
}

// ReviewableRequests returns one page of what Reviewable returns, in ID
// order (f.Newest: newest first), and the cursor of the next page ("" at
// the end). f narrows it: Requester, PolicyIDs, Search, After and Limit
// (0: DefaultPageSize, at most MaxPageSize); States, DueBy and
// DecidedBy are not for this list (ErrInvalid). A page shorter than
// Limit is the last; a full one returns the cursor of the next, which
// may be empty.
func (m *Manager) ReviewableRequests(ctx context.Context, f RequestFilter) ([]Request, string, error) {
	actor, err := actorOf(ctx)
	if err != nil {
		return nil, "", err
	}
	switch {
	case f.Limit < 0 || f.Limit > MaxPageSize:
		return nil, "", invalid("Limit", "must be between 0 and %d", MaxPageSize)
	case len(f.States) > 0 || !f.DueBy.IsZero() || f.DecidedBy != "":
		return nil, "", invalid("RequestFilter", "States, DueBy and DecidedBy do not apply to what waits for review")
	}
	if f.Limit == 0 {
		f.Limit = DefaultPageSize
	}
	if f.Requester != "" {
		if f.Requester, err = CanonicalIdentity(f.Requester); err != nil {
			return nil, "", err
		}
	}
	if err := ValidateRequestFilter(&f); err != nil {
		return nil, "", err
	}
	s, err := m.cache.current(ctx)
	if err != nil {
		return nil, "", err
	}
	now, err := m.now(ctx)
	if err != nil {
		return nil, "", err
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
	limit := f.Limit
	f.States, f.Limit = []State{Pending, Approved}, MaxPageSize
	for {
		page, err := m.store.Requests(ctx, f)
		if err != nil {
			return nil, "", err
		}
		for _, r := range page {
			p := s.policy(r.PolicyID)
			if ph := phase(&r, now); p == nil || r.Requester == actor || (ph != Pending && ph != extending) || contains(approvers(r.pendingDecisions()), actor) {
				continue
			}
			ok, err := inGroups(p)
			if err == nil && !ok {
				ok, err = m.escalator(ctx, &r, &p.Policy, actor)
			}
			if err != nil {
				return nil, "", err
			}
			if ok {
				r.State = r.StateAt(now)
				out = append(out, r)
				if len(out) == limit {
					return out, r.ID, nil
				}
			}
		}
		if len(page) < f.Limit {
			return out, "", nil
		}
		f.After = page[len(page)-1].ID
	}
}

// IsAdmin reports whether the actor is in Options.AdminGroup. It is a
// hint for front ends; the Manager checks on every call that needs it.
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
// admin, or a member of one of its policy's approver groups. It is a hint
// for front ends; Request, Requests and Audit enforce the same rule.
func (m *Manager) MayView(ctx context.Context, r Request) (bool, error) {
	actor, err := actorOf(ctx)
	if err != nil {
		return false, err
	}
	f, err := m.viewFacts(ctx, actor, &r)
	return err == nil && mayView(&r, f), err
}
