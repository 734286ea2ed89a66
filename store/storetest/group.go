package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerostanding/pam"
)

// groupRequest is worker w's request at version v.
func groupRequest(w int, v int64) pam.Request {
	return pam.Request{ID: fmt.Sprint("req-", w), Requester: fmt.Sprint("user", w), Scope: pam.TaskScope("Rotate-Key"), PolicyID: "p1",
		Reason: "group commit", State: pam.Pending, CreatedAt: Epoch, PendingUntil: Epoch.Add(time.Hour), Version: v}
}

func groupEvent(actor string) pam.Event {
	return pam.Event{Time: Epoch, Type: pam.EventGuardAllowed, Actor: actor, Task: "Rotate-Key", Outcome: "ok"}
}

// groupCase is one Commit of TestGroupCommit and the error it must
// return.
type groupCase struct {
	name string
	tx   *pam.Tx
	want error
}

// groupCases are worker w's Commits, in order: each kind of conflict
// between writes that succeed. Those that must fail also carry an event
// of the actor "bad" and a policy "bad-...", so that any of their writes
// shows.
func groupCases(w int) []groupCase {
	run := func(id string) pam.OpenRun {
		return pam.OpenRun{ID: id, Actor: fmt.Sprint("user", w), Task: "Rotate-Key", Started: Epoch, Due: Epoch.Add(time.Hour)}
	}
	me, req := fmt.Sprint("user", w), fmt.Sprint("req-", w)
	runA, runB := fmt.Sprintf("run-%d-a", w), fmt.Sprintf("run-%d-b", w)
	// The first Commits of the workers are queued together (see
	// TestGroupCommit): each worker starts with one of these, which
	// change nothing the later ones depend on.
	first := []groupCase{
		{"an event", &pam.Tx{Events: []pam.Event{groupEvent(me)}}, nil},
		{"request v1 again", &pam.Tx{Requests: []pam.Request{groupRequest(w, 1)}}, pam.ErrConflict},
		{"close a run never opened", &pam.Tx{Close: []string{fmt.Sprintf("never-%d", w)}}, pam.ErrNotFound},
		{"a policy", &pam.Tx{Policies: []pam.Policy{{ID: fmt.Sprint("first-", w), Version: 1}}, Events: []pam.Event{groupEvent(me)}}, nil},
		{"unchanged at version 0", &pam.Tx{Unchanged: []pam.RequestVersion{{ID: req, Version: 0}}}, pam.ErrConflict},
		{"policy revision moved", &pam.Tx{PolicyRevision: 1 << 40}, pam.ErrConflict},
	}
	cases := []groupCase{
		first[w%len(first)],
		{"request v2", &pam.Tx{Requests: []pam.Request{groupRequest(w, 2)}, Events: []pam.Event{groupEvent(me)}}, nil},
		{"stale request", &pam.Tx{Requests: []pam.Request{groupRequest(w, 2)}}, pam.ErrConflict},
		{"open a run, a policy", &pam.Tx{Open: []pam.OpenRun{run(runA)}, Policies: []pam.Policy{{ID: fmt.Sprint("p-", w), Version: 1}}, Events: []pam.Event{groupEvent(me), groupEvent(me)}}, nil},
		{"close a run never opened", &pam.Tx{Close: []string{fmt.Sprintf("never-%d", w)}}, pam.ErrNotFound},
		{"open a run open already", &pam.Tx{Open: []pam.OpenRun{run(runA)}}, pam.ErrConflict},
		{"unchanged at a stale version", &pam.Tx{Unchanged: []pam.RequestVersion{{ID: req, Version: 1}}}, pam.ErrConflict},
		{"close the run, unchanged", &pam.Tx{Close: []string{runA}, Unchanged: []pam.RequestVersion{{ID: req, Version: 2}}, Events: []pam.Event{groupEvent(me)}}, nil},
		{"close the run again", &pam.Tx{Close: []string{runA}}, pam.ErrNotFound},
		{"policy revision moved", &pam.Tx{PolicyRevision: 1 << 40}, pam.ErrConflict},
		{"invalid", &pam.Tx{Requests: []pam.Request{groupRequest(w, 3), groupRequest(w, 3)}}, pam.ErrInvalid},
		{"request v3, a run left open", &pam.Tx{Requests: []pam.Request{groupRequest(w, 3)}, Open: []pam.OpenRun{run(runB)}, Events: []pam.Event{groupEvent(me)}}, nil},
		{"stale policy", &pam.Tx{Policies: []pam.Policy{{ID: fmt.Sprint("p-", w), Version: 1}}}, pam.ErrConflict},
	}
	for i := range cases {
		if tx := cases[i].tx; cases[i].want != nil {
			tx.Events = append(tx.Events, groupEvent("bad"))
			tx.Policies = append(tx.Policies, pam.Policy{ID: fmt.Sprint("bad-", w, "-", i), Version: 1})
		}
	}
	return cases
}

// Grouper is what GroupCommit needs of a store that groups Commits.
type Grouper interface {
	// HoldWriter blocks the store's writer until release is called:
	// the writer's next transaction waits for it.
	HoldWriter(ctx context.Context) (release func(), err error)
	// Transactions returns the number of transactions the writer
	// committed.
	Transactions() int64
	// Queued returns the number of Commits waiting for the next group.
	Queued() int
	// Taken returns the number of Commits the writer has taken into
	// groups.
	Taken() int64
}

