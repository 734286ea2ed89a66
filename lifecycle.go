package pam

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Action is something that can happen to a request. Which actions a
// request allows depends only on its state (see Request.Allows); who may
// take them depends on the actor (see the Manager method of each).
type Action string

const (
	// ActionSettle applies an automatic verdict (an Auto policy, the
	// policy's auto-approval rule or an Approver) to a request just
	// submitted, or to an extension just asked.
	ActionSettle Action = "settle"
	// ActionApprove and ActionDeny record one approver's decision.
	ActionApprove Action = "approve"
	ActionDeny    Action = "deny"
	// ActionCancel withdraws a pending request (its requester only).
	ActionCancel Action = "cancel"
	// ActionRevoke ends an approved request's window early.
	ActionRevoke Action = "revoke"
	// ActionRelinquish ends an approved request's window early at its
	// holder's own choice (its requester only): the request is
	// Relinquished, not Revoked, so the trail and the grant's end say
	// that no one took the access away.
	ActionRelinquish Action = "relinquish"
	// ActionExpire records the expiry of a request whose deadline passed.
	ActionExpire Action = "expire"
	// ActionRemind and ActionEscalate nudge a pending request's deciders
	// when its policy says (Policy.RemindAfter, EscalateAfter); Sweep
	// takes them when they are due.
	ActionRemind   Action = "remind"
	ActionEscalate Action = "escalate"
	// ActionUse takes one of a use-limited grant's runs (Request.MaxUses):
	// Guard takes it in the commit of the run's start, by the grant's
	// holder.
	ActionUse Action = "use"
	// ActionExtend asks for an active grant's window to last longer (its
	// requester only). The extension is then decided like a request:
	// ActionSettle, ActionApprove and ActionDeny apply to it while it is
	// pending.
	ActionExtend Action = "extend"
	// ActionBreakGlass opens a request at once, without approval, for
	// its requester, a member of the policy's BreakGlass.Group
	// (Manager.BreakGlass), and opens its post-hoc review.
	ActionBreakGlass Action = "break_glass"
	// ActionConfirm and ActionFlag record an approver's post-hoc review
	// of a break-glass request, whatever became of its grant; a flag on
	// an active grant revokes it. ActionReviewOverdue tells the
	// reviewers again that the review is overdue; Sweep takes it when
	// due.
	ActionConfirm       Action = "confirm"
	ActionFlag          Action = "flag"
	ActionReviewOverdue Action = "review_overdue"
)

// Rows of the lifecycle table that are no State of their own: an
// approved request is scheduled before its window opens, and extending
// while an extension of its window waits for a decision; due is a
// pending request whose deadline has passed (StateAt says Expired) while
// its recorded state is still Pending: the only thing left to do is to
// record the expiry; dueGrant is an Approved one whose window has ended
// unrecorded: record the expiry, or review it if it was break-glass.
const (
	scheduled State = "scheduled"
	extending State = "extending"
	due       State = "due"
	dueGrant  State = "due grant"
)

// lifecycle is the table of legal (state, action) pairs, the first rule
// every transition passes. The state is the request's state as of now
// (StateAt), or one of the rows above (phase). Terminal states never
// change: Denied and Canceled allow nothing, and Revoked, Relinquished
// and Expired only the post-hoc review of a break-glass grant (confirm,
// flag, review_overdue), which changes the review and nothing else of
// the request. Settle, approve and deny decide what is pending: the
// request, or on an extending one, its extension.
var lifecycle = map[State][]Action{
	Pending:      {ActionSettle, ActionApprove, ActionDeny, ActionCancel, ActionRemind, ActionEscalate, ActionBreakGlass},
	scheduled:    {ActionRevoke, ActionRelinquish},
	Approved:     {ActionRevoke, ActionRelinquish, ActionExtend, ActionUse, ActionConfirm, ActionFlag, ActionReviewOverdue},
	extending:    {ActionSettle, ActionApprove, ActionDeny, ActionRevoke, ActionRelinquish, ActionUse, ActionConfirm, ActionFlag, ActionReviewOverdue},
	due:          {ActionExpire},
	dueGrant:     {ActionExpire, ActionConfirm, ActionFlag, ActionReviewOverdue},
	Revoked:      {ActionConfirm, ActionFlag, ActionReviewOverdue},
	Relinquished: {ActionConfirm, ActionFlag, ActionReviewOverdue},
	Expired:      {ActionConfirm, ActionFlag, ActionReviewOverdue},
}

