package sqlite_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/store/sqlite"
	"github.com/zerostanding/pam/store/storetest"
)

// TestCrashRecovery runs the workflow in a child process and kills it with
// SIGKILL at random points, then reopens the file and checks it: the
// database is intact, the sequence numbers have no gaps, every committed
// request state has its audit events, and the last request whose Submit
// returned is there. It does so with each Synchronous setting: a crash
// of the process loses no commit with either.
func TestCrashRecovery(t *testing.T) {
	if os.Getenv("PAM_CRASH_CHILD") != "" {
		t.Skip("in the child")
	}
	runs := 50
	if testing.Short() || raceDetector {
		runs = 10
	}
	for _, sync := range []string{"FULL", "NORMAL"} {
		t.Run(sync, func(t *testing.T) { crashRecovery(t, sync, runs) })
	}
}

func crashRecovery(t *testing.T, sync string, runs int) {
	path := filepath.Join(t.TempDir(), "crash.db")
	rng := rand.New(rand.NewPCG(1, 2))
	killedMidWork, afterSubmit, runsChecked := 0, 0, 0
	for run := range runs {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v")
		cmd.Env = append(os.Environ(), "PAM_CRASH_CHILD="+path, "PAM_CRASH_SYNC="+sync, fmt.Sprint("PAM_CRASH_RUN=", run))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(out)
		ready := false
		for lines.Scan() {
			if lines.Text() == "ready" {
				ready = true
				break
			}
		}
		if !ready {
			cmd.Wait()
			t.Fatalf("run %d: the child did not start", run)
		}
		// The child prints each request's ID once its Submit returned,
		// and each guarded fn's number as it runs.
		var submitted string
		var ran []string
		done := make(chan struct{})
		go func() {
			defer close(done)
			for lines.Scan() {
				if id, ok := strings.CutPrefix(lines.Text(), "submitted "); ok {
					submitted = id
				}
				if n, ok := strings.CutPrefix(lines.Text(), "ran "); ok {
					ran = append(ran, n)
				}
			}
		}()
		time.Sleep(time.Duration(rng.IntN(150_000)) * time.Microsecond)
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
		err = cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled() {
			killedMidWork++
		}
		if submitted != "" {
			afterSubmit++
		}
		checkCrashedFile(t, path, run, submitted)
		checkCrashedRuns(t, path, run, ran)
		runsChecked += len(ran)
	}
	t.Logf("%d runs, %d killed by SIGKILL while working, %d after a Submit returned; %d guarded fns ran, each with its start stored", runs, killedMidWork, afterSubmit, runsChecked)
	if killedMidWork < runs/2 {
		t.Errorf("only %d of %d children were killed while working", killedMidWork, runs)
	}
}

// checkCrashedFile checks the file a killed child left, and that it
// holds the request submitted, the last the child reported ("" for none).
func checkCrashedFile(t *testing.T, path string, run int, submitted string) {
	t.Helper()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("run %d: reopen: %v", run, err)
	}
	defer s.Close()
	if err := s.IntegrityCheck(ctx); err != nil {
		t.Fatalf("run %d: %v", run, err)
	}
	if submitted != "" {
		if _, err := s.Request(ctx, submitted); err != nil {
			t.Fatalf("run %d: the last request submitted: %v", run, err)
		}
	}
	events, err := s.Events(ctx, pam.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	byRequest := map[string]map[pam.EventType]int{}
	for i, e := range events {
		if e.Seq != int64(i+1) {
			t.Fatalf("run %d: event %d has Seq %d: a gap", run, i, e.Seq)
		}
		if e.RequestID != "" {
			if byRequest[e.RequestID] == nil {
				byRequest[e.RequestID] = map[pam.EventType]int{}
			}
			byRequest[e.RequestID][e.Type]++
		}
	}
	requests, err := s.Requests(ctx, pam.RequestFilter{})
	if err != nil {
		t.Fatal(err)
	}
	need := map[pam.State][]pam.EventType{
		pam.Pending:  {pam.EventRequestSubmitted},
		pam.Approved: {pam.EventRequestSubmitted, pam.EventRequestApproved},
		pam.Denied:   {pam.EventRequestSubmitted, pam.EventRequestDenied},
		pam.Canceled: {pam.EventRequestSubmitted, pam.EventRequestCanceled},
		pam.Revoked:  {pam.EventRequestSubmitted, pam.EventRequestApproved, pam.EventRequestRevoked},
		pam.Expired:  {pam.EventRequestSubmitted, pam.EventRequestExpired},
	}
	for _, r := range requests {
		for _, typ := range need[r.State] {
			if byRequest[r.ID][typ] != 1 {
				t.Errorf("run %d: request %s is %s but has %d %s events", run, r.ID, r.State, byRequest[r.ID][typ], typ)
			}
		}
		if n := byRequest[r.ID][pam.EventRequestDecision]; n != len(r.Decisions) {
			t.Errorf("run %d: request %s has %d decisions and %d decision events", run, r.ID, len(r.Decisions), n)
		}
		delete(byRequest, r.ID)
	}
	if len(byRequest) > 0 {
		t.Errorf("run %d: events for %d requests that were never stored", run, len(byRequest))
	}
}

