package pam_test

import (
	"errors"
	"testing"
	"time"

	"github.com/zerostanding/pam"
)

// TestGuardDecision checks Guard's pure decision against every fact that
// changes it.
func TestGuardDecision(t *testing.T) {
	now := epoch.Add(time.Hour)
	move := pam.Policy{ID: "move", Scope: pam.TaskScope("New-MoveRequest"), MinGrantVersion: 2}
	role := pam.Policy{ID: "role", Scope: pam.RoleScope("Move Mailboxes"), MinGrantVersion: 1}
	grant := func(id, policy string, scope pam.Scope, version int64, from, to time.Duration) pam.Grant {
		return pam.Grant{RequestID: id, Version: 2, PolicyID: policy, Scope: scope, PolicyVersion: version, ApprovedAt: epoch.Add(from), ExpiresAt: epoch.Add(to)}
	}
	good := grant("r1", "move", pam.TaskScope("New-MoveRequest"), 2, 0, 2*time.Hour)
	base := func() pam.GuardFacts {
		return pam.GuardFacts{Actor: "alice", Op: pam.Op{Task: "New-MoveRequest"}, Now: now, Policies: []pam.Policy{move},
			Grants: []pam.Grant{good}, Catalog: testCatalog}
	}
	for _, tc := range []struct {
		name     string
		change   func(*pam.GuardFacts)
		outcome  pam.Outcome
		err      error
		grant    string
		deadline time.Time
	}{
		{name: "an active grant", outcome: pam.OutcomeGranted, grant: "r1", deadline: good.ExpiresAt},
		{name: "no actor", change: func(f *pam.GuardFacts) { f.ActorErr = pam.ErrNoActor }, outcome: pam.OutcomeNotApproved, err: pam.ErrNoActor},
		{name: "no actor, uncovered", change: func(f *pam.GuardFacts) { f.ActorErr, f.Uncovered = pam.ErrNoActor, []bool{true} },
			outcome: pam.OutcomeUncovered, err: pam.ErrNoActor},
		{name: "no actor, uncovered, deny by default", change: func(f *pam.GuardFacts) {
			f.ActorErr, f.Uncovered, f.DenyUncovered = pam.ErrNoActor, []bool{true}, true
		}, outcome: pam.OutcomeNotApproved, err: pam.ErrNoActor},
		{name: "the condition is false", change: func(f *pam.GuardFacts) { f.Uncovered, f.Grants = []bool{true}, nil }, outcome: pam.OutcomeUncovered},
		{name: "uncovered, deny by default", change: func(f *pam.GuardFacts) { f.Uncovered, f.DenyUncovered = []bool{true}, true },
			outcome: pam.OutcomeNoPolicy, err: pam.ErrNoPolicy},
		{name: "uncovered, deny by default, system account", change: func(f *pam.GuardFacts) {
			f.Uncovered, f.DenyUncovered, f.Exempt = []bool{true}, true, true
		}, outcome: pam.OutcomeExempt},
		{name: "a system account", change: func(f *pam.GuardFacts) { f.Exempt, f.Grants = true, nil }, outcome: pam.OutcomeExempt},
		{name: "the grants could not be read", change: func(f *pam.GuardFacts) { f.Grants, f.GrantsErr = nil, errors.New("disk") },
			outcome: pam.OutcomeNotApproved},
		{name: "no grant", change: func(f *pam.GuardFacts) { f.Grants = nil }, outcome: pam.OutcomeNotApproved, err: pam.ErrNotApproved},
		{name: "the grant ended one nanosecond ago", change: func(f *pam.GuardFacts) { f.Now = good.ExpiresAt },
			outcome: pam.OutcomeNotApproved, err: pam.ErrNotApproved},
		{name: "the grant opens in one nanosecond", change: func(f *pam.GuardFacts) { f.Now = good.ApprovedAt.Add(-time.Nanosecond) },
			outcome: pam.OutcomeNotApproved, err: pam.ErrNotApproved},
		{name: "approved under an older policy version", change: func(f *pam.GuardFacts) {
			f.Grants = []pam.Grant{grant("r1", "move", pam.TaskScope("New-MoveRequest"), 1, 0, 2*time.Hour)}
		}, outcome: pam.OutcomeNotApproved, err: pam.ErrNotApproved},
		{name: "a grant for another policy", change: func(f *pam.GuardFacts) {
			f.Grants = []pam.Grant{grant("r1", "other", pam.TaskScope("New-MoveRequest"), 2, 0, 2*time.Hour)}
		}, outcome: pam.OutcomeNotApproved, err: pam.ErrNotApproved},
		{name: "a role grant whose role lacks the task", change: func(f *pam.GuardFacts) {
			f.Policies = []pam.Policy{role}
			f.Grants = []pam.Grant{grant("r2", "role", pam.RoleScope("Journaling"), 1, 0, time.Hour)}
		}, outcome: pam.OutcomeNotApproved, err: pam.ErrNotApproved},
		{name: "two covering policies, one grant", change: func(f *pam.GuardFacts) { f.Policies = []pam.Policy{move, role} },
			outcome: pam.OutcomeNotApproved, err: pam.ErrNotApproved},
		{name: "two covering policies, two grants: the earliest end is the deadline", change: func(f *pam.GuardFacts) {
			f.Policies = []pam.Policy{move, role}
			f.Grants = append(f.Grants, grant("r2", "role", pam.RoleScope("Move Mailboxes"), 1, 0, 90*time.Minute))
		}, outcome: pam.OutcomeGranted, grant: "r1", deadline: epoch.Add(90 * time.Minute)},
		{name: "the later of two grants under one policy", change: func(f *pam.GuardFacts) {
			f.Grants = append(f.Grants, grant("r3", "move", pam.TaskScope("New-MoveRequest"), 2, 0, 3*time.Hour))
		}, outcome: pam.OutcomeGranted, grant: "r3", deadline: epoch.Add(3 * time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := base()
			if tc.change != nil {
				tc.change(&f)
			}
			res := pam.DecideGuard(f)
			if res.Outcome != tc.outcome {
				t.Errorf("outcome %s, want %s (%v)", res.Outcome, tc.outcome, res.Err)
			}
			if allowed := tc.outcome == pam.OutcomeGranted || tc.outcome == pam.OutcomeExempt || tc.outcome == pam.OutcomeUncovered && tc.err == nil; res.Allowed != allowed {
				t.Errorf("allowed %v, want %v", res.Allowed, allowed)
			}
			switch {
			case tc.err != nil && !errors.Is(res.Err, tc.err):
				t.Errorf("err %v, want %v", res.Err, tc.err)
			case tc.err == nil && res.Allowed && res.Err != nil:
				t.Errorf("allowed with err %v", res.Err)
			}
			if tc.grant != "" && res.Policies[0].Grant != tc.grant {
				t.Errorf("grant %q, want %q", res.Policies[0].Grant, tc.grant)
			}
			if !res.Deadline.Equal(tc.deadline) {
				t.Errorf("deadline %v, want %v", res.Deadline, tc.deadline)
			}
		})
	}
}
