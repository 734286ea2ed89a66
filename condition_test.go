package pam_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/zerostanding/pam"
)

// runaway is a condition that would run for minutes: it builds a range of
// a hundred billion numbers.
const runaway = "count(numbers.range(1, 100000000000)) > 0"

// TestPolicyRegoSandbox: Rego that calls a built-in outside the sandbox
// does not compile, in any of a policy's three fields; the RegoError names
// the built-in and says it is not allowed.
func TestPolicyRegoSandbox(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name, field, builtin string
		change               func(*pam.Policy)
	}{
		{"condition reads a file", "Condition", "json.match_schema", func(p *pam.Policy) {
			p.Condition = `json.match_schema(input.op.params, {"$ref": "file:///etc/passwd"})[0] == true`
		}},
		{"condition draws a random number", "Condition", "rand.intn", func(p *pam.Policy) { p.Condition = `rand.intn("x", 2) == 1` }},
		{"request rule asks the runtime", "RequestRule", "opa.runtime", func(p *pam.Policy) {
			p.RequestRule = `deny contains "x" if opa.runtime().env.HOME == ""`
		}},
		{"auto rule resolves a name", "AutoApproveRule", "net.lookup_ip_addr", func(p *pam.Policy) {
			p.AutoApproveRule = "approve if {\n  count(net.lookup_ip_addr(\"example.com\")) > 0\n}"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := movePolicy()
			tc.change(&p)
			_, err := e.m.CreatePolicy(e.admin(), p)
			var re *pam.RegoError
			if !errors.As(err, &re) || !errors.Is(err, pam.ErrInvalid) {
				t.Fatalf("CreatePolicy = %v, want a RegoError", err)
			}
			if re.Field != tc.field || !strings.HasPrefix(re.Message, tc.builtin+" is not allowed in ") || re.Line == 0 {
				t.Errorf("RegoError %s at %d:%d: %q, want %s refusing %s", re.Field, re.Line, re.Col, re.Message, tc.field, tc.builtin)
			}
		})
	}
}

// TestStoredPolicyOutsideTheSandbox: a stored policy whose Rego the
// sandbox refuses (written by an older version, say) fails closed and is
// reported.
func TestStoredPolicyOutsideTheSandbox(t *testing.T) {
	e := newEnv(t)
	p := movePolicy()
	p.Condition, p.Version, p.MinGrantVersion, p.CreatedAt, p.UpdatedAt = `rand.intn("x", 2) == 7`, 1, 1, epoch, epoch
	if err := e.store.Commit(context.Background(), &pam.Tx{Policies: []pam.Policy{p}}); err != nil {
		t.Fatal(err)
	}
	if ran, err := e.guard("alice", "New-MoveRequest", nil); ran || !errors.Is(err, pam.ErrNotApproved) {
		t.Fatalf("Guard: ran %v, %v; want covered and denied", ran, err)
	}
	if errs := e.errors.Take(); len(errs) != 1 || !strings.Contains(errs[0].Error(), "rand.intn is not allowed") {
		t.Errorf("OnError got %v", errs)
	}
}

// TestConditionTimeout: a condition that runs past Options.ConditionTimeout
// (the default here) is stopped near it and counts as an error: the
// policy covers the operation, a guard.denied event says it ran out of
// time, and a grant still lets the operation run.
func TestConditionTimeout(t *testing.T) {
	e := newEnv(t)
	p := movePolicy()
	p.ID, p.Condition = "slow", runaway
	e.policy(p)

	start := time.Now()
	ran, err := e.guard("alice", "New-MoveRequest", nil)
	took := time.Since(start)
	t.Logf("Guard with a runaway condition returned after %v (budget %v)", took.Round(time.Millisecond), pam.DefaultConditionTimeout)
	if ran || !errors.Is(err, pam.ErrNotApproved) {
		t.Fatalf("Guard: ran %v, %v; want denied", ran, err)
	}
	if took > pam.DefaultConditionTimeout+time.Second {
		t.Errorf("Guard took %v, want about %v", took, pam.DefaultConditionTimeout)
	}
	evs := e.events()
	last := evs[len(evs)-1]
	if last.Type != pam.EventGuardDenied || last.PolicyID != "slow" ||
		!strings.HasPrefix(last.Detail["condition_error"], "slow: the condition ran out of time") {
		t.Errorf("event %+v, want a guard.denied saying the condition ran out of time", last)
	}

	res, err := e.m.Check(e.admin(), pam.Op{Task: "New-MoveRequest"})
	if err != nil {
		t.Fatal(err)
	}
	if pc := res.Policies[0]; !pc.Covered || pc.Condition != "error" || !strings.Contains(pc.ConditionError, "ran out of time") {
		t.Errorf("Check: %+v", pc)
	}

	e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	if ran, err := e.guard("alice", "New-MoveRequest", nil); !ran || err != nil {
		t.Errorf("with a grant: ran %v, %v", ran, err)
	}
	evs = e.events()
	if allowed := evs[len(evs)-2]; allowed.Type != pam.EventGuardAllowed || !strings.Contains(allowed.Detail["condition_error"], "ran out of time") {
		t.Errorf("event %+v, want a guard.allowed that records the timeout", allowed)
	}

	if _, err := pam.New(fakesStore(), e.dir, &pam.Options{ConditionTimeout: -time.Second}); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("negative ConditionTimeout: %v, want ErrInvalid", err)
	}
}

