package pam

import (
	"context"
	"errors"
	"maps"
	"math"
	"time"
)

// EventType names what an audit event records.
type EventType string

// Event types. Every state change and every Guard outcome on a covered
// operation has one.
const (
	EventPolicyCreated EventType = "policy.created"
	EventPolicyUpdated EventType = "policy.updated"
	EventPolicyDeleted EventType = "policy.deleted"
	EventCatalogSet    EventType = "catalog.set"

	EventRequestSubmitted    EventType = "request.submitted"
	EventRequestDecision     EventType = "request.decision" // one approver's approve or deny
	EventRequestApproved     EventType = "request.approved" // the window opens
	EventRequestDenied       EventType = "request.denied"
	EventRequestCanceled     EventType = "request.canceled"
	EventRequestRevoked      EventType = "request.revoked"
	EventRequestRelinquished EventType = "request.relinquished" // the holder ended their grant early
	EventRequestExpired      EventType = "request.expired"
	// EventRequestReminded: a pending request's approvers who have not
	// decided were reminded (Policy.RemindAfter).
	EventRequestReminded EventType = "request.reminded"
	// EventRequestEscalated: a request pending past
	// Policy.EscalateAfter escalated to the policy's EscalationGroup,
	// whose members were notified and may now decide it alone.
	EventRequestEscalated EventType = "request.escalated"
	// EventRequestSpent: a use-limited grant's last run started (in the
	// same commit as that run's guard.allowed); Guard starts no other
	// under it. The request stays approved until its window ends.
	EventRequestSpent EventType = "request.spent"
	// EventRequestBreakGlass: a member of the policy's BreakGlass.Group
	// opened the request at once, without approval (followed by its
	// request.approved); its post-hoc review is pending.
	EventRequestBreakGlass EventType = "request.break_glass"
	// EventRequestBreakGlassConfirmed and EventRequestBreakGlassFlagged:
	// an approver reviewed a break-glass request (a flag on an active
	// grant is followed by its request.revoked).
	EventRequestBreakGlassConfirmed EventType = "request.break_glass_confirmed"
	EventRequestBreakGlassFlagged   EventType = "request.break_glass_flagged"
	// EventRequestBreakGlassOverdue: a break-glass request's review is
	// overdue, and its reviewers were told again.
	EventRequestBreakGlassOverdue EventType = "request.break_glass_overdue"

	// The holder asked for a longer window (Extend); it was granted (the
	// window's end moved), or denied (the grant runs on to its end).
	EventRequestExtensionRequested EventType = "request.extension_requested"
	EventRequestExtended           EventType = "request.extended"
	EventRequestExtensionDenied    EventType = "request.extension_denied"

	EventGuardAllowed  EventType = "guard.allowed"  // a covered task starts under a grant
	EventGuardExempt   EventType = "guard.exempt"   // a system account runs a covered task
	EventGuardDenied   EventType = "guard.denied"   // no grant (or no actor, or deny-by-default)
	EventGuardFinished EventType = "guard.finished" // the task returned; Outcome says how
	// EventGuardFinishedLate records how a run really ended after Sweep
	// had taken it as ended with an unknown outcome (its end came later
	// than Options.RunEndGrace allows): it carries the run's real
	// Outcome, and the run keeps its one guard.finished.
	EventGuardFinishedLate EventType = "guard.finished_late"

	EventNotifyFailed  EventType = "notify.failed"  // a notifier returned an error
	EventSinkFailed    EventType = "sink.failed"    // an audit sink failed; recorded once per outage
	EventSinkRecovered EventType = "sink.recovered" // the sink took events again after failing
)

// Event is one immutable audit record. The store assigns Seq: gapless and
// increasing in the order the events were committed.
type Event struct {
	Seq       int64     `json:"seq"`
	Time      time.Time `json:"time"`
	Type      EventType `json:"type"`
	Actor     string    `json:"actor,omitempty"`
	RequestID string    `json:"request_id,omitempty"`
	PolicyID  string    `json:"policy_id,omitempty"`
	Task      string    `json:"task,omitempty"`
	// Run links a Guard run's start (guard.allowed, guard.exempt) to its
	// end (guard.finished, and guard.finished_late): the same ID on each,
	// unique to the run. Other events have none.
	Run string `json:"run,omitempty"`
	// Outcome summarises the event: for guard.allowed and guard.exempt
	// "granted" or "exempt"; for guard.denied "not_approved",
	// "no_policy" or "audit_unavailable"; for guard.finished "ok",
	// "error", "panic", "not_run" or "ended_unknown"; for sink.failed and sink.recovered
	// "required" or "best_effort"; for
	// request.decision the verdict, "approve" or "deny" (its detail
	// "extension" is "true" for a decision on an extension).
	Outcome Outcome           `json:"outcome,omitempty"`
	Detail  map[string]string `json:"detail,omitempty"`
	// PrevHash and Hash chain the event to the one before it (see
	// ChainHash for the encoding); the store sets them with Seq.
	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
	// Malformed is set by a store when the stored row does not decode
	// strictly, and says how; the other fields hold what could be read.
	// Only a write around the library makes such a row: Verify reports
	// it as tampering (ReasonMalformed), while Audit and the audit sinks
	// pass the event on, flagged, in its place in the trail. It is not
	// part of the hash chain, and the engine never sets it.
	Malformed string `json:"malformed,omitempty"`
}