// phase returns r's row in the lifecycle table at now.
func phase(r *Request, now time.Time) State {
	s := r.StateAt(now)
	switch {
	case s == Expired && r.State == Approved:
		return dueGrant
	case s == Expired && !r.State.Terminal():
		return due
	case s == Approved && now.Before(r.ApprovedAt):
		return scheduled
	case s == Approved && r.extensionPending():
		return extending
	}
	return s
}

// phaseText says what a row of the table means, for errors.
func phaseText(s State) string {
	switch s {
	case scheduled:
		return "approved, its window not open yet"
	case extending:
		return "approved, with an extension pending"
	}
	return string(s)
}

// Allows reports whether the lifecycle allows action a on r at now,
// whoever takes it. Front ends use it to offer only the actions that can
// succeed; the Manager still checks who acts.
func (r *Request) Allows(a Action, now time.Time) bool {
	return slices.Contains(lifecycle[phase(r, now)], a)
}

// checkState is the table lookup: ErrWrongState unless a is legal for r
// at now.
func checkState(r *Request, a Action, now time.Time) error {
	if r.Allows(a, now) {
		return nil
	}
	return fmt.Errorf("%w: cannot %s a request that is %s", ErrWrongState, a, phaseText(phase(r, now)))
}

// facts are what a transition depends on besides the request itself,
// gathered by the Manager (from the clock, the policy cache and the
// directory) before apply decides. Each action reads only some of them.
type facts struct {
	// Actor is the canonical identity acting; "" when the engine acts
	// (ActionSettle, ActionExpire).
	Actor string
	Now   time.Time
	// Comment goes into the events of approve, deny, cancel, revoke and
	// relinquish; for extend it is the extension's reason.
	Comment string
	// By is how much longer extend asks the window to last.
	By time.Duration
	// Policy is the request's live policy; nil when it was deleted.
	Policy *Policy
	// Admin: Actor is in the admin group (read for ActionRevoke).
	Admin bool
	// MemberOf maps Actor, and for approve and deny everyone who approved
	// before, to the indices of the policy's approver groups they are in
	// now.
	MemberOf membership
	// Verdict is the automatic decision of ActionSettle, and of extend,
	// which it then settles at once; zero when there is none.
	Verdict Decision
	// Rejected is the policy's request rule rejecting an extension
	// (read by extend); nil when it does not.
	Rejected error
	// Eligible: Actor is in one of the policy's RequesterGroups (read by
	// mayRequest, for a policy that names any).
	Eligible bool
	// Escalator: the request escalated and Actor is in the policy's
	// EscalationGroup (read by approve, deny and the read rule).
	Escalator bool
	// BreakGlasser: Actor is in the policy's BreakGlass.Group;
	// BreakGlassUsed: how many times Actor broke glass under the policy
	// within its BreakGlass.Period up to Now (both read by break_glass).
	BreakGlasser   bool
	BreakGlassUsed int
}

// membership maps an identity to the indices of the policy's approver
// groups it belongs to now.
type membership map[string][]int