// TestRuleTimeout: request rules and auto-approval rules have the same
// budget; one that runs out rejects the submission, the other does not
// approve (and is reported).
func TestRuleTimeout(t *testing.T) {
	e := newEnv(t, func(o *pam.Options) { o.ConditionTimeout = 20 * time.Millisecond })
	p := movePolicy()
	p.RequestRule = `deny contains "too many" if ` + runaway
	e.policy(p)
	_, err := e.m.Submit(e.as("alice"), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "INC-1"})
	var re *pam.RejectedError
	if !errors.As(err, &re) || len(re.Messages) != 1 || !strings.Contains(re.Messages[0], "ran out of time") {
		t.Fatalf("Submit = %v, want rejected for running out of time", err)
	}

	p = pam.Policy{ID: "auto", Scope: pam.TaskScope("Set-Mailbox"), Approval: pam.Manual,
		ApproverGroups: []pam.ApproverGroup{{Group: "mailbox-managers"}}, AutoApproveRule: "approve if " + runaway}
	e.policy(p)
	r := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("Set-Mailbox")})
	if r.State != pam.Pending {
		t.Errorf("auto-approval rule out of time: %s, want pending", r.State)
	}
	if errs := e.errors.Take(); len(errs) != 1 || !strings.Contains(errs[0].Error(), "ran out of time") {
		t.Errorf("OnError got %v", errs)
	}
}

// TestConditionErrorsReachOnlyAdmins: the text of a condition's error can
// quote what the condition read; Check gives it to admins only, Guard's
// error never carries it, and the audit trail keeps it for admins.
func TestConditionErrorsReachOnlyAdmins(t *testing.T) {
	e := newEnv(t)
	e.policy(pam.Policy{ID: "quota", Scope: pam.TaskScope("Set-Mailbox"), Approval: pam.Manual,
		ApproverGroups: []pam.ApproverGroup{{Group: "mailbox-managers"}}, Condition: "to_number(input.op.params.mailbox) > 1"})
	op := pam.Op{Task: "Set-Mailbox", Params: map[string]any{"mailbox": "s3cr3t-mailbox"}}

	res, err := e.m.Check(e.admin(), op)
	if err != nil {
		t.Fatal(err)
	}
	text := res.Policies[0].ConditionError
	if res.Policies[0].Condition != "error" || !strings.Contains(text, "to_number") || text == pam.ConditionErrorHidden {
		t.Fatalf("Check as admin: %+v, want the condition's error", res.Policies[0])
	}

	res, err = e.m.Check(e.as("alice"), op)
	if err != nil {
		t.Fatal(err)
	}
	if pc := res.Policies[0]; pc.ConditionError != pam.ConditionErrorHidden || !pc.Covered || pc.Condition != "error" {
		t.Errorf("Check as alice: %+v, want the error hidden", pc)
	}
	if res.Err == nil || strings.Contains(res.Err.Error(), "to_number") {
		t.Errorf("Check as alice: Err %v", res.Err)
	}
	if _, err := e.m.Check(context.Background(), op); err != nil {
		t.Errorf("Check without an actor: %v", err)
	}

	err = e.m.Guard(e.as("alice"), op, nop)
	var nae *pam.NotApprovedError
	if !errors.As(err, &nae) || strings.Contains(err.Error(), "to_number") || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("Guard as alice: %v, want a NotApprovedError without the condition's error", err)
	}

	evs := e.events()
	if last := evs[len(evs)-1]; last.Type != pam.EventGuardDenied || last.Detail["condition_error"] != "quota: "+text {
		t.Errorf("admin reads %+v, want the condition error %q", last, text)
	}
	own, _, err := e.m.Audit(e.as("alice"), pam.EventFilter{Actor: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if len(own) != 1 || own[0].Detail["condition_error"] != pam.ConditionErrorHidden {
		t.Errorf("alice reads her events as %+v, want the condition error hidden", own)
	}
	// Hiding it from alice left the stored event as it was.
	if evs := e.events(); evs[len(evs)-1].Detail["condition_error"] != "quota: "+text {
		t.Errorf("stored event changed: %+v", evs[len(evs)-1])
	}
}