// Outcome summarises a Guard decision (CheckResult.Outcome) or an audit
// event (Event.Outcome). All outcomes share this one type.
type Outcome string

// Outcomes of Guard's decision, recorded on guard.allowed, guard.exempt
// and guard.denied events.
const (
	// OutcomeUncovered: no policy covers the operation; it is not
	// privileged and runs without a grant (and without audit).
	OutcomeUncovered Outcome = "uncovered"
	// OutcomeGranted: every covering policy has an active grant.
	OutcomeGranted Outcome = "granted"
	// OutcomeExempt: the actor is a system account.
	OutcomeExempt Outcome = "exempt"
	// OutcomeNotApproved: a covering policy has no active grant.
	OutcomeNotApproved Outcome = "not_approved"
	// OutcomeNoPolicy: no policy covers the operation and the Manager
	// denies uncovered operations (Options.DenyUncovered).
	OutcomeNoPolicy Outcome = "no_policy"
	// OutcomeAuditUnavailable: a required audit sink was failing, so
	// the operation was denied without being started.
	OutcomeAuditUnavailable Outcome = "audit_unavailable"
)

// Outcomes of guard.finished events.
const (
	OutcomeOK    Outcome = "ok"
	OutcomeError Outcome = "error"
	OutcomePanic Outcome = "panic"
	// OutcomeNotRun: the start was recorded in the store but fn was not
	// run: the start did not reach a required audit sink in time, or the
	// store's reply to the start was lost, so Guard could not know it
	// was recorded and did not run fn.
	OutcomeNotRun Outcome = "not_run"
	// OutcomeEndedUnknown: the run's end was not recorded within
	// Options.RunEndGrace (its Manager stopped, or could not reach the
	// store that long, or its fn ran that long past its grant), so
	// another Manager's Sweep recorded this end in its place: fn may or
	// may not have run, and may or may not have finished. Should its real
	// end come after all, it is recorded as guard.finished_late.
	OutcomeEndedUnknown Outcome = "ended_unknown"
)

// Outcomes of request.decision events (the verdict), of sink.failed and
// sink.recovered events (which kind of sink), and of notify.failed events.
const (
	OutcomeApprove    Outcome = Outcome(Approve)
	OutcomeDeny       Outcome = Outcome(Deny)
	OutcomeRequired   Outcome = "required"
	OutcomeBestEffort Outcome = "best_effort"
	OutcomeFailed     Outcome = Outcome(MessageFailed)
)

// AuditSink receives committed audit events for shipping to a SIEM, a
// log, a file: each Write holds consecutive events in sequence order, each
// carrying its Seq and hashes, so the receiver can check the chain
// itself. The store remains the record; see SinkConfig for delivery,
// retries and fail-closed sinks. Write may be retried with the same events
// after a failure or a restart, so it should be idempotent by Seq.
//
// A stored event that does not decode strictly is delivered in its place
// as the store read it, with Malformed set: the trail reaches the sink in
// order and nothing stalls, and the receiver sees the tampering (its
// hash does not check either). Events stored with a number below 1 are
// not delivered: delivery follows the numbers up from the sink's cursor.
// Verify reports both.
type AuditSink interface {
	// Write delivers committed events. It returns an error when they
	// could not be delivered; they are then retried.
	Write(ctx context.Context, events []Event) error
}

// EventFilter selects audit events. Zero fields match everything.
// Results are in sequence order (descending with Descending); page with
// After (ascending) or Before (descending) set to the last Seq seen,
// which is negative only among events stored with a number below 1
// (tampering; see Manager.Audit).
type EventFilter struct {
	Actor     string      // any spelling; the Manager canonicalises it
	Task      string      // task name ("role:NAME" for role-scoped requests)
	Types     []EventType // any of
	RequestID string
	PolicyID  string
	Run       string // a Guard run's start and end (Event.Run)
	Outcome   Outcome
	Since     time.Time // Time >= Since
	Until     time.Time // Time < Until
	After     int64     // Seq > After
	Before    int64     // Seq < Before (0: no bound)
	// Descending returns the newest events first.
	Descending bool
	// Limit caps the number of events; 0 means the store's whole answer
	// (the Manager applies DefaultPageSize).
	Limit int
}

