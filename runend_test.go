package pam_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/zerostanding/pam"
)

// ends returns the run's events after its start: its ends.
func runEvents(t *testing.T, e *env, run string) []pam.Event {
	t.Helper()
	es, _, err := e.m.Audit(e.admin(), pam.EventFilter{Run: run})
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func lastStart(t *testing.T, e *env) pam.Event {
	t.Helper()
	es, _, err := e.m.Audit(e.admin(), pam.EventFilter{Types: []pam.EventType{pam.EventGuardAllowed, pam.EventGuardExempt}, Descending: true, Limit: 1})
	if err != nil || len(es) != 1 {
		t.Fatalf("the last start: %v, %v", es, err)
	}
	return es[0]
}

func isEnd(tx *pam.Tx) bool {
	return len(tx.Events) == 1 && tx.Events[0].Type == pam.EventGuardFinished
}

// TestGuardEndNotRecorded: fn ran, and its end could not be stored. Guard
// says so with ErrAuditIncomplete joined to fn's own result, never
// ErrAudit; the Manager records the end once the store takes it, exactly
// once, with fn's outcome.
func TestGuardEndNotRecorded(t *testing.T) {
	for name, lose := range map[string]bool{"rejected": false, "reply lost": true} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.policy(movePolicy())
			e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
			down := errors.New("connection reset")
			fail := func(tx *pam.Tx) error {
				if isEnd(tx) {
					return down
				}
				return nil
			}
			if lose {
				// The first end commits, its reply is lost; the retry
				// finds the run closed and stops.
				once := false
				e.store.LoseReply(func(tx *pam.Tx) error {
					if isEnd(tx) && !once {
						once = true
						return down
					}
					return nil
				})
			} else {
				e.store.FailCommit(fail)
			}
			boom := errors.New("mailbox locked")
			ran := false
			err := e.m.Guard(e.as("alice"), pam.Op{Task: "New-MoveRequest"}, func(context.Context) error { ran = true; return boom })
			if !ran || !errors.Is(err, pam.ErrAuditIncomplete) || !errors.Is(err, boom) || errors.Is(err, pam.ErrAudit) {
				t.Fatalf("Guard: ran %t, %v; want fn's error joined with ErrAuditIncomplete, not ErrAudit", ran, err)
			}
			start := lastStart(t, e)
			if !lose {
				if got := runEvents(t, e, start.Run); len(got) != 1 {
					t.Fatalf("while the store refuses ends: %d events of the run", len(got))
				}
				e.store.FailCommit(nil)
			}
			eventually(t, "the end recorded", func() bool { return len(runEvents(t, e, start.Run)) == 2 })
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := e.m.Close(ctx); err != nil {
				t.Fatalf("Close: %v", err)
			}
			got := runEvents(t, e, start.Run)
			if len(got) != 2 || got[1].Type != pam.EventGuardFinished || got[1].Outcome != pam.OutcomeError || got[1].Detail["error"] != "mailbox locked" {
				t.Fatalf("the run's events: %+v", got)
			}
			if open, err := e.store.OpenRuns(context.Background(), epoch.Add(1000*time.Hour), 0); err != nil || len(open) != 0 {
				t.Errorf("open runs: %+v, %v", open, err)
			}
		})
	}
}

