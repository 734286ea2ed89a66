package pam

import "time"

// The pure lifecycle, exported to the tests of package pam_test.
type (
	Facts      = facts
	Membership = membership
)

var (
	Apply   = apply
	MayView = mayView
)

// DecodeDetailTokens is DecodeDetail's slow path alone.
var DecodeDetailTokens = decodeDetail

// GuardFacts are the facts of Guard's decision, in exported form.
type GuardFacts struct {
	Actor         string
	ActorErr      error
	Op            Op
	Now           time.Time
	Policies      []Policy
	Uncovered     []bool // per policy: its condition said false
	Exempt        bool
	DenyUncovered bool
	Grants        []Grant
	GrantsErr     error
	Catalog       Catalog
}

// DecideGuard runs Guard's pure decision on f.
func DecideGuard(f GuardFacts) CheckResult {
	g := guardFacts{actor: f.Actor, actorErr: f.ActorErr, op: f.Op, now: f.Now, exempt: f.Exempt, denyUncovered: f.DenyUncovered,
		catalog: indexCatalog(&f.Catalog), grants: f.Grants, grantsErr: f.GrantsErr}
	for i := range f.Policies {
		g.cands = append(g.cands, &compiled{Policy: f.Policies[i]})
		g.checks = append(g.checks, PolicyCheck{PolicyID: f.Policies[i].ID, Covered: i >= len(f.Uncovered) || !f.Uncovered[i]})
	}
	return decideGuard(&g)
}
