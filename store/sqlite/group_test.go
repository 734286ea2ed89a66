package sqlite_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/store/sqlite"
	"github.com/zerostanding/pam/store/storetest"
)

// TestGroupCommit: Commits from many goroutines at once are written
// together, several to a transaction, and each is still all or nothing.
func TestGroupCommit(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "pam.db"))
	storetest.GroupCommit(t, s, s)
}

func groupEvent(actor string) pam.Event {
	return pam.Event{Time: storetest.Epoch, Type: pam.EventGuardAllowed, Actor: actor, Task: "Rotate-Key", Outcome: "ok"}
}

// TestGroupCommitContext: a Commit whose ctx ends while it waits for
// the writer returns ctx.Err() at once, and its Tx is not written; the
// Commits queued with it are written together once the writer is free.
// After Close, Commit fails.
func TestGroupCommitContext(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "pam.db"))
	begun := s.Transactions()
	release, err := s.HoldWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	results := make(chan error, 4)
	commit := func(ctx context.Context, actor string) {
		results <- s.Commit(ctx, &pam.Tx{Events: []pam.Event{groupEvent(actor)}})
	}
	// The committer takes the first and waits for the writer; the others
	// queue behind it. The canceled one comes last, so that it is
	// queued: one the committer held would wait for its outcome.
	go commit(ctx, "a")
	waitFor(t, func() bool { return s.Queued() == 0 && s.Taken() == 1 })
	for _, a := range []string{"b", "d"} {
		go commit(ctx, a)
	}
	waitFor(t, func() bool { return s.Queued() == 2 })
	canceled := make(chan error, 1)
	go func() { canceled <- s.Commit(cctx, &pam.Tx{Events: []pam.Event{groupEvent("canceled")}}) }()
	waitFor(t, func() bool { return s.Queued() == 3 })
	cancel()
	if err := <-canceled; !errors.Is(err, context.Canceled) {
		t.Fatalf("the canceled Commit = %v, want context.Canceled", err)
	}
	release()
	for range 3 {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	events, err := s.Events(ctx, pam.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var actors []string
	for i, e := range events {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has Seq %d", i, e.Seq)
		}
		actors = append(actors, e.Actor)
	}
	slices.Sort(actors)
	if !slices.Equal(actors, []string{"a", "b", "d"}) {
		t.Errorf("events of %v stored, want a, b and d", actors)
	}
	if n := s.Transactions() - begun; n > 2 {
		t.Errorf("three Commits queued together took %d transactions", n)
	}

	s2, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "closed.db"))
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
	if err := s2.Commit(ctx, &pam.Tx{Events: []pam.Event{groupEvent("late")}}); err == nil {
		t.Error("Commit after Close succeeded")
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