// TestGuardStartReplyLost: the start is stored but its reply is lost, so
// Guard cannot know fn may run: fn does not run, the caller gets
// ErrAudit, and the stored start gets its end, not_run. A start that was
// rejected outright leaves nothing to end.
func TestGuardStartReplyLost(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	e.store.LoseReply(func(tx *pam.Tx) error {
		if len(tx.Events) == 1 && tx.Events[0].Type == pam.EventGuardAllowed {
			return errors.New("connection reset")
		}
		return nil
	})
	before := e.lastSeq()
	ran, err := e.guard("alice", "New-MoveRequest", nil)
	if ran || !errors.Is(err, pam.ErrAudit) {
		t.Fatalf("Guard with its start's reply lost: ran %t, %v; want ErrAudit", ran, err)
	}
	got := e.eventsSince(before)
	if d := cmp.Diff([]pam.EventType{pam.EventGuardAllowed, pam.EventGuardFinished}, types(got)); d != "" {
		t.Fatalf("audit (-want +got):\n%s", d)
	}
	if got[1].Outcome != pam.OutcomeNotRun || got[1].Run != got[0].Run || got[0].Run == "" {
		t.Errorf("the end: %+v", got[1])
	}

	// Rejected outright: no start, no end, nothing open.
	e.store.LoseReply(nil)
	e.store.FailCommit(func(tx *pam.Tx) error {
		if len(tx.Events) == 1 && tx.Events[0].Type == pam.EventGuardAllowed {
			return errors.New("disk full")
		}
		return nil
	})
	before = e.lastSeq()
	if ran, err := e.guard("alice", "New-MoveRequest", nil); ran || !errors.Is(err, pam.ErrAudit) {
		t.Fatalf("Guard with its start rejected: ran %t, %v", ran, err)
	}
	e.store.FailCommit(nil)
	if got := e.eventsSince(before); len(got) != 0 {
		t.Errorf("a rejected start left events: %+v", got)
	}
	if open, err := e.store.OpenRuns(context.Background(), epoch.Add(1000*time.Hour), 0); err != nil || len(open) != 0 {
		t.Errorf("open runs: %+v, %v", open, err)
	}
}

