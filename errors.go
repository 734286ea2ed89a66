package pam

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Every error the engine returns wraps one of them; test
// with errors.Is. Typed errors below carry detail and unwrap to their
// sentinel.
var (
	// ErrInvalid: the input is malformed (empty or oversized names, NUL
	// bytes, invalid UTF-8, unknown kinds, bad durations, bad Rego). Nothing
	// was stored. A *ValidationError or *RegoError says what.
	ErrInvalid = errors.New("pam: invalid input")

	// ErrNotFound: no policy or request has that ID.
	ErrNotFound = errors.New("pam: not found")

	// ErrConflict: a store's version check failed because another writer
	// got there first: a lost race, nothing else. The engine retries
	// transitions; callers see it only when retries are exhausted, or when
	// they passed a version that is no longer current (UpdatePolicy).
	ErrConflict = errors.New("pam: version conflict")

	// ErrExists: the ID is taken. IDs are never reused: a policy ID stays
	// taken after the policy is deleted, so the trail never names two
	// policies with one ID.
	ErrExists = errors.New("pam: already exists")

	// ErrNoActor: the context carries no actor (see WithActor), or the
	// actor's identity is not valid.
	ErrNoActor = errors.New("pam: no actor in context")

	// ErrForbidden: the actor may not do this (not an admin for policy
	// changes, not an eligible approver, not the requester).
	ErrForbidden = errors.New("pam: forbidden")

	// ErrSelfApproval: the actor tried to approve or deny their own request.
	// It also matches ErrForbidden.
	ErrSelfApproval = fmt.Errorf("%w: requester cannot decide their own request", ErrForbidden)

	// ErrAlreadyDecided: the approver has already recorded a decision on
	// this request.
	ErrAlreadyDecided = errors.New("pam: approver already decided")

	// ErrWrongState: the request is not in a state that allows the
	// operation (approving an expired request, revoking a pending one,
	// anything on a terminal one).
	ErrWrongState = errors.New("pam: request is not in a state that allows this")

	// ErrNoPolicy: no policy covers the requested scope, or (with
	// Options.DenyUncovered) the operation.
	ErrNoPolicy = errors.New("pam: no policy covers this scope")

	// ErrAmbiguous: several policies cover the requested scope; name one
	// with RequestInput.PolicyID. A *AmbiguousError lists them.
	ErrAmbiguous = errors.New("pam: several policies cover this scope")

	// ErrLimit: the requester already has Options.MaxPending pending
	// requests (one must be decided, canceled or expire first), or broke
	// glass under the policy its BreakGlass.Limit times within the
	// Period.
	ErrLimit = errors.New("pam: limit reached")

	// ErrDurationTooLong: the requested duration exceeds the policy's
	// MaxDuration. Requests are rejected, never clipped.
	ErrDurationTooLong = errors.New("pam: duration exceeds the policy's maximum")

	// ErrRejected: the policy's request rule rejected the submission. A
	// *RejectedError carries the rule's messages.
	ErrRejected = errors.New("pam: request rejected by policy rule")

	// ErrNotApproved: Guard found no active grant for a policy that covers
	// the operation. A *NotApprovedError names the task and the policy.
	ErrNotApproved = errors.New("pam: operation requires an approved request")

	// ErrAudit: an audit event could not be stored, so the operation was
	// not performed (fail closed). Guard returns it only when fn did not
	// run; see ErrAuditIncomplete for the other case.
	ErrAudit = errors.New("pam: audit event could not be recorded")
	// ErrAuditIncomplete: the operation WAS performed (Guard ran fn,
	// and fn's own error, if any, is joined with this one), but its end
	// could not be recorded yet. The Manager keeps retrying until it is
	// recorded (Close waits for it, within its context); do not repeat
	// the operation.
	ErrAuditIncomplete = errors.New("pam: operation performed, but its end is not recorded yet")

	// ErrGrantEnded: the grant a guarded fn runs under ended while fn ran:
	// it was revoked, relinquished by its holder, cut by a policy change,
	// or its window closed. It is
	// the cause (context.Cause) of fn's context once that context ends for
	// the grant; a *GrantEndedError says which request and why. Guard
	// itself never returns it, unless fn does.
	ErrGrantEnded = errors.New("pam: grant ended")

	// ErrTampered: Verify found the audit trail altered, reordered, cut
	// short or otherwise inconsistent with its hash chain or checkpoints.
	// A *TamperError says where and how.
	ErrTampered = errors.New("pam: audit trail does not verify")
)

// ValidationError describes one invalid field. It unwraps to ErrInvalid.
type ValidationError struct {
	Field   string // e.g. "Reason", "Scope.Name", "ApproverGroups[1].Group"
	Problem string
}

func (e *ValidationError) Error() string {
	return "pam: invalid " + e.Field + ": " + e.Problem
}

func (e *ValidationError) Unwrap() error { return ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// RegoError is a syntax or compile error in a policy's Rego, with the
// position in the field's source (lines and columns start at 1; zero when
// OPA gave no position). It unwraps to ErrInvalid.
type RegoError struct {
	Field     string // "Condition", "RequestRule" or "AutoApproveRule"
	Line, Col int
	Message   string
}

func (e *RegoError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("pam: %s:%d:%d: %s", e.Field, e.Line, e.Col, e.Message)
	}
	return fmt.Sprintf("pam: %s: %s", e.Field, e.Message)
}

func (e *RegoError) Unwrap() error { return ErrInvalid }

