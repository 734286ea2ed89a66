package storetest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/google/go-cmp/cmp"

	"github.com/zerostanding/pam"
)

// runEngine drives a pam.Manager over the store: the workflow end to end,
// and bad input, which every store must see identically (that is, never).
func runEngine(t *testing.T, fresh func(t *testing.T) (pam.Store, *clock.Mock)) {
	t.Run("Workflow", func(t *testing.T) { s, clk := fresh(t); testWorkflow(t, s, clk) })
	t.Run("BadInputNeverReachesTheStore", func(t *testing.T) { s, clk := fresh(t); testBadInput(t, s, clk) })
	t.Run("SharedCatalog", func(t *testing.T) { s, clk := fresh(t); testSharedCatalog(t, s, clk) })
	t.Run("Faults", func(t *testing.T) { s, _ := fresh(t); testFaults(t, s, false) })
	t.Run("FaultsSyncEnds", func(t *testing.T) { s, _ := fresh(t); testFaults(t, s, true) })
	t.Run("LastUseRace", func(t *testing.T) { s, clk := fresh(t); LastUseRace(t, []pam.Store{s}, clk) })
	t.Run("BoundGrant", func(t *testing.T) { s, clk := fresh(t); testBoundGrant(t, s, clk) })
	t.Run("NudgeOnce", func(t *testing.T) { s, clk := fresh(t); NudgeOnce(t, []pam.Store{s, s}, clk) })
	t.Run("BreakGlassOnce", func(t *testing.T) { s, clk := fresh(t); BreakGlassOnce(t, []pam.Store{s, s}, clk) })
}