// TestSweepEndsAbandonedRuns: a Manager stops with a run whose end it
// never recorded (its store was down to the last). Another Manager's
// Sweep records the end as ended_unknown once the grace after the grant's
// end has passed, and not before; runs still in the grace, and runs whose
// end their own Manager is retrying, are left alone.
func TestSweepEndsAbandonedRuns(t *testing.T) {
	e := newEnv(t, func(o *pam.Options) { o.RunEndGrace = 10 * time.Minute })
	e.policy(movePolicy())
	g := e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Duration: time.Hour})
	e.store.FailCommit(func(tx *pam.Tx) error {
		if isEnd(tx) {
			return errors.New("down")
		}
		return nil
	})
	if ran, err := e.guard("alice", "New-MoveRequest", nil); !ran || !errors.Is(err, pam.ErrAuditIncomplete) {
		t.Fatalf("Guard: %t, %v", ran, err)
	}
	abandoned := lastStart(t, e)
	if ran, err := e.guard("svc-backup", "New-MoveRequest", nil); !ran || !errors.Is(err, pam.ErrAuditIncomplete) {
		t.Fatalf("exempt Guard: %t, %v", ran, err)
	}
	exempt := lastStart(t, e)
	// The Manager stops while the store is still down: the ends are
	// reported lost to this Manager, and left to Sweep.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := e.m.Close(ctx); !errors.Is(err, pam.ErrAuditIncomplete) {
		t.Fatalf("Close with ends not recorded = %v, want ErrAuditIncomplete", err)
	}
	e.store.FailCommit(nil)

	// A second Manager over the same store.
	dir, _ := pam.NewStaticDirectory(testGroups)
	m2, err := pam.New(e.store, dir, &pam.Options{Clock: e.clk, AdminGroup: "pam-admins", RunEndGrace: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close(context.Background())
	sweep := func() int {
		t.Helper()
		n, err := m2.Sweep(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// The exempt run is due 10 minutes after it started; the granted
	// one 10 minutes after its grant ends, and the grant's expiry is
	// swept with it.
	e.clk.Add(10*time.Minute - time.Nanosecond)
	if n := sweep(); n != 0 {
		t.Fatalf("Sweep within the grace recorded %d", n)
	}
	e.clk.Add(time.Nanosecond)
	if n := sweep(); n != 1 {
		t.Fatalf("Sweep at the exempt run's due: %d events, want 1", n)
	}
	got := runEvents(t, e, exempt.Run)
	if len(got) != 2 || got[1].Outcome != pam.OutcomeEndedUnknown || got[1].Actor != "svc-backup" || got[1].Type != pam.EventGuardFinished {
		t.Fatalf("the exempt run's events: %+v", got)
	}
	e.clk.Set(g.ExpiresAt.Add(10 * time.Minute))
	if n := sweep(); n != 2 {
		t.Fatalf("Sweep at the granted run's due: %d events, want its end and the grant's expiry", n)
	}
	got = runEvents(t, e, abandoned.Run)
	if len(got) != 2 || got[1].Outcome != pam.OutcomeEndedUnknown || got[1].RequestID != g.ID || got[1].Detail["error"] == "" {
		t.Fatalf("the granted run's events: %+v", got)
	}
	if n := sweep(); n != 0 {
		t.Errorf("a second Sweep recorded %d", n)
	}
	if _, err := m2.Verify(e.admin(), pam.VerifyOptions{}); err != nil {
		t.Error(err)
	}
}

// TestSweepLeavesEndsBeingRetried: Sweep does not record ended_unknown
// for a run whose end its own Manager holds and retries.
func TestSweepLeavesEndsBeingRetried(t *testing.T) {
	e := newEnv(t, func(o *pam.Options) { o.RunEndGrace = time.Minute })
	e.policy(movePolicy())
	e.store.FailCommit(func(tx *pam.Tx) error {
		if isEnd(tx) {
			return errors.New("down")
		}
		return nil
	})
	if ran, err := e.guard("svc-backup", "New-MoveRequest", nil); !ran || !errors.Is(err, pam.ErrAuditIncomplete) {
		t.Fatalf("Guard: %t, %v", ran, err)
	}
	start := lastStart(t, e)
	e.clk.Add(time.Hour)
	if n, err := e.m.Sweep(context.Background()); err != nil || n != 0 {
		t.Fatalf("Sweep = %d, %v; want the retried end left alone", n, err)
	}
	e.store.FailCommit(nil)
	eventually(t, "the end recorded", func() bool { return len(runEvents(t, e, start.Run)) == 2 })
	if got := runEvents(t, e, start.Run); got[1].Outcome != pam.OutcomeOK {
		t.Errorf("the end: %+v", got[1])
	}
}

// TestGuardLateEnd: an fn that outlives its grant by more than the grace
// is taken as ended_unknown by another Manager's Sweep; when it returns,
// its real end is still recorded, as guard.finished_late, and the run
// keeps its one guard.finished.
func TestGuardLateEnd(t *testing.T) {
	e := newEnv(t, func(o *pam.Options) { o.RunEndGrace = time.Minute })
	e.policy(movePolicy())
	g := e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Duration: time.Hour})
	dir, _ := pam.NewStaticDirectory(testGroups)
	m2, err := pam.New(e.store, dir, &pam.Options{Clock: e.clk, AdminGroup: "pam-admins", RunEndGrace: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close(context.Background())
	err = e.m.Guard(e.as("alice"), pam.Op{Task: "New-MoveRequest"}, func(ctx context.Context) error {
		e.clk.Set(g.ExpiresAt.Add(time.Minute))
		if _, err := m2.Sweep(context.Background()); err != nil {
			t.Error(err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Guard: %v", err)
	}
	got := runEvents(t, e, lastStart(t, e).Run)
	if d := cmp.Diff([]pam.EventType{pam.EventGuardAllowed, pam.EventGuardFinished, pam.EventGuardFinishedLate}, types(got)); d != "" {
		t.Fatalf("the run's events (-want +got):\n%s", d)
	}
	if got[1].Outcome != pam.OutcomeEndedUnknown || got[2].Outcome != pam.OutcomeOK {
		t.Errorf("outcomes: %s, %s", got[1].Outcome, got[2].Outcome)
	}
}

// TestRunIDsAreUnique: runs of one Manager and of two over one store
// never share an ID.
func TestRunIDsAreUnique(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	dir, _ := pam.NewStaticDirectory(testGroups)
	m2, err := pam.New(e.store, dir, &pam.Options{Clock: e.clk, AdminGroup: "pam-admins", SystemAccounts: []string{"svc-backup"}})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close(context.Background())
	for range 50 {
		for _, m := range []*pam.Manager{e.m, m2} {
			if err := m.Guard(e.as("svc-backup"), pam.Op{Task: "New-MoveRequest"}, func(context.Context) error { return nil }); err != nil {
				t.Fatal(err)
			}
		}
	}
	// m2 defers its ends: Close records them.
	if err := m2.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, ev := range e.events() {
		if ev.Run != "" {
			seen[ev.Run]++
		}
	}
	if len(seen) != 100 {
		t.Errorf("%d run IDs for 100 runs", len(seen))
	}
	for id, n := range seen {
		if n != 2 {
			t.Errorf("run %s: %d events, want its start and its end", id, n)
		}
	}
}

func TestRunEndGraceMustNotBeNegative(t *testing.T) {
	dir, _ := pam.NewStaticDirectory(testGroups)
	_, err := pam.New(newEnv(t).store, dir, &pam.Options{RunEndGrace: -time.Second})
	if !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("New with a negative RunEndGrace = %v, want ErrInvalid", err)
	}
}

// TestDeferredEndsRideOnTheNextStart: by default a run's end does not
// wait for a commit of its own. Guards in a row cost one commit each:
// each start carries the end before it; the last end goes alone, soon;
// every start has its one end, and the trail verifies.
func TestDeferredEndsRideOnTheNextStart(t *testing.T) {
	e := newEnv(t, func(o *pam.Options) { o.SyncRunEnds = false })
	e.policy(movePolicy())
	e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	var commits, carried atomic.Int64
	e.store.FailCommit(func(tx *pam.Tx) error {
		commits.Add(1)
		if len(tx.Open) == 1 {
			carried.Add(int64(len(tx.Close)))
		}
		return nil
	})
	const n = 100
	for range n {
		if ran, err := e.guard("alice", "New-MoveRequest", nil); !ran || err != nil {
			t.Fatalf("Guard: %t, %v", ran, err)
		}
	}
	last := lastStart(t, e)
	eventually(t, "the last end recorded on its own", func() bool { return len(runEvents(t, e, last.Run)) == 2 })
	got := commits.Load()
	t.Logf("%d Guards: %d commits, %d ends carried by a start", n, got, carried.Load())
	if got > n+n/2 || carried.Load() < n/2 {
		t.Errorf("%d Guards took %d commits, %d ends carried: the ends do not ride on the starts", n, got, carried.Load())
	}
	ends := map[string]int{}
	for _, ev := range e.events() {
		if ev.Type == pam.EventGuardFinished {
			ends[ev.Run]++
			if ev.Outcome != pam.OutcomeOK {
				t.Errorf("end %+v", ev)
			}
		}
	}
	if len(ends) != n {
		t.Errorf("%d runs ended, want %d", len(ends), n)
	}
	for run, k := range ends {
		if k != 1 {
			t.Errorf("run %s: %d ends", run, k)
		}
	}
	if _, err := e.m.Verify(e.admin(), pam.VerifyOptions{}); err != nil {
		t.Error(err)
	}
}

// TestDeferredEndFindsItsRunSwept: an end waiting to ride on the next
// start finds its run closed by another Manager's Sweep: the start goes
// alone, unharmed, and the end is recorded as guard.finished_late.
func TestDeferredEndFindsItsRunSwept(t *testing.T) {
	e := newEnv(t, func(o *pam.Options) { o.SyncRunEnds, o.RunEndGrace = false, time.Minute })
	e.policy(movePolicy())
	dir, _ := pam.NewStaticDirectory(testGroups)
	m2, err := pam.New(e.store, dir, &pam.Options{Clock: e.clk, AdminGroup: "pam-admins", RunEndGrace: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close(context.Background())
	err = e.m.Guard(e.as("svc-backup"), pam.Op{Task: "New-MoveRequest"}, func(context.Context) error {
		e.clk.Add(2 * time.Minute) // a long job: another Manager takes it for abandoned
		if n, err := m2.Sweep(context.Background()); n != 1 || err != nil {
			t.Errorf("m2.Sweep = %d, %v", n, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	swept := lastStart(t, e).Run
	if ran, err := e.guard("svc-backup", "New-MoveRequest", nil); !ran || err != nil {
		t.Fatalf("the next Guard: %t, %v", ran, err)
	}
	next := lastStart(t, e).Run
	eventually(t, "both ends recorded", func() bool {
		return len(runEvents(t, e, swept)) == 3 && len(runEvents(t, e, next)) == 2
	})
	got := runEvents(t, e, swept)
	if d := cmp.Diff([]pam.EventType{pam.EventGuardExempt, pam.EventGuardFinished, pam.EventGuardFinishedLate}, types(got)); d != "" {
		t.Errorf("the swept run (-want +got):\n%s", d)
	}
	if got[1].Outcome != pam.OutcomeEndedUnknown || got[2].Outcome != pam.OutcomeOK {
		t.Errorf("outcomes %s, %s", got[1].Outcome, got[2].Outcome)
	}
}