// apply is the request lifecycle: one pure function of the request as
// read, the action and the facts, returning the next request and the audit
// events that record the change. It never touches the store, the clock or
// the directory; the caller sets the next Version and commits.
//
// Rules, after the table:
//   - settle: the automatic verdict decides alone.
//   - approve, deny: the policy still exists; never by the requester; one
//     decision per approver; only by a member of an approver group; any
//     deny denies; approved once every group has its minimum of distinct
//     approvers who are still members.
//   - cancel: only by the requester.
//   - revoke: by the requester (giving up their own access), an admin, or
//     a member of one of the policy's approver groups.
//   - relinquish: only by the requester, the grant's holder; whether the
//     policy still exists does not matter.
//   - expire: the request closes at its deadline, whenever it is recorded;
//     an extension still pending lapses with it (Expired).
//   - extend: only by the requester, the grant's holder, under the live
//     policy, for a grant no policy change has cut, by a positive
//     duration that keeps the whole window (from its opening to its new
//     end) within the policy's MaxExtendedDuration; the request rule may
//     reject it (f.Rejected); an automatic verdict (f.Verdict) settles it
//     at once. Decisions on it follow the rules of approve and deny, and
//     the window moves when the quorum is reached.
//   - remind, escalate: only when due (RemindAt, EscalateAt has come);
//     the next reminder comes on the request's cadence (every
//     RemindAfter from the first), unless past the pending deadline or
//     the policy stopped reminding; a request
//     escalates once, and from then a member of the escalation group
//     (Escalator) may approve or deny it alone.
//   - use: only by the requester, on a grant with runs left; taking the
//     last writes request.spent. The request stays Approved until its
//     window ends, so a run started under it runs on, and Guard starts
//     no other.
//   - break_glass: only by the requester, a member of the policy's
//     BreakGlass.Group, for at most its break-glass duration, fewer than
//     Limit times per Period; approved at once, its review pending and
//     due ReviewWithin from now.
//   - confirm, flag: a break-glass request whose review is pending; by
//     an admin or a member of one of the policy's approver groups, never
//     the requester. A flag on an active grant (state Approved) also
//     revokes it; otherwise only the review changes.
//   - review_overdue: only when due (the review's NotifyAt has come);
//     the next on the review's cadence (every ReviewWithin), past now.
func apply(r Request, a Action, f facts) (Request, []Event, error) {
	if err := checkState(&r, a, f.Now); err != nil {
		return r, nil, err
	}
	switch a {
	case ActionSettle:
		return settle(r, f)
	case ActionApprove, ActionDeny:
		return decide(r, Verdict(a), f)
	case ActionCancel:
		if f.Actor != r.Requester {
			return r, nil, fmt.Errorf("%w: only the requester may cancel", ErrForbidden)
		}
		r = closeRequest(r, Canceled, f.Actor, f.Now)
		return r, []Event{requestEvent(EventRequestCanceled, &r, f.Actor, f.Now, commentDetail(f.Comment))}, nil
	case ActionRevoke:
		if f.Actor != r.Requester && !f.Admin && len(f.MemberOf[f.Actor]) == 0 {
			return r, nil, fmt.Errorf("%w: %s may not revoke request %s", ErrForbidden, f.Actor, r.ID)
		}
		r = closeRequest(r, Revoked, f.Actor, f.Now)
		return r, []Event{requestEvent(EventRequestRevoked, &r, f.Actor, f.Now, commentDetail(f.Comment))}, nil
	case ActionRelinquish:
		if f.Actor != r.Requester {
			return r, nil, fmt.Errorf("%w: only the holder of request %s may relinquish it", ErrForbidden, r.ID)
		}
		r = closeRequest(r, Relinquished, f.Actor, f.Now)
		return r, []Event{requestEvent(EventRequestRelinquished, &r, f.Actor, f.Now, commentDetail(f.Comment))}, nil
	case ActionRemind:
		if r.RemindAt.IsZero() || r.RemindAt.After(f.Now) {
			return r, nil, fmt.Errorf("%w: no reminder of request %s is due", ErrWrongState, r.ID)
		}
		// The next on the request's own cadence, past now: reminders a
		// sweep missed are not made up.
		next := time.Time{}
		if p := f.Policy; p != nil && p.RemindAfter > 0 {
			next = r.RemindAt.Add((f.Now.Sub(r.RemindAt)/p.RemindAfter + 1) * p.RemindAfter)
			if !next.Before(r.PendingUntil) {
				next = time.Time{}
			}
		}
		r.RemindAt = next
		return r, []Event{requestEvent(EventRequestReminded, &r, "", f.Now, nil)}, nil
	case ActionEscalate:
		if r.EscalateAt.IsZero() || r.EscalateAt.After(f.Now) {
			return r, nil, fmt.Errorf("%w: request %s is not due to escalate", ErrWrongState, r.ID)
		}
		r.EscalateAt, r.EscalatedAt = time.Time{}, f.Now
		var detail map[string]string
		if p := f.Policy; p != nil {
			detail = map[string]string{"group": p.EscalationGroup}
		}
		return r, []Event{requestEvent(EventRequestEscalated, &r, "", f.Now, detail)}, nil
	case ActionUse:
		switch {
		case f.Actor != r.Requester:
			return r, nil, fmt.Errorf("%w: only the holder of request %s may run under it", ErrForbidden, r.ID)
		case r.MaxUses == 0:
			return r, nil, invalid("Action", "request %s does not limit its runs", r.ID)
		case r.Uses >= r.MaxUses:
			return r, nil, fmt.Errorf("%w: request %s has used its %d runs", ErrWrongState, r.ID, r.MaxUses)
		}
		r.Uses++
		if r.Uses < r.MaxUses {
			return r, nil, nil
		}
		return r, []Event{requestEvent(EventRequestSpent, &r, f.Actor, f.Now, map[string]string{"max_uses": fmt.Sprint(r.MaxUses)})}, nil
	case ActionExtend:
		return extend(r, f)
	case ActionBreakGlass:
		return breakGlass(r, f)
	case ActionConfirm, ActionFlag:
		return review(r, a, f)
	case ActionReviewOverdue:
		v := r.BreakGlass
		if v == nil || v.State != ReviewPending || v.NotifyAt.IsZero() || v.NotifyAt.After(f.Now) {
			return r, nil, fmt.Errorf("%w: the review of request %s is not overdue", ErrWrongState, r.ID)
		}
		r = r.clone()
		v = r.BreakGlass
		due := v.NotifyAt
		v.NotifyAt = time.Time{}
		if v.Every > 0 {
			// Notifications a sweep missed are not made up.
			v.NotifyAt = due.Add((f.Now.Sub(due)/v.Every + 1) * v.Every)
		}
		return r, []Event{requestEvent(EventRequestBreakGlassOverdue, &r, "", f.Now, map[string]string{
			"due_at": v.DueAt.UTC().Format(time.RFC3339Nano),
		})}, nil
	case ActionExpire:
		from := r.State
		r = closeRequest(r, Expired, "", r.deadline())
		return r, []Event{requestEvent(EventRequestExpired, &r, "", f.Now, map[string]string{
			"from": string(from), "expired_at": r.ClosedAt.UTC().Format(time.RFC3339Nano),
		})}, nil
	}
	return r, nil, invalid("Action", "unknown action %q", a)
}

