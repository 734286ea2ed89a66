package pam

import (
	"context"
	"time"
)

// Extension is a holder's ask for their active grant to last longer
// (Manager.Extend). It is decided as a request is: by the policy's
// approver groups with their quorum, never by the holder, one decision
// per approver; at once under an Auto policy, its auto-approval rule or
// an Approver. While it is pending the grant runs on to its current end.
type Extension struct {
	// By is how much later the window is to end.
	By time.Duration `json:"by"`
	// Reason is the holder's, required.
	Reason      string    `json:"reason"`
	RequestedAt time.Time `json:"requested_at"`
	// State is Pending until decided; then Approved (the request's
	// ExpiresAt moved by By) or Denied; Expired when the grant ended
	// first (it expired, or was revoked or relinquished).
	State State `json:"state"`
	// Decisions are the decisions on the extension, apart from those on
	// the request.
	Decisions []Decision `json:"decisions,omitempty"`
	DecidedAt time.Time  `json:"decided_at,omitzero"`
}

// Extend asks for the actor's active grant, request id, to end by later
// than it does now, for reason. The policy's approver groups decide it
// as they decide requests, with Approve and Deny on the request's ID
// (Reviewable lists it); an Auto policy, its auto-approval rule or an
// Approver may extend it at once, and its request rule may reject it
// (ErrRejected). Both read the input of a submission, with
// input.request.duration the whole window once extended and
// input.request.reason the extension's, plus input.extension.by (in
// nanoseconds) and input.extension.reason. The approvers are notified
// (EventRequestExtensionRequested), the holder of the outcome
// (EventRequestExtended, EventRequestExtensionDenied).
//
// Only the holder may extend (ErrForbidden, or ErrNotFound to those who
// may not see the request). The grant must be active, not scheduled,
// with no extension pending, its policy live and not changed since in a
// way that cut it (ErrWrongState): an expired, revoked or relinquished
// grant cannot be extended. by must be positive and reason given
// (ErrInvalid). The whole window, from its opening to its new end, may
// not pass the policy's MaxExtendedDuration (ErrDurationTooLong), which
// is checked again when the extension is granted.
//
// Once granted, the window ends By later for every Manager's next Guard,
// and the context of work already running under the grant ends By later
// too (its Deadline moves): on this Manager before the call that granted
// it returns, on other Managers sharing the store when their grant
// watcher reads the request (see Guard). Work whose context ended before
// that stays ended.
func (m *Manager) Extend(ctx context.Context, id string, by time.Duration, reason string) (Request, error) {
	actor, err := actorOf(ctx)
	if err != nil {
		return Request{}, err
	}
	switch {
	case by <= 0:
		return Request{}, invalid("By", "must be positive")
	case by > maxDuration:
		return Request{}, invalid("By", "longer than %v", maxDuration)
	case reason == "":
		return Request{}, invalid("Reason", "must not be empty")
	}
	if err := checkText("Reason", reason, MaxReasonLen); err != nil {
		return Request{}, err
	}
	return m.change(ctx, id, ActionExtend, facts{Actor: actor, Comment: reason, By: by})
}

// judgeExtension gathers what the policy's rules and the Approvers say
// of extending r by by: the request rule's rejection, if any, and the
// automatic verdict, if any (see automatic).
func (m *Manager) judgeExtension(ctx context.Context, r *Request, p *compiled, by time.Duration, reason string, now time.Time) (Decision, error) {
	asked := r.clone()
	asked.Extension = &Extension{By: by, Reason: reason, RequestedAt: now, State: Pending}
	input := ruleInput(&asked, now)
	req := input["request"].(map[string]any)
	req["duration"], req["reason"] = int64(asked.ExpiresAt.Add(by).Sub(asked.ApprovedAt)), reason
	input["extension"] = map[string]any{"by": int64(by), "reason": reason}
	if err := m.checkRequestRule(ctx, p, input, now); err != nil {
		return Decision{}, err
	}
	d, _ := m.automatic(ctx, p, &asked, input, now)
	return d, nil
}