// Manager returns a Manager over s with a small directory: admin in
// pam-admins; bob, carol and dave in approvers.
func Manager(t testing.TB, s pam.Store, clk clock.Clock) *pam.Manager {
	t.Helper()
	dir, err := pam.NewStaticDirectory(map[string][]string{
		"pam-admins": {"admin"},
		"approvers":  {"bob", "carol", "dave"},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Ends stored before Guard returns, so that the trails the tests
	// compare are in one order (the deferred ends have Faults).
	m, err := pam.New(s, dir, &pam.Options{Clock: clk, AdminGroup: "pam-admins", SyncRunEnds: true})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// managers returns a Manager (see Manager) over each of stores, closed
// when the test ends.
func managers(t testing.TB, stores []pam.Store, clk clock.Clock) []*pam.Manager {
	t.Helper()
	ms := make([]*pam.Manager, len(stores))
	for i, s := range stores {
		m := Manager(t, s, clk)
		t.Cleanup(func() { m.Close(context.Background()) })
		ms[i] = m
	}
	return ms
}

// As returns a context acting as who.
func As(who string) context.Context { return pam.WithActor(context.Background(), who) }

// TwoApprovals is a policy on New-MoveRequest that needs two approvers.
var TwoApprovals = pam.Policy{ID: "move", Scope: pam.TaskScope("New-MoveRequest"), Approval: pam.Manual,
	ApproverGroups: []pam.ApproverGroup{{Group: "approvers", MinApprovals: 2}}}

func testWorkflow(t *testing.T, s pam.Store, clk *clock.Mock) {
	m := Manager(t, s, clk)
	if _, err := m.CreatePolicy(As("admin"), TwoApprovals); err != nil {
		t.Fatal(err)
	}
	run := func() error {
		return m.Guard(As("alice"), pam.Op{Task: "New-MoveRequest"}, func(context.Context) error { return nil })
	}
	r, err := m.Submit(As("alice"), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "leaver ✓ ünïcode", Duration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Approve(As("bob"), r.ID, "one"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Approve(As("BOB"), r.ID, "again"); !errors.Is(err, pam.ErrAlreadyDecided) {
		t.Fatalf("second approval by bob = %v", err)
	}
	if err := run(); !errors.Is(err, pam.ErrNotApproved) {
		t.Fatalf("Guard with one of two approvals = %v", err)
	}
	clk.Add(time.Minute)
	r, err = m.Approve(As("carol"), r.ID, "two")
	if err != nil || r.State != pam.Approved || !r.ApprovedAt.Equal(clk.Now()) {
		t.Fatalf("after two approvals: %+v, %v", r, err)
	}
	if err := run(); err != nil {
		t.Fatalf("Guard with a grant: %v", err)
	}
	boom := errors.New("bad \x00 bytes \xff from the host")
	if err := m.Guard(As("alice"), pam.Op{Task: "New-MoveRequest"}, func(context.Context) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("Guard = %v, want fn's error", err)
	}
	clk.Add(time.Hour - time.Nanosecond)
	if err := run(); err != nil {
		t.Fatalf("Guard 1ns before the end: %v", err)
	}
	clk.Add(time.Nanosecond)
	if err := run(); !errors.Is(err, pam.ErrNotApproved) {
		t.Fatalf("Guard at the end = %v", err)
	}
	if n, err := m.Sweep(context.Background()); n != 1 || err != nil {
		t.Fatalf("Sweep = %d, %v", n, err)
	}
	r2, _ := m.Submit(As("alice"), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "again"})
	m.Approve(As("bob"), r2.ID, "")
	m.Approve(As("dave"), r2.ID, "")
	if _, err := m.Revoke(As("admin"), r2.ID, "incident over"); err != nil {
		t.Fatal(err)
	}
	if err := run(); !errors.Is(err, pam.ErrNotApproved) {
		t.Fatalf("Guard after revoke = %v", err)
	}

	events, _, err := m.Audit(As("admin"), pam.EventFilter{Limit: pam.MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	var types []pam.EventType
	for i, e := range events {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has Seq %d", i, e.Seq)
		}
		types = append(types, e.Type)
	}
	want := []pam.EventType{
		pam.EventPolicyCreated,
		pam.EventRequestSubmitted, pam.EventRequestDecision, pam.EventGuardDenied,
		pam.EventRequestDecision, pam.EventRequestApproved,
		pam.EventGuardAllowed, pam.EventGuardFinished, pam.EventGuardAllowed, pam.EventGuardFinished,
		pam.EventGuardAllowed, pam.EventGuardFinished, pam.EventGuardDenied, pam.EventRequestExpired,
		pam.EventRequestSubmitted, pam.EventRequestDecision, pam.EventRequestDecision, pam.EventRequestApproved, pam.EventRequestRevoked,
		pam.EventGuardDenied,
	}
	if d := cmp.Diff(want, types); d != "" {
		t.Errorf("audit trail (-want +got):\n%s", d)
	}
	finished := events[9]
	if finished.Outcome != pam.OutcomeError || !strings.Contains(finished.Detail["error"], "from the host") {
		t.Errorf("fn's error recorded as %+v", finished)
	}
	if got, _ := m.Request(As("alice"), r.ID); got.Reason != "leaver ✓ ünïcode" || len(got.Decisions) != 2 {
		t.Errorf("request read back: %+v", got)
	}
}

func testBadInput(t *testing.T, s pam.Store, clk *clock.Mock) {
	m := Manager(t, s, clk)
	if _, err := m.CreatePolicy(As("admin"), TwoApprovals); err != nil {
		t.Fatal(err)
	}
	r, err := m.Submit(As("alice"), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "ok"})
	if err != nil {
		t.Fatal(err)
	}
	before, _, err := m.Audit(As("admin"), pam.EventFilter{})
	if err != nil || len(before) == 0 {
		t.Fatalf("audit before: %d events, %v", len(before), err)
	}
	for name, call := range map[string]func() error{
		"NUL in reason": func() error {
			_, err := m.Submit(As("alice"), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "a\x00b"})
			return err
		},
		"invalid UTF-8 in reason": func() error {
			_, err := m.Submit(As("alice"), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "a\xffb"})
			return err
		},
		"NUL in ticket": func() error {
			_, err := m.Submit(As("alice"), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "r", Ticket: "\x00"})
			return err
		},
		"NUL in task": func() error {
			_, err := m.Submit(As("alice"), pam.RequestInput{Scope: pam.TaskScope("New\x00"), Reason: "r"})
			return err
		},
		"NUL in comment":   func() error { _, err := m.Approve(As("bob"), r.ID, "x\x00"); return err },
		"invalid UTF-8 ID": func() error { _, err := m.Approve(As("bob"), "req_\xff", ""); return err },
		"NUL in policy name": func() error {
			p := TwoApprovals
			p.ID, p.Name = "other", "a\x00"
			_, err := m.CreatePolicy(As("admin"), p)
			return err
		},
		"NUL in condition": func() error {
			p := TwoApprovals
			p.ID, p.Condition = "other", "true\x00"
			_, err := m.CreatePolicy(As("admin"), p)
			return err
		},
		"NUL in Guard task": func() error {
			return m.Guard(As("alice"), pam.Op{Task: "x\x00"}, func(context.Context) error { return nil })
		},
		"NUL in actor": func() error {
			_, err := m.Submit(As("ali\x00ce"), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "r"})
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			err := call()
			if !errors.Is(err, pam.ErrInvalid) && !errors.Is(err, pam.ErrNoActor) {
				t.Fatalf("error %v, want ErrInvalid or ErrNoActor", err)
			}
		})
	}
	after, _, err := m.Audit(As("admin"), pam.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("bad input was audited: %d events, want %d", len(after), len(before))
	}
	if got, _ := m.Request(As("alice"), r.ID); got.Version != 1 {
		t.Errorf("bad input changed the request: %+v", got)
	}
}