// breakGlass opens r, a new request of f.Actor, at once as break-glass.
func breakGlass(r Request, f facts) (Request, []Event, error) {
	p := f.Policy
	switch {
	case p == nil || p.BreakGlass == nil:
		return r, nil, fmt.Errorf("%w: the policy of request %s does not allow break-glass", ErrForbidden, r.ID)
	case f.Actor != r.Requester || !f.BreakGlasser:
		return r, nil, fmt.Errorf("%w: %s may not break glass under policy %s: only members of %s may", ErrForbidden, f.Actor, p.ID, p.BreakGlass.Group)
	case r.BreakGlass != nil || len(r.Decisions) > 0:
		return r, nil, fmt.Errorf("%w: request %s is not new", ErrWrongState, r.ID)
	case r.Duration <= 0 || r.Duration > p.BreakGlass.duration(p):
		return r, nil, fmt.Errorf("%w: %v requested, policy %s allows break-glass for %v", ErrDurationTooLong, r.Duration, p.ID, p.BreakGlass.duration(p))
	case f.BreakGlassUsed >= p.BreakGlass.limit():
		return r, nil, fmt.Errorf("%w: %s broke glass under policy %s %d times within %v, the most allowed", ErrLimit, f.Actor, p.ID, f.BreakGlassUsed, p.BreakGlass.period())
	}
	r = r.clone()
	every := p.BreakGlass.reviewWithin()
	r.BreakGlass = &BreakGlassReview{State: ReviewPending, DueAt: f.Now.Add(every), NotifyAt: f.Now.Add(every), Every: every}
	// It never waits for approval.
	r.PendingUntil, r.RemindAt, r.EscalateAt = f.Now, time.Time{}, time.Time{}
	detail := map[string]string{"reason": r.Reason, "duration": r.Duration.String(), "ticket": r.Ticket,
		"review_due": r.BreakGlass.DueAt.UTC().Format(time.RFC3339Nano)}
	r.boundsDetail(detail)
	events := []Event{requestEvent(EventRequestBreakGlass, &r, f.Actor, f.Now, detail)}
	r, e := open(r, p, f.Now)
	e.Actor = f.Actor
	return r, append(events, e), nil
}

