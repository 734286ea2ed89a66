package pam

import (
	"context"
	"fmt"
)

// Progress is where a request waiting for approval stands, for a front
// end to show ("1 of 2 approvals: bob; waiting for approvers"): the
// request itself while pending, its extension while one is pending.
type Progress struct {
	// Waiting reports whether the request (or its extension) waits for
	// decisions now. The counts below are meaningful only then.
	Waiting bool `json:"waiting"`
	// Extension: what waits is the extension of an active grant.
	Extension bool `json:"extension,omitempty"`
	// Have approvals count toward Need, the sum of the groups' minimums.
	Have int `json:"have"`
	Need int `json:"need"`
	// Groups are the policy's approver groups, in its order, with the
	// approvals that count for each. An approver counts for one group
	// only, and only while still a member (the rule that approves).
	Groups []GroupProgress `json:"groups,omitempty"`
	// Uncounted are approvals that count for no group: approvers who
	// have left their groups, or approvals beyond a group's minimum.
	Uncounted []string `json:"uncounted,omitempty"`
	// Escalated: the request was escalated (Policy.EscalateAfter), and
	// the escalation group's members may decide it alone.
	Escalated bool `json:"escalated,omitempty"`
	// MayDecide reports whether the caller may approve or deny it now:
	// what Reviewable lists.
	MayDecide bool `json:"may_decide"`
}

// GroupProgress is one approver group's part of a Progress.
type GroupProgress struct {
	Group     string   `json:"group"`
	Need      int      `json:"need"`
	Approvers []string `json:"approvers,omitempty"` // those that count, in decision order
}

// Progress reports where request id stands for the caller: the
// approvals that count per approver group, what is missing, and
// whether the caller may decide it. Those who may not see the request
// get ErrNotFound, as from Request. A directory error is returned: the
// counts would be guesses.
func (m *Manager) Progress(ctx context.Context, id string) (Progress, error) {
	actor, err := actorOf(ctx)
	if err != nil {
		return Progress{}, err
	}
	r, err := m.Request(ctx, id)
	if err != nil {
		return Progress{}, err
	}
	s, err := m.cache.current(ctx)
	if err != nil {
		return Progress{}, err
	}
	now, err := m.now(ctx)
	if err != nil {
		return Progress{}, err
	}
	ph := phase(&r, now)
	p := s.policy(r.PolicyID)
	var out Progress
	if p == nil || (ph != Pending && ph != extending) {
		return out, nil
	}
	out.Waiting, out.Extension, out.Escalated = true, ph == extending, !r.EscalatedAt.IsZero()
	approved := approvers(r.pendingDecisions())
	memberOf, err := m.memberships(ctx, &p.Policy, approved)
	if err != nil {
		return Progress{}, fmt.Errorf("pam: progress of request %s: %w", id, err)
	}
	seats, holder := seat(p.ApproverGroups, approved, memberOf)
	counted := make([]bool, len(approved))
	out.Groups = make([]GroupProgress, len(p.ApproverGroups))
	for gi, g := range p.ApproverGroups {
		out.Groups[gi] = GroupProgress{Group: g.Group, Need: g.min()}
	}
	for si := range seats {
		if a := holder[si]; a >= 0 {
			counted[a] = true
		}
	}
	// Named in decision order within each group.
	for a, who := range approved {
		if !counted[a] {
			out.Uncounted = append(out.Uncounted, who)
			continue
		}
		for si, gi := range seats {
			if holder[si] == a {
				out.Groups[gi].Approvers = append(out.Groups[gi].Approvers, who)
			}
		}
		out.Have++
	}
	out.Need = len(seats)
	if r.Requester != actor && !contains(approved, actor) {
		in := false
		for _, g := range p.ApproverGroups {
			if in, err = m.isMember(ctx, g.Group, actor); err != nil || in {
				break
			}
		}
		if err == nil && !in {
			in, err = m.escalator(ctx, &r, &p.Policy, actor)
		}
		if err != nil {
			return Progress{}, err
		}
		out.MayDecide = in
	}
	return out, nil
}
