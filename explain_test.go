package pam_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/zerostanding/pam"
)

// checkMissing runs Check of New-MoveRequest as who and returns the
// first policy's check, failing unless it is a denial for want of a
// grant whose error says the same.
func checkMissing(t *testing.T, e *env, who string) pam.PolicyCheck {
	t.Helper()
	res, err := e.m.Check(e.as(who), pam.Op{Task: "New-MoveRequest"})
	if err != nil {
		t.Fatal(err)
	}
	var na *pam.NotApprovedError
	if res.Allowed || res.Outcome != pam.OutcomeNotApproved || !errors.As(res.Err, &na) {
		t.Fatalf("Check: allowed %v, %s, %v", res.Allowed, res.Outcome, res.Err)
	}
	pc := res.Policies[0]
	if na.Reason != pc.Missing || na.Pending != pc.Pending {
		t.Errorf("the error says %q (pending %q), the check %q (pending %q)", na.Reason, na.Pending, pc.Missing, pc.Pending)
	}
	return pc
}

// TestPendingRequestNamed: while a request is pending, Check and Guard's
// error name it, with the approvals that count and the groups it waits
// for (M of N).
func TestPendingRequestNamed(t *testing.T) {
	e := newEnv(t)
	p := movePolicy()
	p.ApproverGroups[0].MinApprovals = 2
	e.policy(p)
	r := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})

	want := fmt.Sprintf("request %s is pending: 0 of 2 approvals, waiting for mailbox-managers (2 more)", r.ID)
	if pc := checkMissing(t, e, "alice"); pc.Missing != want || pc.Pending != r.ID || pc.Ineligible {
		t.Errorf("before any approval: %+v\nwant %q", pc, want)
	}
	e.approve("bob", r.ID)
	want = fmt.Sprintf("request %s is pending: 1 of 2 approvals (bob), waiting for mailbox-managers", r.ID)
	if pc := checkMissing(t, e, "alice"); pc.Missing != want {
		t.Errorf("after one approval: %q\nwant %q", pc.Missing, want)
	}
	ran, err := e.guard("alice", "New-MoveRequest", nil)
	var na *pam.NotApprovedError
	if ran || !errors.Is(err, pam.ErrNotApproved) || !errors.As(err, &na) || na.Pending != r.ID || !strings.Contains(err.Error(), want) {
		t.Errorf("Guard while pending: ran %v, %v", ran, err)
	}
	if evs := e.events(); evs[len(evs)-1].Type != pam.EventGuardDenied || !strings.Contains(evs[len(evs)-1].Detail["error"], want) {
		t.Errorf("the denial's event: %+v", evs[len(evs)-1])
	}
	// Another user has no pending request: nothing of alice's is named.
	if pc := checkMissing(t, e, "zoe"); pc.Missing != "no approved request" || pc.Pending != "" {
		t.Errorf("zoe is told %+v", pc)
	}
	// An approver who left the group no longer counts.
	e.dir.SetMembers("mailbox-managers", "carol", "Dave")
	want = fmt.Sprintf("request %s is pending: 0 of 2 approvals, waiting for mailbox-managers (2 more)", r.ID)
	if pc := checkMissing(t, e, "alice"); pc.Missing != want {
		t.Errorf("after bob left the group: %q\nwant %q", pc.Missing, want)
	}
	// Once its pending time has passed it is not named, recorded or not.
	e.clk.Add(24 * time.Hour)
	if pc := checkMissing(t, e, "alice"); pc.Missing != "no approved request" || pc.Pending != "" {
		t.Errorf("after the pending time: %+v", pc)
	}
}