// review records an approver's post-hoc review of a break-glass request.
func review(r Request, a Action, f facts) (Request, []Event, error) {
	// Who first: a break-glass request's ID is predictable, and no one
	// who may not see it learns from the answer whether it exists, or
	// was reviewed (ErrForbidden reads as ErrNotFound to them).
	switch {
	case f.Actor == r.Requester:
		return r, nil, fmt.Errorf("%w: %s activated request %s", ErrSelfApproval, f.Actor, r.ID)
	case !f.Admin && len(f.MemberOf[f.Actor]) == 0:
		return r, nil, fmt.Errorf("%w: %s may not review request %s", ErrForbidden, f.Actor, r.ID)
	case r.BreakGlass == nil:
		return r, nil, fmt.Errorf("%w: request %s is not break-glass", ErrWrongState, r.ID)
	case r.BreakGlass.State != ReviewPending:
		return r, nil, fmt.Errorf("%w: request %s was reviewed already (%s)", ErrWrongState, r.ID, r.BreakGlass.State)
	}
	ph := phase(&r, f.Now)
	active := ph == Approved || ph == extending || ph == scheduled
	r = r.clone()
	v := r.BreakGlass
	t := EventRequestBreakGlassConfirmed
	v.State = ReviewConfirmed
	if a == ActionFlag {
		v.State, t = ReviewFlagged, EventRequestBreakGlassFlagged
	}
	v.By, v.Comment, v.At, v.NotifyAt = f.Actor, f.Comment, f.Now, time.Time{}
	detail := map[string]string{"overdue": fmt.Sprint(!f.Now.Before(v.DueAt))}
	if f.Comment != "" {
		detail["comment"] = f.Comment
	}
	events := []Event{requestEvent(t, &r, f.Actor, f.Now, detail)}
	if a == ActionFlag && active {
		r = closeRequest(r, Revoked, f.Actor, f.Now)
		events = append(events, requestEvent(EventRequestRevoked, &r, f.Actor, f.Now, map[string]string{"reason": "break-glass flagged"}))
	}
	return r, events, nil
}

// mayRequest is the rule of who may submit under p: anyone when p names
// no RequesterGroups, otherwise only their members (f.Eligible). A
// submission comes before any request exists, so it is no cell of the
// table: this is its one rule, which Submit enforces and Check and Guard
// explain.
func mayRequest(p *Policy, f facts) error {
	if len(p.RequesterGroups) == 0 || f.Eligible {
		return nil
	}
	return fmt.Errorf("%w: %s may not request under policy %s: %s", ErrForbidden, f.Actor, p.ID, requesterGroupsRule(p))
}

