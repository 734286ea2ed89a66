package pam_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/internal/fakes"
	"github.com/zerostanding/pam/sinks"
	"github.com/zerostanding/pam/store/memory"
)

func ofType(es []pam.Event, typ pam.EventType) []pam.Event {
	var out []pam.Event
	for _, e := range es {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// TestRetriedEndAfterSweepIsRecordedLate: this Manager retries an end it
// could not store; meanwhile another Manager's Sweep takes the run as
// ended_unknown. When the store comes back, the real end is recorded as
// guard.finished_late: the fn's outcome is not lost.
func TestRetriedEndAfterSweepIsRecordedLate(t *testing.T) {
	e := newEnv(t, func(o *pam.Options) { o.RunEndGrace = time.Minute })
	e.policy(movePolicy())
	g := e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Duration: time.Hour})
	e.store.FailCommit(func(tx *pam.Tx) error {
		if isEnd(tx) && tx.Events[0].Outcome != pam.OutcomeEndedUnknown {
			return errors.New("connection reset")
		}
		return nil
	})
	boom := errors.New("mailbox locked")
	err := e.m.Guard(e.as("alice"), pam.Op{Task: "New-MoveRequest"}, func(context.Context) error { return boom })
	if !errors.Is(err, pam.ErrAuditIncomplete) {
		t.Fatalf("Guard: %v", err)
	}
	run := lastStart(t, e).Run
	dir, _ := pam.NewStaticDirectory(testGroups)
	m2, err := pam.New(e.store, dir, &pam.Options{Clock: e.clk, AdminGroup: "pam-admins", RunEndGrace: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close(context.Background())
	e.clk.Set(g.ExpiresAt.Add(time.Minute))
	if _, err := m2.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.store.FailCommit(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.m.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	got := runEvents(t, e, run)
	for _, ev := range got {
		t.Logf("run event: %s %s %v", ev.Type, ev.Outcome, ev.Detail)
	}
	if len(ofType(got, pam.EventGuardFinishedLate)) == 0 {
		t.Errorf("fn's real end (error %q) was never recorded: no guard.finished_late", boom)
	}
}

// TestLateEndRecordedOnceAfterLostReply: a guard.finished_late closes no
// run, so its retry after a lost reply must find it in the trail rather
// than store it twice.
func TestLateEndRecordedOnceAfterLostReply(t *testing.T) {
	e := newEnv(t, func(o *pam.Options) { o.RunEndGrace = time.Minute })
	e.policy(movePolicy())
	g := e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Duration: time.Hour})
	dir, _ := pam.NewStaticDirectory(testGroups)
	m2, err := pam.New(e.store, dir, &pam.Options{Clock: e.clk, AdminGroup: "pam-admins", RunEndGrace: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close(context.Background())
	var once atomic.Bool
	e.store.LoseReply(func(tx *pam.Tx) error {
		if len(tx.Events) == 1 && tx.Events[0].Type == pam.EventGuardFinishedLate && once.CompareAndSwap(false, true) {
			return errors.New("connection reset")
		}
		return nil
	})
	err = e.m.Guard(e.as("alice"), pam.Op{Task: "New-MoveRequest"}, func(ctx context.Context) error {
		e.clk.Set(g.ExpiresAt.Add(time.Minute))
		_, err := m2.Sweep(context.Background())
		return err
	})
	t.Logf("Guard: %v", err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.m.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	got := runEvents(t, e, lastStart(t, e).Run)
	t.Logf("run events: %v", types(got))
	if n := len(ofType(got, pam.EventGuardFinishedLate)); n != 1 {
		t.Errorf("%d guard.finished_late events for one run, want 1", n)
	}
}

// hangStore rejects the first end commit, then lets every further end
// commit hang until its context ends (a store that stopped answering).
type hangStore struct {
	*fakes.Store
	attempts, inflight atomic.Int64
}

func (s *hangStore) Commit(ctx context.Context, tx *pam.Tx) error {
	if isEnd(tx) {
		if s.attempts.Add(1) == 1 {
			return errors.New("connection reset")
		}
		s.inflight.Add(1)
		defer s.inflight.Add(-1)
		<-ctx.Done()
		return ctx.Err()
	}
	return s.Store.Commit(ctx, tx)
}

// TestRetriesStopWithClose: a retried commit that hangs is bounded, and
// once Close gives up the retry loop and its commit end with it.
func TestRetriesStopWithClose(t *testing.T) {
	s := &hangStore{Store: &fakes.Store{OutboxStore: memory.New()}}
	dir, _ := pam.NewStaticDirectory(testGroups)
	m, err := pam.New(s, dir, &pam.Options{AdminGroup: "pam-admins", SystemAccounts: []string{"svc-backup"}, AuditTimeout: 50 * time.Millisecond, OnError: func(error) {}, SyncRunEnds: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.CreatePolicy(pam.WithActor(context.Background(), "admin"), movePolicy()); err != nil {
		t.Fatal(err)
	}
	err = m.Guard(pam.WithActor(context.Background(), "svc-backup"), pam.Op{Task: "New-MoveRequest"}, func(context.Context) error { return nil })
	if !errors.Is(err, pam.ErrAuditIncomplete) {
		t.Fatalf("Guard: %v", err)
	}
	eventually(t, "a retry in flight", func() bool { return s.inflight.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := m.Close(ctx); !errors.Is(err, pam.ErrAuditIncomplete) {
		t.Errorf("Close with an end not recorded = %v, want ErrAuditIncomplete", err)
	}
	time.Sleep(time.Second)
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	t.Logf("after Close+1s: end commits in flight %d; runEnds.loop goroutine alive: %t", s.inflight.Load(), strings.Contains(stacks, "runEnds).loop"))
	if s.inflight.Load() != 0 || strings.Contains(stacks, "runEnds).loop") {
		t.Errorf("the retry loop outlives Close, blocked in a commit with no deadline")
	}
}

// TestNoRetryAfterClose: an end that fails after Close returned (its fn
// was still running) is reported and left to Sweep: no retry loop runs
// after Close.
func TestNoRetryAfterClose(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	var attempts atomic.Int64
	e.store.FailCommit(func(tx *pam.Tx) error {
		if isEnd(tx) {
			attempts.Add(1)
			return errors.New("store gone")
		}
		return nil
	})
	entered, release, done := make(chan struct{}), make(chan struct{}), make(chan error)
	go func() {
		done <- e.m.Guard(e.as("svc-backup"), pam.Op{Task: "New-MoveRequest"}, func(context.Context) error {
			close(entered)
			<-release
			return nil
		})
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	t.Logf("Close while fn runs: %v", e.m.Close(ctx))
	close(release)
	t.Logf("Guard: %v", <-done)
	time.Sleep(200 * time.Millisecond)
	a := attempts.Load()
	time.Sleep(time.Second)
	b := attempts.Load()
	t.Logf("end commit attempts after Close: %d, 1s later: %d", a, b)
	if b > a {
		t.Errorf("a retry loop runs after Close returned (and will run as long as the process)")
	}
}

// TestSweepLeavesOwnRunningRuns: a Manager's own Sweep does not take a
// run it is still running (a system account's run longer than
// RunEndGrace) as ended_unknown.
func TestSweepLeavesOwnRunningRuns(t *testing.T) {
	e := newEnv(t, func(o *pam.Options) { o.RunEndGrace = time.Minute })
	e.policy(movePolicy())
	err := e.m.Guard(e.as("svc-backup"), pam.Op{Task: "New-MoveRequest"}, func(context.Context) error {
		e.clk.Add(2 * time.Minute) // a backup that takes a while
		n, err := e.m.Sweep(context.Background())
		t.Logf("this Manager's Sweep while fn runs: %d, %v", n, err)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got := runEvents(t, e, lastStart(t, e).Run)
	for _, ev := range got {
		t.Logf("run event: %s %s %q", ev.Type, ev.Outcome, ev.Detail["error"])
	}
	if len(got) > 1 && got[1].Outcome == pam.OutcomeEndedUnknown {
		t.Errorf("a run this Manager was running (and then finished ok) is recorded as ended_unknown")
	}
}

// TestSlogSinkWritesRun: the slog sink writes Event.Run, so that a run's
// start and end can be linked from the log and each event's hash
// recomputed from its record.
func TestSlogSinkWritesRun(t *testing.T) {
	var buf bytes.Buffer
	s := sinks.NewSlog(slog.NewJSONHandler(&buf, nil))
	if err := s.Write(context.Background(), []pam.Event{{Seq: 1, Type: pam.EventGuardAllowed, Actor: "alice", Run: "abc-123", Outcome: pam.OutcomeGranted}}); err != nil {
		t.Fatal(err)
	}
	t.Logf("slog record: %s", strings.TrimSpace(buf.String()))
	if !strings.Contains(buf.String(), "abc-123") {
		t.Errorf("the slog sink's record lacks the event's run")
	}
}

// TestSweepReadsPastRetriedEnds: 500 runs whose ends this Manager is
// retrying, due first, do not hide an abandoned run due after them.
func TestSweepReadsPastRetriedEnds(t *testing.T) {
	if testing.Short() {
		t.Skip()
	}
	e := newEnv(t, func(o *pam.Options) { o.RunEndGrace = time.Minute })
	e.policy(movePolicy())
	e.store.FailCommit(func(tx *pam.Tx) error {
		if isEnd(tx) && tx.Events[0].Outcome != pam.OutcomeEndedUnknown {
			return errors.New("down")
		}
		return nil
	})
	for range 500 {
		if ran, err := e.guard("svc-backup", "New-MoveRequest", nil); !ran || !errors.Is(err, pam.ErrAuditIncomplete) {
			t.Fatalf("Guard: %v", err)
		}
	}
	e.clk.Add(time.Second)
	dir, _ := pam.NewStaticDirectory(testGroups)
	m2, err := pam.New(e.store, dir, &pam.Options{Clock: e.clk, AdminGroup: "pam-admins", SystemAccounts: []string{"svc-backup"}, RunEndGrace: time.Minute, OnError: func(error) {}, SyncRunEnds: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.Guard(e.as("svc-backup"), pam.Op{Task: "New-MoveRequest"}, func(context.Context) error { return nil }); !errors.Is(err, pam.ErrAuditIncomplete) {
		t.Fatal(err)
	}
	abandoned := lastStart(t, e).Run
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	m2.Close(ctx) // m2 stops: its run is abandoned
	e.clk.Add(time.Hour)
	n, err := e.m.Sweep(context.Background())
	t.Logf("Sweep: %d, %v", n, err)
	if got := runEvents(t, e, abandoned); len(got) != 2 {
		t.Errorf("the abandoned run, due long ago, was not swept: %d events", len(got))
	}
	e.store.FailCommit(nil)
}

// TestRunEndsUnderSweepRetryAndClose: Guards whose ends fail two times
// in three, Sweep running all the while with a grace of 1 ns, then Close:
// every start has exactly one guard.finished, and no end without a start.
func TestRunEndsUnderSweepRetryAndClose(t *testing.T) {
	e := newEnv(t, func(o *pam.Options) { o.RunEndGrace = time.Nanosecond; o.AuditPollInterval = 20 * time.Millisecond })
	e.policy(movePolicy())
	var k atomic.Int64
	e.store.FailCommit(func(tx *pam.Tx) error {
		if isEnd(tx) && k.Add(1)%3 != 0 {
			return errors.New("flaky")
		}
		return nil
	})
	stop := make(chan struct{})
	sweeps := make(chan int)
	go func() {
		total := 0
		for {
			select {
			case <-stop:
				sweeps <- total
				return
			default:
			}
			n, _ := e.m.Sweep(context.Background())
			total += n
		}
	}()
	done := make(chan struct{})
	for w := 0; w < 4; w++ {
		go func() {
			for i := 0; i < 100; i++ {
				e.m.Guard(e.as("svc-backup"), pam.Op{Task: "New-MoveRequest"}, func(context.Context) error { e.clk.Add(time.Microsecond); return nil })
			}
			done <- struct{}{}
		}()
	}
	for w := 0; w < 4; w++ {
		<-done
	}
	e.clk.Add(time.Second)
	close(stop)
	t.Logf("swept %d", <-sweeps)
	e.store.FailCommit(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	starts, fin, late := map[string]int{}, map[string]int{}, map[string]int{}
	outc := map[pam.Outcome]int{}
	for _, ev := range e.events() {
		switch ev.Type {
		case pam.EventGuardExempt:
			starts[ev.Run]++
		case pam.EventGuardFinished:
			fin[ev.Run]++
			outc[ev.Outcome]++
		case pam.EventGuardFinishedLate:
			late[ev.Run]++
		}
	}
	for r := range starts {
		if fin[r] != 1 {
			t.Errorf("run %s: %d finished", r, fin[r])
		}
	}
	for r := range fin {
		if starts[r] != 1 {
			t.Errorf("end without start %s", r)
		}
	}
	t.Logf("starts %d, outcomes %v, late %d", len(starts), outc, len(late))
	if outc[pam.OutcomeEndedUnknown] != 0 {
		t.Errorf("%d runs this Manager ran were swept as ended_unknown", outc[pam.OutcomeEndedUnknown])
	}
}