// TestPendingRequestSeveralGroups: with several approver groups each
// approval counts for one group, and each group short of its minimum is
// named.
func TestPendingRequestSeveralGroups(t *testing.T) {
	e := newEnv(t)
	p := movePolicy()
	p.ApproverGroups = []pam.ApproverGroup{{Group: "mailbox-managers", MinApprovals: 2}, {Group: "security"}}
	e.policy(p)
	r := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	e.approve("carol", r.ID) // in both groups: one seat
	want := fmt.Sprintf("request %s is pending: 1 of 3 approvals (carol), waiting for mailbox-managers and security", r.ID)
	if pc := checkMissing(t, e, "alice"); pc.Missing != want {
		t.Errorf("after carol: %q\nwant %q", pc.Missing, want)
	}
	e.approve("erin", r.ID)
	want = fmt.Sprintf("request %s is pending: 2 of 3 approvals (carol, erin), waiting for mailbox-managers", r.ID)
	if pc := checkMissing(t, e, "alice"); pc.Missing != want {
		t.Errorf("after erin: %q\nwant %q", pc.Missing, want)
	}
	// The newest of two pending requests is named.
	e.clk.Add(time.Minute)
	r2 := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	if pc := checkMissing(t, e, "alice"); pc.Pending != r2.ID {
		t.Errorf("named %s, want the newest, %s", pc.Pending, r2.ID)
	}
}

// TestPendingExplanationFailsSoft: when the pending requests or the
// approvers' groups cannot be read, the denial stands, ErrNotApproved,
// with less to say; the failure is reported.
func TestPendingExplanationFailsSoft(t *testing.T) {
	e := newEnv(t)
	p := movePolicy()
	p.ApproverGroups[0].MinApprovals = 2
	e.policy(p)
	r := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	e.approve("bob", r.ID)

	down := errors.New("store: connection reset")
	e.store.FailRequests(down)
	if pc := checkMissing(t, e, "alice"); pc.Missing != "no approved request" || pc.Pending != "" {
		t.Errorf("with the read failing: %+v", pc)
	}
	ran, err := e.guard("alice", "New-MoveRequest", nil)
	var na *pam.NotApprovedError
	if ran || !errors.As(err, &na) || errors.Is(err, down) || na.Reason != "no approved request" {
		t.Errorf("Guard with the read failing: ran %v, %v", ran, err)
	}
	if errs := e.errors.Take(); len(errs) == 0 || !errors.Is(errs[0], down) {
		t.Errorf("reported %v, want the read's failure", errs)
	}
	e.store.FailRequests(nil)

	e.dirs.Fail("mailbox-managers", errors.New("ldap: timeout"))
	want := fmt.Sprintf("request %s is pending: 1 approved so far, 2 approvals needed", r.ID)
	if pc := checkMissing(t, e, "alice"); pc.Missing != want || pc.Pending != r.ID {
		t.Errorf("with the directory down: %+v\nwant %q", pc, want)
	}
}

// TestAllowedReadsNothingMore: an allowed Guard or Check reads no
// request list and asks the directory nothing; only a denial does.
func TestAllowedReadsNothingMore(t *testing.T) {
	e := newEnv(t)
	p := movePolicy()
	p.RequesterGroups = []string{"mailbox-managers", "helpdesk"}
	e.policy(p)
	e.dir.SetMembers("helpdesk", "alice")
	e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	reads, asks := e.store.RequestsCalls(), e.dirs.Calls()
	for range 3 {
		if ran, err := e.guard("alice", "New-MoveRequest", nil); !ran || err != nil {
			t.Fatalf("Guard: ran %v, %v", ran, err)
		}
		if res, err := e.m.Check(e.as("alice"), pam.Op{Task: "New-MoveRequest"}); err != nil || !res.Allowed {
			t.Fatalf("Check: %+v, %v", res, err)
		}
	}
	if got, asked := e.store.RequestsCalls()-reads, e.dirs.Calls()-asks; got != 0 || asked != 0 {
		t.Errorf("allowed runs read requests %d times and asked the directory %d times, want 0", got, asked)
	}
	if _, err := e.guard("zoe", "New-MoveRequest", nil); !errors.Is(err, pam.ErrNotApproved) {
		t.Fatal(err)
	}
	if e.store.RequestsCalls()-reads != 1 {
		t.Errorf("a denial read requests %d times, want once", e.store.RequestsCalls()-reads)
	}
}
