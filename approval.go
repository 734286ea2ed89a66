package pam

import (
	"context"
	"fmt"
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
}

// Approver is an automatic reviewer the host plugs in (a rule engine, an
// on-call schedule, a ticket system). Submit consults each configured
// Approver in order for requests under Manual policies, until one returns
// a verdict; that verdict settles the request at once.
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

// membership maps an approver to the indices of the policy's approver
// groups they belong to now.
type membership map[string][]int

// decide records a person's decision on r under policy p. memberOf must
// hold the current group memberships of d.Approver and of everyone who
// approved before. It returns the next state and the audit events.
//
// Rules: only pending requests are decided; never by the requester; one
// decision per approver; only members of an approver group; any deny
// denies; the request is approved once every group has its minimum of
// distinct approvers who are still members.
func decide(r Request, p *Policy, d Decision, memberOf membership, now time.Time) (Request, []Event, error) {
	if s := r.StateAt(now); s != Pending {
		return r, nil, fmt.Errorf("%w: decide a %s request", ErrWrongState, s)
	}
	if d.Approver == r.Requester {
		return r, nil, ErrSelfApproval
	}
	for _, prev := range r.Decisions {
		if prev.Approver == d.Approver {
			return r, nil, fmt.Errorf("%w: %s already decided %s", ErrAlreadyDecided, d.Approver, prev.Verdict)
		}
	}
	if len(memberOf[d.Approver]) == 0 {
		return r, nil, fmt.Errorf("%w: %s is not in an approver group of policy %s", ErrForbidden, d.Approver, p.ID)
	}
	r = r.clone()
	r.Decisions = append(r.Decisions, d)
	detail := map[string]string{"verdict": string(d.Verdict)}
	if d.Comment != "" {
		detail["comment"] = d.Comment
	}
	events := []Event{requestEvent(EventRequestDecision, &r, d.Approver, now, detail)}
	events[0].Outcome = Outcome(d.Verdict)
	switch d.Verdict {
	case Deny:
		r = closeRequest(r, Denied, d.Approver, now)
		events = append(events, requestEvent(EventRequestDenied, &r, d.Approver, now, nil))
	case Approve:
		if quorum(p.ApproverGroups, approvers(r.Decisions), memberOf) {
			var e Event
			r, e = approve(r, p, now)
			e.Actor = d.Approver
			events = append(events, e)
		}
	default:
		return r, nil, invalid("Verdict", "unknown verdict %q", d.Verdict)
	}
	return r, events, nil
}

// settle applies an automatic verdict to a new pending request.
func settle(r Request, p *Policy, d Decision, now time.Time) (Request, []Event) {
	d.Automatic = true
	r = r.clone()
	r.Decisions = append(r.Decisions, d)
	detail := map[string]string{"verdict": string(d.Verdict), "automatic": "true"}
	if d.Comment != "" {
		detail["comment"] = d.Comment
	}
	events := []Event{requestEvent(EventRequestDecision, &r, d.Approver, now, detail)}
	events[0].Outcome = Outcome(d.Verdict)
	if d.Verdict == Deny {
		r = closeRequest(r, Denied, d.Approver, now)
		return r, append(events, requestEvent(EventRequestDenied, &r, d.Approver, now, nil))
	}
	r, e := approve(r, p, now)
	e.Actor = d.Approver
	return r, append(events, e)
}

// approvers returns the people who approved, in decision order.
func approvers(ds []Decision) []string {
	var out []string
	for _, d := range ds {
		if d.Verdict == Approve && !d.Automatic {
			out = append(out, d.Approver)
		}
	}
	return out
}

// quorum reports whether the approvers, each counted for at most one group,
// can give every group its minimum. Approvers who are no longer members of
// any group (memberOf is current) count for nothing. It is a bipartite
// matching of approvers to group seats (Kuhn's augmenting paths); policies
// have few seats, so the simple algorithm is plenty.
func quorum(groups []ApproverGroup, approvers []string, memberOf membership) bool {
	var seats []int // seat → group index
	for gi, g := range groups {
		for range g.min() {
			seats = append(seats, gi)
		}
	}
	if len(approvers) < len(seats) {
		return false
	}
	inGroup := func(a string, gi int) bool {
		for _, x := range memberOf[a] {
			if x == gi {
				return true
			}
		}
		return false
	}
	holder := make([]int, len(seats)) // seat → approver index, -1 when free
	for i := range holder {
		holder[i] = -1
	}
	var try func(a int, seen []bool) bool
	try = func(a int, seen []bool) bool {
		for s, gi := range seats {
			if seen[s] || !inGroup(approvers[a], gi) {
				continue
			}
			seen[s] = true
			if holder[s] == -1 || try(holder[s], seen) {
				holder[s] = a
				return true
			}
		}
		return false
	}
	filled := 0
	for a := range approvers {
		if try(a, make([]bool, len(seats))) {
			filled++
		}
	}
	return filled == len(seats)
}
