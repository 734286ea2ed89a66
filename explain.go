package pam

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// What the user is told when Guard or Check finds no grant: besides why
// no grant counts, what they can do about it. A request of theirs may be
// pending under the policy (its ID, the approvals so far, the approver
// groups it waits for), or they may not request under the policy at all
// (RequesterGroups). These facts are gathered only for such a denial,
// never for an allowed operation, so Guard's path to running fn reads
// nothing more.

// noApprovedRequest is PolicyCheck.Missing when the actor has no grant
// under the policy at all.
const noApprovedRequest = "no approved request"

// maxPendingExplained bounds the pending requests a denial reads.
const maxPendingExplained = 16

// denialFacts are what explainMissing reads for one policy without a
// grant.
type denialFacts struct {
	// pending is the actor's newest request pending under the policy.
	pending *Request
	// memberOf maps pending's approvers to the policy's approver groups
	// they are in now; nil when the directory could not say.
	memberOf membership
	// ineligible: the actor is not in the policy's RequesterGroups.
	ineligible bool
	// dirErr: the directory could not say whether they are (fail
	// closed: they are taken as not eligible).
	dirErr error
}

// explain gathers the denial facts of every covering policy res found no
// grant for, adds them to its PolicyCheck, and makes res.Err say them for
// the first such policy. It reads the actor's pending requests under
// those policies in one bounded store read, and the directory: for the
// approvers of a pending request, or else for the actor's membership of
// the policy's RequesterGroups. A read that fails leaves less to say,
// never another decision: res stays a denial with a *NotApprovedError.
func (m *Manager) explain(ctx context.Context, res *CheckResult, cands []*compiled) {
	var na *NotApprovedError
	if !errors.As(res.Err, &na) {
		return
	}
	var missing []int
	var ids []string
	for i := range res.Policies {
		if pc := &res.Policies[i]; pc.Covered && pc.Grant == "" && pc.Missing != "" {
			missing = append(missing, i)
			ids = append(ids, pc.PolicyID)
		}
	}
	if len(missing) == 0 {
		return
	}
	pending := map[string]*Request{}
	rs, err := m.store.Requests(ctx, RequestFilter{Requester: res.Actor, PolicyIDs: ids, States: []State{Pending}, Limit: maxPendingExplained})
	if err != nil && ctx.Err() == nil {
		m.onError(fmt.Errorf("pam: read the pending requests of %s to explain a denial: %w", res.Actor, err))
	}
	for i := range rs {
		r := &rs[i]
		if r.StateAt(res.At) != Pending {
			continue
		}
		if cur := pending[r.PolicyID]; cur == nil || r.CreatedAt.After(cur.CreatedAt) {
			pending[r.PolicyID] = r
		}
	}
	for _, i := range missing {
		pc, p := &res.Policies[i], &cands[i].Policy
		var f denialFacts
		if r := pending[pc.PolicyID]; r != nil {
			f.pending = r
			if f.memberOf, err = m.memberships(ctx, p, approvers(r.Decisions)); err != nil {
				f.memberOf = nil
			}
		} else if len(p.RequesterGroups) > 0 {
			ok, err := m.eligible(ctx, p, res.Actor)
			f.ineligible, f.dirErr = !ok, err
			if err != nil && ctx.Err() == nil {
				m.onError(fmt.Errorf("pam: check whether %s may request under policy %s: %w", res.Actor, p.ID, err))
			}
		}
		explainMissing(pc, p, res.Actor, &f)
	}
	first := &res.Policies[missing[0]]
	res.Err = &NotApprovedError{Actor: na.Actor, Task: na.Task, PolicyID: first.PolicyID, Reason: first.Missing,
		Pending: first.Pending, Ineligible: first.Ineligible}
}

// explainMissing adds to pc, a covering policy p without a grant, what
// f says the actor can do: a pending request takes precedence (it may
// still be approved), then not being eligible to request. Why no grant
// counted, unless it is only that none was approved, stays in front.
func explainMissing(pc *PolicyCheck, p *Policy, actor string, f *denialFacts) {
	var text string
	switch {
	case f.pending != nil:
		pc.Pending = f.pending.ID
		text = pendingNote(f.pending, p, f.memberOf)
	case f.dirErr != nil:
		pc.Ineligible = true
		text = fmt.Sprintf("whether %s may request under this policy could not be checked (%v); %s", actor, f.dirErr, requesterGroupsRule(p))
	case f.ineligible:
		pc.Ineligible = true
		text = actor + " may not request under this policy: " + requesterGroupsRule(p)
	default:
		return
	}
	if pc.Missing != "" && pc.Missing != noApprovedRequest {
		text = pc.Missing + "; " + text
	}
	pc.Missing = text
}

// pendingNote says where pending request r stands under p: "request r1
// is pending: 1 of 2 approvals (bob), waiting for mailbox-managers". The
// approvals are those that count (seat: one group each, from approvers
// still in it), named in decision order; each group short of its
// minimum is named, with how many more when that is more than one. With
// memberOf nil (the directory could not say) it counts approvals only.
func pendingNote(r *Request, p *Policy, memberOf membership) string {
	approved := approvers(r.Decisions)
	if memberOf == nil {
		need := 0
		for _, g := range p.ApproverGroups {
			need += g.min()
		}
		return fmt.Sprintf("request %s is pending: %d approved so far, %d approvals needed", r.ID, len(approved), need)
	}
	seats, holder := seat(p.ApproverGroups, approved, memberOf)
	counts := make([]bool, len(approved))
	lack := make([]int, len(p.ApproverGroups))
	for s, gi := range seats {
		if holder[s] >= 0 {
			counts[holder[s]] = true
		} else {
			lack[gi]++
		}
	}
	var counted []string
	for a, ok := range counts {
		if ok {
			counted = append(counted, approved[a])
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "request %s is pending: %d of %d approvals", r.ID, len(counted), len(seats))
	if len(counted) > 0 {
		b.WriteString(" (" + strings.Join(counted, ", ") + ")")
	}
	var waiting []string
	for gi, g := range p.ApproverGroups {
		switch n := lack[gi]; {
		case n == 1:
			waiting = append(waiting, g.Group)
		case n > 1:
			waiting = append(waiting, fmt.Sprintf("%s (%d more)", g.Group, n))
		}
	}
	if len(waiting) > 0 {
		b.WriteString(", waiting for " + andList(waiting))
	}
	return b.String()
}

// andList joins items as "a", "a and b", "a, b and c".
func andList(items []string) string {
	if len(items) <= 1 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}
