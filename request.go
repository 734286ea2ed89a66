package pam

import (
	"fmt"
	"time"
)

// State is where a request is in its lifecycle.
//
//	          submit
//	            │
//	            ▼
//	 ┌────── Pending ───────┬──────────┬──────────┐
//	 │ quorum reached       │ any deny │ requester│ pending TTL
//	 │ (or Auto / rule)     │          │ cancels  │ passes
//	 ▼                      ▼          ▼          ▼
//	Approved ──revoke──▶ Revoked     Denied    Canceled   Expired
//	 │
//	 └── window ends ──▶ Expired
//
// Denied, Canceled, Revoked and Expired are terminal: they never change.
type State string

const (
	Pending  State = "pending"
	Approved State = "approved"
	Denied   State = "denied"
	Canceled State = "canceled"
	Revoked  State = "revoked"
	Expired  State = "expired"
)

// Terminal reports whether s never changes again.
func (s State) Terminal() bool {
	return s == Denied || s == Canceled || s == Revoked || s == Expired
}

// RequestInput is what a user submits to ask for access.
type RequestInput struct {
	// Scope asks for a task, a role or a role group. It may be left empty
	// when PolicyID is set; the policy's scope is then used.
	Scope Scope `json:"scope,omitzero"`
	// PolicyID binds the request to one policy. Needed only when several
	// policies cover Scope (Submit returns an *AmbiguousError).
	PolicyID string `json:"policy_id,omitempty"`
	// Reason is required, at most MaxReasonLen bytes.
	Reason string `json:"reason"`
	// Duration of the access window once approved; 0 means the policy's
	// DefaultDuration. Longer than the policy's MaxDuration is rejected.
	Duration time.Duration `json:"duration,omitempty"`
	// Ticket optionally names a change or incident ticket.
	Ticket string `json:"ticket,omitempty"`
}

// Validate checks the fields on their own; Submit also checks them against
// the policy.
func (n *RequestInput) Validate() error {
	if n.Scope != (Scope{}) || n.PolicyID == "" {
		if err := n.Scope.Validate(); err != nil {
			return err
		}
	}
	if n.PolicyID != "" {
		if err := checkName("PolicyID", n.PolicyID); err != nil {
			return err
		}
	}
	if n.Reason == "" {
		return invalid("Reason", "must not be empty")
	}
	if err := checkText("Reason", n.Reason, MaxReasonLen); err != nil {
		return err
	}
	if n.Duration < 0 {
		return invalid("Duration", "must not be negative")
	}
	if n.Ticket != "" {
		if err := checkName("Ticket", n.Ticket); err != nil {
			return err
		}
	}
	return nil
}

// Request is a user's ask for time-bounded access, bound to one policy.
// Once approved, it is the grant that Guard looks for.
type Request struct {
	ID        string        `json:"id"`
	Requester string        `json:"requester"` // canonical identity
	Scope     Scope         `json:"scope"`
	PolicyID  string        `json:"policy_id"`
	Reason    string        `json:"reason"`
	Ticket    string        `json:"ticket,omitempty"`
	Duration  time.Duration `json:"duration"`

	// State is the state as of the last read. Reads through the Manager
	// compute it from the clock, so a request past its deadline reads as
	// Expired before the expiry is recorded.
	State     State      `json:"state"`
	Decisions []Decision `json:"decisions,omitempty"`

	// PolicyVersion is the policy's version when the request was
	// submitted, and when approved, the version it was approved under.
	PolicyVersion int64 `json:"policy_version"`

	CreatedAt    time.Time `json:"created_at"`
	PendingUntil time.Time `json:"pending_until"`        // a pending request expires here
	ApprovedAt   time.Time `json:"approved_at,omitzero"` // the window opens here...
	ExpiresAt    time.Time `json:"expires_at,omitzero"`  // ...and closes here
	ClosedAt     time.Time `json:"closed_at,omitzero"`   // when it became terminal
	ClosedBy     string    `json:"closed_by,omitempty"`

	// Version counts the request's writes; stores compare it.
	Version int64 `json:"version"`
}

// StateAt returns the state of r at now: a pending request whose
// PendingUntil has come, or an approved one whose ExpiresAt has come, is
// Expired, whether or not the expiry has been recorded yet.
func (r *Request) StateAt(now time.Time) State {
	switch {
	case r.State == Pending && !now.Before(r.PendingUntil):
		return Expired
	case r.State == Approved && !now.Before(r.ExpiresAt):
		return Expired
	}
	return r.State
}

// deadline is when the recorded state times out (zero for terminal states).
func (r *Request) deadline() time.Time {
	switch r.State {
	case Pending:
		return r.PendingUntil
	case Approved:
		return r.ExpiresAt
	}
	return time.Time{}
}

func (r Request) clone() Request {
	r.Decisions = append([]Decision(nil), r.Decisions...)
	return r
}

// The transitions below are pure: they take the request as read, return
// the next state and the audit events that record it, and never touch the
// store, the clock or the directory.

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

// approve opens the access window at now under policy p.
func approve(r Request, p *Policy, now time.Time) (Request, Event) {
	r.State = Approved
	r.ApprovedAt = now
	r.ExpiresAt = now.Add(r.Duration)
	r.PolicyVersion = p.Version
	return r, requestEvent(EventRequestApproved, &r, "", now, map[string]string{
		"expires_at": r.ExpiresAt.UTC().Format(time.RFC3339Nano), "policy_version": fmt.Sprint(p.Version),
	})
}

func closeRequest(r Request, s State, by string, now time.Time) Request {
	r.State = s
	r.ClosedAt = now
	r.ClosedBy = by
	return r
}

// cancel: the requester withdraws a pending request.
func cancel(r Request, actor, comment string, now time.Time) (Request, []Event, error) {
	if r.StateAt(now) != Pending {
		return r, nil, fmt.Errorf("%w: cancel a %s request", ErrWrongState, r.StateAt(now))
	}
	if actor != r.Requester {
		return r, nil, fmt.Errorf("%w: only the requester may cancel", ErrForbidden)
	}
	r = closeRequest(r, Canceled, actor, now)
	return r, []Event{requestEvent(EventRequestCanceled, &r, actor, now, commentDetail(comment))}, nil
}

// revoke ends an approved request's window early. Who may revoke is the
// caller's check.
func revoke(r Request, actor, comment string, now time.Time) (Request, []Event, error) {
	if r.StateAt(now) != Approved {
		return r, nil, fmt.Errorf("%w: revoke a %s request", ErrWrongState, r.StateAt(now))
	}
	r = closeRequest(r, Revoked, actor, now)
	return r, []Event{requestEvent(EventRequestRevoked, &r, actor, now, commentDetail(comment))}, nil
}

// expire records the expiry of a request whose deadline has passed. The
// request closes at its deadline, whenever the expiry is recorded.
func expire(r Request, now time.Time) (Request, []Event, error) {
	if r.State.Terminal() || r.StateAt(now) != Expired {
		return r, nil, fmt.Errorf("%w: %s request has not expired", ErrWrongState, r.StateAt(now))
	}
	from := r.State
	r = closeRequest(r, Expired, "", r.deadline())
	return r, []Event{requestEvent(EventRequestExpired, &r, "", now, map[string]string{
		"from": string(from), "expired_at": r.ClosedAt.UTC().Format(time.RFC3339Nano),
	})}, nil
}

func commentDetail(comment string) map[string]string {
	if comment == "" {
		return nil
	}
	return map[string]string{"comment": comment}
}