// checkCrashedRuns checks the guarded runs a killed child left: every fn
// that ran has its start in the file, no end lacks its start or comes
// twice; then, once their grace has passed, a Sweep gives every start
// that has none its end (ended_unknown: the child stopped before storing
// it), and no run is left open.
func checkCrashedRuns(t *testing.T, path string, run int, ran []string) {
	t.Helper()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("run %d: reopen: %v", run, err)
	}
	defer s.Close()
	starts, ends := map[string]string{}, map[string]int{} // by run
	started := map[string]bool{}                          // by the fn's number
	tally := func() {
		clear(starts)
		clear(ends)
		events, err := s.Events(ctx, pam.EventFilter{Types: []pam.EventType{pam.EventGuardAllowed, pam.EventGuardFinished, pam.EventGuardFinishedLate}})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range events {
			if e.Type == pam.EventGuardAllowed {
				starts[e.Run] = e.Detail["param.n"]
				started[e.Detail["param.n"]] = true
			} else if e.Type == pam.EventGuardFinished {
				ends[e.Run]++
			}
		}
		for r, n := range ends {
			if _, ok := starts[r]; !ok || n != 1 {
				t.Errorf("run %d: run %s has %d ends and a start: %t", run, r, n, ok)
			}
		}
	}
	tally()
	for _, n := range ran {
		if !started[n] {
			t.Errorf("run %d: fn %s ran, and its start is not in the file", run, n)
		}
	}
	// A later Manager, past every grant and grace of this child.
	clk := clock.NewMock()
	clk.Set(storetest.Epoch.Add(time.Duration(run+1) * 48 * time.Hour))
	m := storetest.Manager(t, s, clk)
	if _, err := m.Sweep(ctx); err != nil {
		t.Fatalf("run %d: Sweep: %v", run, err)
	}
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	tally()
	for r := range starts {
		if ends[r] != 1 {
			t.Errorf("run %d: after Sweep, run %s has %d ends", run, r, ends[r])
		}
	}
	if open, err := s.OpenRuns(ctx, clk.Now().Add(1000*time.Hour), 0); err != nil || len(open) != 0 {
		t.Errorf("run %d: after Sweep, %d runs open (%v)", run, len(open), err)
	}
}

// TestCrashChild is the child of TestCrashRecovery: the workflow in a
// loop until it is killed.
func TestCrashChild(t *testing.T) {
	path := os.Getenv("PAM_CRASH_CHILD")
	if path == "" {
		t.Skip("run by TestCrashRecovery")
	}
	ctx := context.Background()
	opts := &sqlite.Options{}
	if os.Getenv("PAM_CRASH_SYNC") == "NORMAL" {
		opts.Synchronous = sqlite.SyncNormal
	}
	s, err := sqlite.OpenWith(ctx, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	// Each child starts two days after the one before, so the requests a
	// killed child left pending have expired: they would add up to
	// Options.MaxPending, and Submit would fail from then on.
	run, _ := strconv.Atoi(os.Getenv("PAM_CRASH_RUN"))
	clk := clock.NewMock()
	clk.Set(storetest.Epoch.Add(time.Duration(run) * 48 * time.Hour))
	// The default Manager: run ends deferred, so a kill loses the ends
	// not yet stored, which checkCrashedRuns has Sweep find.
	dir, _ := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin"}, "approvers": {"bob", "carol", "dave"}})
	m, err := pam.New(s, dir, &pam.Options{Clock: clk, AdminGroup: "pam-admins",
		ParamAudit: pam.ParamAudit{Params: map[string]pam.ParamMode{"n": pam.ParamFull}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.CreatePolicy(storetest.As("admin"), storetest.TwoApprovals); err != nil && !errors.Is(err, pam.ErrExists) {
		t.Fatal(err)
	}
	fmt.Println("ready")
	runs := 0
	guard := func() {
		runs++
		n := fmt.Sprint(run, "-", runs)
		m.Guard(storetest.As("alice"), pam.Op{Task: "New-MoveRequest", Params: map[string]any{"n": n}}, func(context.Context) error {
			fmt.Println("ran", n)
			return nil
		})
	}
	for i := 0; ; i++ {
		clk.Add(time.Minute)
		r, err := m.Submit(storetest.As("alice"), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "crash test", Duration: 5 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println("submitted", r.ID)
		guard()
		switch i % 4 {
		case 0:
			m.Approve(storetest.As("bob"), r.ID, "")
			m.Approve(storetest.As("carol"), r.ID, "")
			guard()
			m.Revoke(storetest.As("admin"), r.ID, "")
		case 1:
			m.Approve(storetest.As("bob"), r.ID, "")
			m.Deny(storetest.As("dave"), r.ID, "")
		case 2:
			m.Cancel(storetest.As("alice"), r.ID, "")
		case 3:
			m.Approve(storetest.As("bob"), r.ID, "")
			m.Approve(storetest.As("dave"), r.ID, "")
			guard()
		}
		if _, err := m.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