// NotApprovedError tells the host what the actor must request before the
// operation can run. It unwraps to ErrNotApproved.
type NotApprovedError struct {
	Actor    string
	Task     string
	PolicyID string
	// Reason says why no grant matched: "no approved request", or why the
	// closest grant did not count ("expired", "approved under policy
	// version 3, policy now requires 5", ...), and what the actor can do:
	// which request of theirs is pending and what it waits for ("request
	// req_x is pending: 1 of 2 approvals (bob), waiting for
	// mailbox-managers"), or that they may not request under the policy.
	Reason string
	// Pending is the ID of the actor's request pending under the policy,
	// if any.
	Pending string
	// Ineligible: the actor may not request under the policy (see
	// Policy.RequesterGroups).
	Ineligible bool
}

func (e *NotApprovedError) Error() string {
	return fmt.Sprintf("pam: %s may not run %q: policy %s requires an approved request (%s)", e.Actor, e.Task, e.PolicyID, e.Reason)
}

func (e *NotApprovedError) Unwrap() error { return ErrNotApproved }

// GrantEndReason says why a grant ended while a guarded fn ran.
type GrantEndReason string

// Reasons a grant ends (GrantEndedError.Reason).
const (
	// GrantRevoked: the request was revoked (Revoke), or is no longer
	// approved for another reason than its holder relinquishing it or its
	// window closing.
	GrantRevoked GrantEndReason = "revoked"
	// GrantCut: a policy change cut the grant: its policy's
	// MinGrantVersion rose above the version it was approved under
	// (UpdatePolicy, SetCatalog, Apply), or the policy was deleted.
	GrantCut GrantEndReason = "cut by a policy change"
	// GrantExpired: the grant's window closed.
	GrantExpired GrantEndReason = "expired"
	// GrantRelinquished: the grant's holder ended it (Relinquish).
	GrantRelinquished GrantEndReason = "relinquished by its holder"
)

// GrantEndedError is the cause of a guarded fn's context that ended with
// its grant. It unwraps to ErrGrantEnded. It also matches the context
// error the context reports: context.DeadlineExceeded for GrantExpired,
// context.Canceled otherwise.
type GrantEndedError struct {
	RequestID string
	PolicyID  string
	Reason    GrantEndReason
}

func (e *GrantEndedError) Error() string {
	return fmt.Sprintf("pam: grant from request %s under policy %s %s", e.RequestID, e.PolicyID, e.Reason)
}

func (e *GrantEndedError) Unwrap() error { return ErrGrantEnded }

// Is matches the context error of the ended context.
func (e *GrantEndedError) Is(target error) bool { return target == e.contextErr() }

func (e *GrantEndedError) contextErr() error {
	if e.Reason == GrantExpired {
		return context.DeadlineExceeded
	}
	return context.Canceled
}

// RejectedError carries the messages of the request rule that rejected a
// submission. It unwraps to ErrRejected.
type RejectedError struct {
	PolicyID string
	Messages []string
}

func (e *RejectedError) Error() string {
	return "pam: request rejected by policy " + e.PolicyID + ": " + strings.Join(e.Messages, "; ")
}

func (e *RejectedError) Unwrap() error { return ErrRejected }

// AmbiguousError lists the policies that could bind a request. It unwraps
// to ErrAmbiguous.
type AmbiguousError struct {
	PolicyIDs []string
}

func (e *AmbiguousError) Error() string {
	return "pam: several policies cover this scope, choose one with PolicyID: " + strings.Join(e.PolicyIDs, ", ")
}

func (e *AmbiguousError) Unwrap() error { return ErrAmbiguous }

// TamperReason says how a trail failed to verify.
type TamperReason string

// Reasons Verify reports, for the first event that does not verify.
const (
	// ReasonAltered: the event's fields do not match its hash.
	ReasonAltered TamperReason = "altered"
	// ReasonBrokenLink: the event's PrevHash is not the hash of the event
	// before it: an event was removed, inserted or rewritten before it.
	ReasonBrokenLink TamperReason = "broken_link"
	// ReasonReordered: the event is intact but sits at another position
	// than the one it was written at.
	ReasonReordered TamperReason = "reordered"
	// ReasonGap: a sequence number is missing.
	ReasonGap TamperReason = "gap"
	// ReasonTruncated: the trail ends before a checkpoint's sequence
	// number.
	ReasonTruncated TamperReason = "truncated"
	// ReasonCheckpointMismatch: at a checkpoint's sequence number the
	// trail has another head hash: history up to it was rewritten and
	// re-hashed.
	ReasonCheckpointMismatch TamperReason = "checkpoint_mismatch"
	// ReasonBadSignature: a checkpoint's signature does not verify with
	// the given public key (or the checkpoint is unsigned).
	ReasonBadSignature TamperReason = "bad_signature"
	// ReasonMalformed: the stored event does not decode strictly
	// (Event.Malformed says how: a Detail that is not a JSON object of
	// strings, a column of the wrong type, a hash of the wrong length),
	// or its sequence number is below 1. No store writes such an event:
	// it was written around the library.
	ReasonMalformed TamperReason = "malformed"
)

// TamperError reports the first sequence number that failed
// verification. It unwraps to ErrTampered.
type TamperError struct {
	Seq    int64        `json:"seq"`
	Reason TamperReason `json:"reason"`
	Detail string       `json:"detail"`
}

func (e *TamperError) Error() string {
	return fmt.Sprintf("pam: audit trail does not verify at event %d: %s: %s", e.Seq, e.Reason, e.Detail)
}

func (e *TamperError) Unwrap() error { return ErrTampered }