// GroupCommit: Commits from many goroutines at once are each all or
// nothing and checked for their own conflicts: one that conflicts fails
// alone with its sentinel, the others commit, the trail has no gap and
// verifies, and the policy revisions have no gap either. With a Grouper
// (g not nil), every worker's first Commit is queued while the writer
// is held, and the Commits must have been written together, several to
// a transaction. Run runs it without one.
func GroupCommit(t *testing.T, s pam.Store, g Grouper) {
	ctx := context.Background()
	const workers = 48
	for w := range workers {
		if err := s.Commit(ctx, &pam.Tx{Requests: []pam.Request{groupRequest(w, 1)}, Events: []pam.Event{groupEvent("setup")}}); err != nil {
			t.Fatal(err)
		}
	}
	setupEvents := int64(workers)
	var begun int64
	release := func() {}
	if g != nil {
		// The writer is held while every worker queues its first
		// Commit, so the first group holds one of each; the rest group
		// as they come.
		begun = g.Transactions()
		var err error
		if release, err = g.HoldWriter(ctx); err != nil {
			t.Fatal(err)
		}
	}
	cases := make([][]groupCase, workers)
	errs := make([][]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		cases[w] = groupCases(w)
		errs[w] = make([]error, len(cases[w]))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, c := range cases[w] {
				errs[w][i] = s.Commit(ctx, c.tx)
			}
		}()
	}
	if g != nil {
		// Every first Commit is queued, or taken by the writer, which
		// waits for the hold.
		waitFor(t, func() bool { return int64(g.Queued())+g.Taken() >= workers })
	}
	release()
	wg.Wait()

	commits, good, goodEvents := 0, 0, int64(0)
	var revisions []int64
	for w := range workers {
		for i, c := range cases[w] {
			err := errs[w][i]
			if c.want == nil {
				if err != nil {
					t.Errorf("worker %d, %s: %v", w, c.name, err)
					continue
				}
				good++
				goodEvents += int64(len(c.tx.Events))
				for _, e := range c.tx.Events {
					if e.Seq == 0 || e.Hash == "" {
						t.Errorf("worker %d, %s: event not chained: %+v", w, c.name, e)
					}
				}
				for _, p := range c.tx.Policies {
					revisions = append(revisions, p.Revision)
				}
			} else {
				if !errors.Is(err, c.want) {
					t.Errorf("worker %d, %s: %v, want %v", w, c.name, err, c.want)
				}
				for _, e := range c.tx.Events {
					if e.Seq != 0 || e.Hash != "" {
						t.Errorf("worker %d, %s failed and its event got Seq %d", w, c.name, e.Seq)
					}
				}
				for _, p := range c.tx.Policies {
					if p.Revision != 0 {
						t.Errorf("worker %d, %s failed and its policy got revision %d", w, c.name, p.Revision)
					}
				}
			}
			if !errors.Is(c.want, pam.ErrInvalid) {
				commits++
			}
		}
	}

	events, err := s.Events(ctx, pam.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(events)) != setupEvents+goodEvents {
		t.Errorf("%d events stored, want %d", len(events), setupEvents+goodEvents)
	}
	bySeq := map[int64]pam.Event{}
	for i, e := range events {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has Seq %d: a gap", i, e.Seq)
		}
		if e.Actor == "bad" {
			t.Errorf("an event of a failed commit is stored: %+v", e)
		}
		bySeq[e.Seq] = e
	}
	for w := range workers {
		for _, c := range cases[w] {
			if c.want != nil {
				continue
			}
			for _, e := range c.tx.Events {
				if got := bySeq[e.Seq]; got.Hash != e.Hash || got.Actor != e.Actor {
					t.Errorf("the event committed as %d (%s) is stored as %+v", e.Seq, e.Hash, got)
				}
			}
		}
	}
	if res, err := pam.Verify(ctx, s, pam.VerifyOptions{}); err != nil || res.Events != int64(len(events)) {
		t.Errorf("Verify = %+v, %v", res, err)
	}

	slices.Sort(revisions)
	for i, r := range revisions {
		if r != int64(i+1) {
			t.Fatalf("policy revisions %v: a gap or a repeat", revisions)
		}
	}
	if rev, err := s.PolicyRevision(ctx); err != nil || rev != int64(len(revisions)) {
		t.Errorf("PolicyRevision = %d, %v; want %d", rev, err, len(revisions))
	}
	for w := range workers {
		if r, err := s.Request(ctx, fmt.Sprint("req-", w)); err != nil || r.Version != 3 {
			t.Errorf("request of worker %d at version %d (%v), want 3", w, r.Version, err)
		}
	}
	policies, _, err := s.PolicyChanges(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range policies {
		if strings.HasPrefix(p.ID, "bad-") {
			t.Errorf("policy %s of a failed commit is stored", p.ID)
		}
	}
	if len(policies) != len(revisions) {
		t.Errorf("%d policies stored, %d committed", len(policies), len(revisions))
	}
	runs, err := s.OpenRuns(ctx, Epoch.Add(24*time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != workers {
		t.Errorf("%d runs open, want %d", len(runs), workers)
	}
	for _, r := range runs {
		if !strings.HasSuffix(r.ID, "-b") {
			t.Errorf("run %s is open", r.ID)
		}
	}

	if g == nil {
		return
	}
	txs := g.Transactions() - begun
	t.Logf("%d Commits, %d succeeded, in %d transactions", commits, good, txs)
	if txs > int64(good)/2 {
		t.Errorf("%d Commits succeeded in %d transactions: they were not grouped", good, txs)
	}
}

// waitFor polls cond until it holds, for up to 10 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}
