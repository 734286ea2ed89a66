package main

import (
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/zerostanding/pam"
)

// enum is a flag that takes one of a fixed set of values, repeatable or
// not: any other value is refused as invalid input, with the values
// allowed, and the shell completion offers them.
type enum struct {
	name    string
	allowed []string
	vals    *[]string // every value given; one, unless repeat
	repeat  bool
}

// enumVar defines an enum flag on fs whose values land in vals.
func enumVar(fs *pflag.FlagSet, vals *[]string, name string, repeat bool, usage string, allowed ...string) {
	fs.Var(&enum{name: name, allowed: allowed, vals: vals, repeat: repeat}, name, usage)
}

func (e *enum) String() string { return strings.Join(*e.vals, ",") }
func (e *enum) Type() string   { return "string" }

func (e *enum) Set(v string) error {
	if !slices.Contains(e.allowed, v) {
		return failf(pam.ErrInvalid, "--%s %q is not one of the values it takes: %s", e.name, v, strings.Join(e.allowed, ", "))
	}
	if e.repeat {
		*e.vals = append(*e.vals, v)
	} else {
		*e.vals = []string{v}
	}
	return nil
}

// The values of the enum flags. The engine's own types define them; a
// test checks these lists against what it records.
var (
	requestStates = []string{string(pam.Pending), string(pam.Approved), string(pam.Denied), string(pam.Canceled), string(pam.Revoked), string(pam.Relinquished), string(pam.Expired)}
	grantStates   = []string{string(pam.Approved), string(pam.Revoked), string(pam.Relinquished), string(pam.Expired)}
	reviewStates  = []string{string(pam.ReviewPending), string(pam.ReviewConfirmed), string(pam.ReviewFlagged)}
	approvals     = []string{string(pam.Manual), string(pam.Auto)}
	eventTypes    = strs(pam.EventPolicyCreated, pam.EventPolicyUpdated, pam.EventPolicyDeleted, pam.EventCatalogSet,
		pam.EventRequestSubmitted, pam.EventRequestDecision, pam.EventRequestApproved, pam.EventRequestDenied,
		pam.EventRequestCanceled, pam.EventRequestRevoked, pam.EventRequestRelinquished, pam.EventRequestExpired,
		pam.EventRequestReminded, pam.EventRequestEscalated, pam.EventRequestSpent,
		pam.EventRequestBreakGlass, pam.EventRequestBreakGlassConfirmed, pam.EventRequestBreakGlassFlagged, pam.EventRequestBreakGlassOverdue,
		pam.EventRequestExtensionRequested, pam.EventRequestExtended, pam.EventRequestExtensionDenied,
		pam.EventGuardAllowed, pam.EventGuardExempt, pam.EventGuardDenied, pam.EventGuardFinished, pam.EventGuardFinishedLate,
		pam.EventNotifyFailed, pam.EventSinkFailed, pam.EventSinkRecovered)
	outcomes = strs(pam.OutcomeGranted, pam.OutcomeExempt, pam.OutcomeNotApproved, pam.OutcomeNoPolicy, pam.OutcomeAuditUnavailable,
		pam.OutcomeOK, pam.OutcomeError, pam.OutcomePanic, pam.OutcomeNotRun, pam.OutcomeEndedUnknown,
		pam.OutcomeApprove, pam.OutcomeDeny, pam.OutcomeRequired, pam.OutcomeBestEffort, pam.OutcomeFailed)
)

func strs[T ~string](vs ...T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}