// requesterGroupsRule says who may request under p, which names
// RequesterGroups: "only members of a, b or c may request under it".
func requesterGroupsRule(p *Policy) string {
	return "only members of " + orList(p.RequesterGroups) + " may request under it"
}

// orList joins names as "a", "a or b", "a, b or c".
func orList(names []string) string {
	if len(names) <= 1 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// mayView is the read rule: a request is visible to its requester, to
// admins and to members of its policy's approver groups (f.MemberOf of
// f.Actor). Events follow the request they belong to.
func mayView(r *Request, f facts) bool {
	return f.Actor != "" && (f.Actor == r.Requester || f.Admin || len(f.MemberOf[f.Actor]) > 0 || f.Escalator)
}

// decide records a person's approve or deny.
func decide(r Request, v Verdict, f facts) (Request, []Event, error) {
	p, actor := f.Policy, f.Actor
	switch {
	case p == nil:
		return r, nil, fmt.Errorf("%w: the policy of request %s was deleted", ErrWrongState, r.ID)
	case actor == r.Requester:
		return r, nil, ErrSelfApproval
	}
	if r.extensionPending() && v == Approve {
		if err := extensionFits(&r, r.Extension.By, p); err != nil {
			return r, nil, err
		}
	}
	for _, prev := range r.pendingDecisions() {
		if prev.Approver == actor {
			return r, nil, fmt.Errorf("%w: %s already decided %s", ErrAlreadyDecided, actor, prev.Verdict)
		}
	}
	if len(f.MemberOf[actor]) == 0 && !f.Escalator {
		return r, nil, fmt.Errorf("%w: %s is not in an approver group of policy %s", ErrForbidden, actor, p.ID)
	}
	d := Decision{Approver: actor, Verdict: v, Comment: f.Comment, At: f.Now, PolicyVersion: p.Version, Escalation: f.Escalator}
	r, events := record(r, d, f.Now)
	switch {
	case v == Deny:
		var e Event
		r, e = refuse(r, actor, f.Now)
		events = append(events, e)
	case f.Escalator || quorum(p.ApproverGroups, approvers(r.pendingDecisions()), f.MemberOf):
		var e Event
		r, e = grant(r, p, f.Now)
		e.Actor = actor
		events = append(events, e)
	}
	return r, events, nil
}

// settle applies an automatic verdict to a new pending request.
func settle(r Request, f facts) (Request, []Event, error) {
	d := f.Verdict
	switch {
	case f.Policy == nil:
		return r, nil, fmt.Errorf("%w: request %s has no policy", ErrWrongState, r.ID)
	case d.Verdict != Approve && d.Verdict != Deny:
		return r, nil, invalid("Verdict", "unknown verdict %q", d.Verdict)
	}
	if r.extensionPending() && d.Verdict == Approve {
		if err := extensionFits(&r, r.Extension.By, f.Policy); err != nil {
			return r, nil, err
		}
	}
	d.Automatic = true
	r, events := record(r, d, f.Now)
	var e Event
	if d.Verdict == Deny {
		r, e = refuse(r, d.Approver, f.Now)
		return r, append(events, e), nil
	}
	r, e = grant(r, f.Policy, f.Now)
	e.Actor = d.Approver
	return r, append(events, e), nil
}

// extend records the holder's ask for a longer window, and settles it at
// once when there is an automatic verdict.
func extend(r Request, f facts) (Request, []Event, error) {
	p := f.Policy
	switch {
	case p == nil:
		return r, nil, fmt.Errorf("%w: the policy of request %s was deleted", ErrWrongState, r.ID)
	case f.Actor != r.Requester:
		return r, nil, fmt.Errorf("%w: only the holder of request %s may extend it", ErrForbidden, r.ID)
	case f.By <= 0:
		return r, nil, invalid("By", "must be positive")
	}
	if err := extensionFits(&r, f.By, p); err != nil {
		return r, nil, err
	}
	if f.Rejected != nil {
		return r, nil, f.Rejected
	}
	r = r.clone()
	r.Extension = &Extension{By: f.By, Reason: f.Comment, RequestedAt: f.Now, State: Pending}
	events := []Event{requestEvent(EventRequestExtensionRequested, &r, f.Actor, f.Now, map[string]string{
		"by": f.By.String(), "reason": f.Comment,
		"expires_at": r.ExpiresAt.UTC().Format(time.RFC3339Nano), "extended_to": r.ExpiresAt.Add(f.By).UTC().Format(time.RFC3339Nano),
	})}
	if f.Verdict.Verdict == "" {
		return r, events, nil
	}
	next, more, err := apply(r, ActionSettle, f)
	if err != nil {
		return r, nil, err
	}
	return next, append(events, more...), nil
}

// extensionFits is the rule every extension of r by by under p passes,
// when asked and again when granted: the grant still counts under p (no
// policy change cut it), and its whole window, from its opening to its
// new end, stays within p's MaxExtendedDuration.
func extensionFits(r *Request, by time.Duration, p *Policy) error {
	if r.PolicyVersion < p.MinGrantVersion {
		return fmt.Errorf("%w: request %s was approved under policy version %d; the policy changed and now requires version %d or later", ErrWrongState, r.ID, r.PolicyVersion, p.MinGrantVersion)
	}
	total := r.ExpiresAt.Sub(r.ApprovedAt) + by
	if by > maxDuration || total > p.maxExtendedDuration() {
		return fmt.Errorf("%w: extending request %s by %v makes its window %v, policy %s allows %v in all", ErrDurationTooLong, r.ID, by, total, p.ID, p.maxExtendedDuration())
	}
	return nil
}

// record appends decision d to what is pending on r, the request or its
// extension, with its request.decision event.
func record(r Request, d Decision, now time.Time) (Request, []Event) {
	r = r.clone()
	detail := map[string]string{"verdict": string(d.Verdict)}
	if r.extensionPending() {
		r.Extension.Decisions = append(r.Extension.Decisions, d)
		detail["extension"] = "true"
	} else {
		r.Decisions = append(r.Decisions, d)
	}
	if d.Automatic {
		detail["automatic"] = "true"
	}
	if d.Escalation {
		detail["escalation"] = "true"
	}
	if d.Comment != "" {
		detail["comment"] = d.Comment
	}
	e := requestEvent(EventRequestDecision, &r, d.Approver, now, detail)
	e.Outcome = Outcome(d.Verdict)
	return r, []Event{e}
}

// grant carries out the approval of what is pending on r (r is a clone
// already): the request, whose window opens, or its extension, which
// moves the window's end.
func grant(r Request, p *Policy, now time.Time) (Request, Event) {
	if !r.extensionPending() {
		return open(r, p, now)
	}
	x := r.Extension
	x.State, x.DecidedAt = Approved, now
	from := r.ExpiresAt
	r.ExpiresAt = r.ExpiresAt.Add(x.By)
	return r, requestEvent(EventRequestExtended, &r, "", now, map[string]string{
		"by": x.By.String(), "from": from.UTC().Format(time.RFC3339Nano), "expires_at": r.ExpiresAt.UTC().Format(time.RFC3339Nano),
	})
}

// nudgeAt returns when a nudge every interval after now falls for r: the
// zero time when interval is 0 or it would not come before r's pending
// deadline.
func nudgeAt(r *Request, now time.Time, interval time.Duration) time.Time {
	if interval <= 0 {
		return time.Time{}
	}
	if t := now.Add(interval); t.Before(r.PendingUntil) {
		return t
	}
	return time.Time{}
}

// refuse carries out a deny of what is pending on r (r is a clone
// already): the request is denied, or its extension is, and the grant
// runs on to its end.
func refuse(r Request, by string, now time.Time) (Request, Event) {
	if !r.extensionPending() {
		r = closeRequest(r, Denied, by, now)
		return r, requestEvent(EventRequestDenied, &r, by, now, nil)
	}
	r.Extension.State, r.Extension.DecidedAt = Denied, now
	return r, requestEvent(EventRequestExtensionDenied, &r, by, now, map[string]string{
		"by": r.Extension.By.String(), "expires_at": r.ExpiresAt.UTC().Format(time.RFC3339Nano),
	})
}

// open approves r: its access window opens under policy p at now, or at
// the start the request asked for when that is later, and lasts its
// Duration.
func open(r Request, p *Policy, now time.Time) (Request, Event) {
	r.State = Approved
	r.ApprovedAt = now
	if r.Start.After(now) {
		r.ApprovedAt = r.Start
	}
	r.ExpiresAt = r.ApprovedAt.Add(r.Duration)
	r.PolicyVersion = p.Version
	detail := map[string]string{
		"expires_at": r.ExpiresAt.UTC().Format(time.RFC3339Nano), "policy_version": fmt.Sprint(p.Version),
	}
	if r.ApprovedAt.After(now) {
		detail["opens_at"] = r.ApprovedAt.UTC().Format(time.RFC3339Nano)
	}
	return r, requestEvent(EventRequestApproved, &r, "", now, detail)
}

// closeRequest makes r terminal. An extension still pending lapses: it
// is Expired, never to be decided.
func closeRequest(r Request, s State, by string, now time.Time) Request {
	if r.extensionPending() {
		r = r.clone()
		r.Extension.State, r.Extension.DecidedAt = Expired, now
	}
	r.State = s
	r.ClosedAt = now
	r.ClosedBy = by
	return r
}

func requestEvent(t EventType, r *Request, actor string, now time.Time, detail map[string]string) Event {
	return Event{Time: now, Type: t, Actor: actor, RequestID: r.ID, PolicyID: r.PolicyID, Task: scopeTask(r.Scope), Detail: detail}
}

// scopeTask fills Event.Task for requests: the task name for task scopes,
// "role:NAME" or "role_group:NAME" otherwise.
func scopeTask(s Scope) string {
	if s.Kind == KindTask {
		return s.Name
	}
	return s.String()
}

func commentDetail(comment string) map[string]string {
	if comment == "" {
		return nil
	}
	return map[string]string{"comment": comment}
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
// any group (memberOf is current) count for nothing.
func quorum(groups []ApproverGroup, approvers []string, memberOf membership) bool {
	need := 0
	for _, g := range groups {
		need += g.min()
	}
	if len(approvers) < need {
		return false
	}
	_, holder := seat(groups, approvers, memberOf)
	return !slices.Contains(holder, -1)
}

// seat matches approvers to the seats of groups (g.min() seats each),
// each approver to at most one seat of a group they are in now, as many
// seats filled as can be. It returns each seat's group index and the
// index in approvers of the approver who holds it, -1 when none does. It
// is a bipartite matching (Kuhn's augmenting paths); policies have few
// seats, so the simple algorithm is plenty.
func seat(groups []ApproverGroup, approvers []string, memberOf membership) (seats, holder []int) {
	for gi, g := range groups {
		for range g.min() {
			seats = append(seats, gi)
		}
	}
	holder = make([]int, len(seats)) // seat → approver index, -1 when free
	for i := range holder {
		holder[i] = -1
	}
	var try func(a int, seen []bool) bool
	try = func(a int, seen []bool) bool {
		for s, gi := range seats {
			if seen[s] || !slices.Contains(memberOf[approvers[a]], gi) {
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
	for a := range approvers {
		try(a, make([]bool, len(seats)))
	}
	return seats, holder
}
