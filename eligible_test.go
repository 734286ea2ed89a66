package pam_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/zerostanding/pam"
)

// eligiblePolicy is movePolicy open to the members of two requester
// groups only.
func eligiblePolicy() pam.Policy {
	p := movePolicy()
	p.RequesterGroups = []string{"helpdesk", "mailbox-admins"}
	return p
}

func eligibleEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	e.dir.SetMembers("helpdesk", "alice")
	e.dir.SetMembers("mailbox-admins", "Zoe")
	e.policy(eligiblePolicy())
	return e
}

// TestRequesterGroups: only members of a policy's requester groups may
// submit under it; anyone else is forbidden, told which groups may, and
// nothing is written.
func TestRequesterGroups(t *testing.T) {
	e := eligibleEnv(t)
	for _, who := range []string{"alice", "ZOE"} { // a member of either group, any spelling
		if _, err := e.m.Submit(e.as(who), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "leaver"}); err != nil {
			t.Errorf("Submit as %s, a member: %v", who, err)
		}
	}
	seq, queued := e.lastSeq(), len(e.messages(pam.MessageFilter{}))
	for _, n := range []pam.RequestInput{
		{Scope: pam.TaskScope("New-MoveRequest"), Reason: "leaver"},
		{PolicyID: "move", Reason: "leaver"},
	} {
		_, err := e.m.Submit(e.as("mallory"), n)
		if !errors.Is(err, pam.ErrForbidden) || !strings.Contains(err.Error(), "only members of helpdesk or mailbox-admins may request") {
			t.Errorf("Submit as a non-member = %v, want ErrForbidden naming the groups", err)
		}
	}
	// Approvers and admins are not requesters by right.
	for _, who := range []string{"bob", "admin"} {
		if _, err := e.m.Submit(e.as(who), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "r"}); !errors.Is(err, pam.ErrForbidden) {
			t.Errorf("Submit as %s = %v, want ErrForbidden", who, err)
		}
	}
	if evs := e.eventsSince(seq); len(evs) != 0 {
		t.Errorf("refused submissions wrote %v", types(evs))
	}
	if n := len(e.messages(pam.MessageFilter{})); n != queued {
		t.Errorf("refused submissions queued %d messages", n-queued)
	}
	// Membership is read at submission: joining a group is enough.
	e.dir.SetMembers("helpdesk", "alice", "mallory")
	if _, err := e.m.Submit(e.as("mallory"), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "r"}); err != nil {
		t.Errorf("Submit after joining helpdesk: %v", err)
	}
}

// TestRequesterGroupsDirectoryDown: a directory that cannot answer
// refuses the submission (fail closed) with its error, and writes
// nothing.
func TestRequesterGroupsDirectoryDown(t *testing.T) {
	e := eligibleEnv(t)
	down := errors.New("ldap: connection refused")
	e.dirs.Fail("helpdesk", down)
	seq := e.lastSeq()
	_, err := e.m.Submit(e.as("alice"), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "r"})
	if !errors.Is(err, down) {
		t.Fatalf("Submit with the directory down = %v, want its error", err)
	}
	if evs := e.eventsSince(seq); len(evs) != 0 {
		t.Errorf("a refused submission wrote %v", types(evs))
	}
	// Check says it could not tell, and does not tell them what to request.
	res, err := e.m.Check(e.as("alice"), pam.Op{Task: "New-MoveRequest"})
	if err != nil {
		t.Fatal(err)
	}
	pc := res.Policies[0]
	if res.Allowed || !pc.Ineligible || !strings.Contains(pc.Missing, "could not be checked") || !strings.Contains(pc.Missing, "connection refused") {
		t.Errorf("Check with the directory down: allowed %v, %+v", res.Allowed, pc)
	}
	var na *pam.NotApprovedError
	if !errors.As(res.Err, &na) || !na.Ineligible || !errors.Is(res.Err, pam.ErrNotApproved) {
		t.Errorf("Check's error = %v, want a NotApprovedError marked ineligible", res.Err)
	}
	if errs := e.errors.Take(); len(errs) == 0 {
		t.Error("the directory's failure was not reported")
	}
	// A policy without requester groups does not ask the directory.
	e.dirs.Fail("helpdesk", nil)
	e.dirs.Fail("mailbox-admins", down)
	if _, err := e.m.Submit(e.as("alice"), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "r"}); err != nil {
		t.Errorf("Submit by a member of the first group, the second's directory down: %v", err)
	}
}

