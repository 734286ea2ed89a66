package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/zerostanding/pam"
)

// run returns an open run and its start event.
func run(id string, started, due time.Time) (pam.OpenRun, pam.Event) {
	r := pam.OpenRun{ID: id, Actor: "alice", Task: "New-MoveRequest", PolicyID: "p1", RequestID: "r1", Started: started, Due: due}
	return r, pam.Event{Time: started, Type: pam.EventGuardAllowed, Actor: "alice", RequestID: "r1", PolicyID: "p1", Task: "New-MoveRequest", Run: id, Outcome: pam.OutcomeGranted}
}

// end returns the end event of run id.
func end(id string, at time.Time) pam.Event {
	return pam.Event{Time: at, Type: pam.EventGuardFinished, Actor: "alice", RequestID: "r1", PolicyID: "p1", Task: "New-MoveRequest", Run: id, Outcome: pam.OutcomeOK}
}

func openRuns(t *testing.T, s pam.Store, dueBy time.Time, limit int) []pam.OpenRun {
	t.Helper()
	rs, err := s.OpenRuns(ctx, dueBy, limit)
	if err != nil {
		t.Fatalf("OpenRuns: %v", err)
	}
	return rs
}

// testOpenRuns: Tx.Open records runs, Tx.Close ends them once, and
// OpenRuns lists the due ones by Due, then ID. Opening a run that is open
// is ErrConflict, closing one that is not is ErrNotFound, and either
// writes nothing of its Tx.
func testOpenRuns(t *testing.T, s pam.Store) {
	if got := openRuns(t, s, Epoch.Add(1000*time.Hour), 0); len(got) != 0 {
		t.Fatalf("a fresh store has open runs: %+v", got)
	}
	var want []pam.OpenRun
	// Due in the order c, a, b, d; a and b share one instant (ID decides).
	for _, x := range []struct {
		id  string
		due time.Duration
	}{{"run-b", 2 * time.Hour}, {"run-a", 2 * time.Hour}, {"run-c", time.Hour}, {"run-d", 3 * time.Hour}} {
		r, start := run(x.id, Epoch.Add(time.Nanosecond), Epoch.Add(x.due+time.Nanosecond))
		commit(t, s, &pam.Tx{Events: []pam.Event{start}, Open: []pam.OpenRun{r}})
		want = append(want, r)
	}
	want = []pam.OpenRun{want[2], want[1], want[0], want[3]}
	if d := cmp.Diff(want, openRuns(t, s, Epoch.Add(1000*time.Hour), 0), opts); d != "" {
		t.Errorf("all open runs (-want +got):\n%s", d)
	}
	if d := cmp.Diff(want[:3], openRuns(t, s, want[1].Due, 0), opts); d != "" {
		t.Errorf("due at the instant (-want +got):\n%s", d)
	}
	if d := cmp.Diff(want[:1], openRuns(t, s, want[1].Due.Add(-time.Nanosecond), 0), opts); d != "" {
		t.Errorf("due 1ns before (-want +got):\n%s", d)
	}
	if d := cmp.Diff(want[:2], openRuns(t, s, Epoch.Add(1000*time.Hour), 2), opts); d != "" {
		t.Errorf("limit 2 (-want +got):\n%s", d)
	}

	seq := lastSeq(t, s)
	again, start := run("run-a", Epoch, Epoch)
	if err := s.Commit(ctx, &pam.Tx{Events: []pam.Event{start}, Open: []pam.OpenRun{again}}); !errors.Is(err, pam.ErrConflict) {
		t.Errorf("opening an open run: %v, want ErrConflict", err)
	}
	pending := request("r9", "bob", "p1", pam.Pending, 1)
	for name, tx := range map[string]pam.Tx{
		"never opened": {Close: []string{"run-x"}},
		"one of two":   {Close: []string{"run-a", "run-x"}},
		"with others":  {Close: []string{"run-x"}, Requests: []pam.Request{pending}},
	} {
		tx.Events = []pam.Event{end("run-x", later)}
		if err := s.Commit(ctx, &tx); !errors.Is(err, pam.ErrNotFound) {
			t.Errorf("%s: closing a run that is not open: %v, want ErrNotFound", name, err)
		}
	}
	if _, err := s.Request(ctx, "r9"); !errors.Is(err, pam.ErrNotFound) {
		t.Errorf("a refused close wrote its request (%v)", err)
	}
	if got := lastSeq(t, s); got != seq {
		t.Errorf("refused commits appended events: last seq %d, want %d", got, seq)
	}
	if d := cmp.Diff(want, openRuns(t, s, Epoch.Add(1000*time.Hour), 0), opts); d != "" {
		t.Errorf("refused commits changed the open runs (-want +got):\n%s", d)
	}

	// Close with an end event; a second close of the same run fails.
	tx := &pam.Tx{Events: []pam.Event{end("run-a", later)}, Close: []string{"run-a"}}
	commit(t, s, tx)
	if err := s.Commit(ctx, &pam.Tx{Events: []pam.Event{end("run-a", later)}, Close: []string{"run-a"}}); !errors.Is(err, pam.ErrNotFound) {
		t.Errorf("closing a closed run: %v, want ErrNotFound", err)
	}
	if d := cmp.Diff([]pam.OpenRun{want[0], want[2], want[3]}, openRuns(t, s, Epoch.Add(1000*time.Hour), 0), opts); d != "" {
		t.Errorf("after closing run-a (-want +got):\n%s", d)
	}
	// One Tx may open one run and close another; both or neither.
	next, start := run("run-e", Epoch, Epoch.Add(time.Hour))
	if err := s.Commit(ctx, &pam.Tx{Events: []pam.Event{start, end("run-x", later)}, Open: []pam.OpenRun{next}, Close: []string{"run-x"}}); !errors.Is(err, pam.ErrNotFound) {
		t.Errorf("open and a bad close: %v, want ErrNotFound", err)
	}
	if got := openRuns(t, s, Epoch.Add(1000*time.Hour), 0); len(got) != 3 {
		t.Errorf("a refused Tx opened its run: %+v", got)
	}
	commit(t, s, &pam.Tx{Events: []pam.Event{start, end("run-b", later)}, Open: []pam.OpenRun{next}, Close: []string{"run-b"}})
	var ids []string
	for _, r := range openRuns(t, s, Epoch.Add(1000*time.Hour), 0) {
		ids = append(ids, r.ID)
	}
	if d := cmp.Diff([]string{"run-e", "run-c", "run-d"}, ids); d != "" {
		t.Errorf("after open and close in one Tx (-want +got):\n%s", d)
	}

	// A run twice in one Tx is refused before anything is written.
	for name, tx := range map[string]pam.Tx{
		"opened twice":          {Open: []pam.OpenRun{next, next}},
		"closed twice":          {Close: []string{"run-c", "run-c"}},
		"opened and closed":     {Open: []pam.OpenRun{next}, Close: []string{"run-e"}},
		"opened without any ID": {Open: []pam.OpenRun{{Due: Epoch}}},
	} {
		if err := s.Commit(ctx, &tx); !errors.Is(err, pam.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}

	// The trail keeps each event's Run, and filters by it.
	got, err := s.Events(ctx, pam.EventFilter{Run: "run-a"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Type != pam.EventGuardAllowed || got[1].Type != pam.EventGuardFinished || got[0].Run != "run-a" || got[1].Run != "run-a" {
		t.Fatalf("the events of run-a: %+v", got)
	}
	for _, e := range got {
		if err := e.CheckHash(); err != nil {
			t.Errorf("event %d of run-a: %v", e.Seq, err)
		}
	}
}