// Matches reports whether e passes the filter's field conditions (not the
// Seq bounds or the limit). Stores may use it; the conformance suite
// checks that their answers agree with it.
func (f *EventFilter) Matches(e *Event) bool {
	if f.Actor != "" && e.Actor != f.Actor || f.Task != "" && e.Task != f.Task ||
		f.RequestID != "" && e.RequestID != f.RequestID || f.PolicyID != "" && e.PolicyID != f.PolicyID ||
		f.Run != "" && e.Run != f.Run ||
		f.Outcome != "" && e.Outcome != f.Outcome ||
		!f.Since.IsZero() && e.Time.Before(f.Since) || !f.Until.IsZero() && !e.Time.Before(f.Until) {
		return false
	}
	if len(f.Types) == 0 {
		return true
	}
	for _, t := range f.Types {
		if e.Type == t {
			return true
		}
	}
	return false
}

// DefaultPageSize and MaxPageSize bound the pages the Manager returns.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// Audit searches the audit trail, like searching the compliance audit log.
// It returns one page and the cursor for the next (0 when there is none):
// pass it as After (or Before when Descending).
//
// Admins read the whole trail. Anyone else reads the events they caused
// (f.Actor set to themselves) and the events of a request they may see
// (f.RequestID; see Request); other searches are ErrForbidden. In events
// read that way, a guard event's condition error text ("condition_error")
// reads ConditionErrorHidden unless the reader is an admin.
//
// Events are returned as the store holds them: one that does not decode
// strictly comes flagged (Event.Malformed), not as an error. Without
// After, a search reaches down to the lowest stored number, so that
// events stored with a number below 1 (tampering too) show, first or
// last; the cursors through them are negative. Since 0 means there is no
// next page, a page that would end at an event numbered 0 ends before
// it, unless it is all the page holds.
func (m *Manager) Audit(ctx context.Context, f EventFilter) (events []Event, next int64, err error) {
	actor, err := actorOf(ctx)
	if err != nil {
		return nil, 0, err
	}
	if err := f.validate(); err != nil {
		return nil, 0, err
	}
	if f.Actor != "" {
		if f.Actor, err = CanonicalIdentity(f.Actor); err != nil {
			return nil, 0, err
		}
	}
	own := f.Actor == actor
	if !own && f.RequestID != "" {
		if _, err := m.Request(ctx, f.RequestID); err == nil {
			own = true
		} else if !errors.Is(err, ErrNotFound) {
			return nil, 0, err
		}
	}
	if err := m.requireAdminOr(ctx, own); err != nil {
		return nil, 0, err
	}
	if f.Limit == 0 {
		f.Limit = DefaultPageSize
	}
	if f.After == 0 {
		f.After = math.MinInt64
	}
	events, err = m.store.Events(ctx, f)
	if err != nil {
		return nil, 0, err
	}
	if len(events) == f.Limit {
		if len(events) > 1 && events[len(events)-1].Seq == 0 {
			events = events[:len(events)-1]
		}
		next = events[len(events)-1].Seq
	}
	if own {
		m.hideConditionDetail(ctx, events)
	}
	return events, next, nil
}

// hideConditionDetail replaces the condition errors that guard events
// record by ConditionErrorHidden, unless ctx's actor is an admin: the
// events an actor may read of their own are no way around Check's rule.
// The stored events keep the text (and their hashes cover it).
func (m *Manager) hideConditionDetail(ctx context.Context, events []Event) {
	admin := 0 // unknown; 1 yes; -1 no
	for i := range events {
		e := &events[i]
		if _, ok := e.Detail[detailConditionError]; !ok {
			continue
		}
		if admin == 0 {
			admin = -1
			if ok, err := m.IsAdmin(ctx); err == nil && ok {
				admin = 1
			}
		}
		if admin == 1 {
			return
		}
		e.Detail = maps.Clone(e.Detail)
		e.Detail[detailConditionError] = ConditionErrorHidden
	}
}

func (f *EventFilter) validate() error {
	switch {
	case f.Limit < 0 || f.Limit > MaxPageSize:
		return invalid("Limit", "must be between 0 and %d", MaxPageSize)
	}
	for field, s := range map[string]string{"Actor": f.Actor, "Task": f.Task, "RequestID": f.RequestID, "PolicyID": f.PolicyID, "Outcome": string(f.Outcome)} {
		if s != "" {
			if err := checkName(field, s); err != nil {
				return err
			}
		}
	}
	return nil
}