// TestCheckIneligible: Check and Guard tell an actor outside the
// requester groups that they cannot request under the policy, rather
// than what to request; a member is told what to request.
func TestCheckIneligible(t *testing.T) {
	e := eligibleEnv(t)
	res, err := e.m.Check(e.as("mallory"), pam.Op{Task: "New-MoveRequest"})
	if err != nil {
		t.Fatal(err)
	}
	want := "mallory may not request under this policy: only members of helpdesk or mailbox-admins may request under it"
	if pc := res.Policies[0]; !pc.Ineligible || pc.Missing != want || pc.Pending != "" {
		t.Errorf("Check for a non-member: %+v\nwant Missing %q", pc, want)
	}
	ran, err := e.guard("mallory", "New-MoveRequest", nil)
	var na *pam.NotApprovedError
	if ran || !errors.As(err, &na) || !na.Ineligible || na.Reason != want || !strings.Contains(err.Error(), want) {
		t.Errorf("Guard for a non-member: ran %v, %v", ran, err)
	}
	res, _ = e.m.Check(e.as("alice"), pam.Op{Task: "New-MoveRequest"})
	if pc := res.Policies[0]; pc.Ineligible || pc.Missing != "no approved request" {
		t.Errorf("Check for a member: %+v", pc)
	}
	// A grant that ended is said first, then that they cannot request.
	e.dir.SetMembers("helpdesk", "alice", "mallory")
	e.grant("mallory", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Duration: time.Hour})
	e.dir.SetMembers("helpdesk", "alice")
	if ran, err := e.guard("mallory", "New-MoveRequest", nil); !ran || err != nil {
		t.Errorf("a grant approved before leaving the group still counts: ran %v, %v", ran, err)
	}
	e.clk.Add(time.Hour)
	res, _ = e.m.Check(e.as("mallory"), pam.Op{Task: "New-MoveRequest"})
	if pc := res.Policies[0]; !pc.Ineligible || !strings.HasPrefix(pc.Missing, "the grant from request") || !strings.HasSuffix(pc.Missing, "; "+want) {
		t.Errorf("Check after the grant expired: %+v", pc)
	}
}

// TestRequesterGroupsValidation: requester groups are names, like
// approver groups; Apply and the JSON form carry them, and changing them
// cuts no grant.
func TestRequesterGroupsValidation(t *testing.T) {
	e := newEnv(t)
	for name, tc := range map[string]struct {
		groups []string
		field  string
	}{
		"empty name":     {[]string{"helpdesk", ""}, "RequesterGroups[1]"},
		"control char":   {[]string{"help\x00desk"}, "RequesterGroups[0]"},
		"invalid UTF-8":  {[]string{"\xff"}, "RequesterGroups[0]"},
		"listed twice":   {[]string{"helpdesk", "helpdesk"}, "RequesterGroups[1]"},
		"too many":       {make([]string, pam.MaxGroups+1), "RequesterGroups"},
		"name too long":  {[]string{strings.Repeat("g", pam.MaxNameLen+1)}, "RequesterGroups[0]"},
		"second invalid": {[]string{"a", "b\n"}, "RequesterGroups[1]"},
	} {
		p := movePolicy()
		p.RequesterGroups = tc.groups
		_, err := e.m.CreatePolicy(e.admin(), p)
		var ve *pam.ValidationError
		if !errors.As(err, &ve) || !errors.Is(err, pam.ErrInvalid) || ve.Field != tc.field {
			t.Errorf("%s: %v, want a ValidationError of %s", name, err, tc.field)
		}
	}
	if ps, _ := e.m.Policies(e.admin()); len(ps) != 0 {
		t.Fatalf("invalid policies stored: %+v", ps)
	}

	// Apply: created with them, then changed; the change cuts nothing.
	e.dir.SetMembers("helpdesk", "alice")
	p := eligiblePolicy()
	p.ID = ""
	if _, err := e.m.Apply(e.admin(), pam.Config{Policies: map[string]pam.Policy{"move": p}}, pam.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	g := e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	p.RequesterGroups = []string{"mailbox-admins"}
	plan, err := e.m.Apply(e.admin(), pam.Config{Policies: map[string]pam.Policy{"move": p}}, pam.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Policies) != 1 || len(plan.Policies[0].Changed) != 1 || plan.Policies[0].Changed[0] != "requester_groups" || plan.Policies[0].CutsGrants {
		t.Errorf("plan %+v, want requester_groups changed, no grant cut", plan.Policies)
	}
	if ran, err := e.guard("alice", "New-MoveRequest", nil); !ran || err != nil {
		t.Errorf("grant %s after the requester groups changed: ran %v, %v", g.ID, ran, err)
	}
	if _, err := e.m.Submit(e.as("alice"), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "r"}); !errors.Is(err, pam.ErrForbidden) {
		t.Errorf("Submit after leaving the requester groups = %v, want ErrForbidden", err)
	}
	// UpdatePolicy clears them: anyone may request again.
	cur, _ := e.m.Policy(e.admin(), "move")
	cur.RequesterGroups = nil
	if cur, err = e.m.UpdatePolicy(e.admin(), cur); err != nil || cur.RequesterGroups != nil || cur.MinGrantVersion != 1 {
		t.Fatalf("UpdatePolicy clearing the requester groups: %+v, %v", cur, err)
	}
	if _, err := e.m.Submit(e.as("mallory"), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "r"}); err != nil {
		t.Errorf("Submit under a policy open to anyone: %v", err)
	}
}
