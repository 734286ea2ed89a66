package pam_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/zerostanding/pam"
)

// TestRelinquish: the holder ends their own grant early; no one else may,
// and those who may not see the request are told it does not exist.
func TestRelinquish(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	r := e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Duration: 2 * time.Hour})
	e.delivered() // the approval's notice
	seq := e.lastSeq()

	for _, tc := range []struct {
		who  string
		want error
	}{
		{"mallory", pam.ErrNotFound}, // may not see it
		{"admin", pam.ErrForbidden},  // may see it, and revoke it, but it is not theirs
		{"bob", pam.ErrForbidden},    // approved it
	} {
		if _, err := e.m.Relinquish(e.as(tc.who), r.ID, ""); !errors.Is(err, tc.want) {
			t.Errorf("Relinquish as %s = %v, want %v", tc.who, err, tc.want)
		}
	}
	if _, err := e.m.Relinquish(e.as("alice"), r.ID, "bad\x00comment"); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("Relinquish with a NUL in the comment = %v, want ErrInvalid", err)
	}
	if got := e.eventsSince(seq); len(got) != 0 {
		t.Fatalf("refused relinquishments wrote %v", types(got))
	}
	if ran, err := e.guard("alice", "New-MoveRequest", nil); !ran || err != nil {
		t.Fatalf("Guard before relinquishing: ran %v, %v", ran, err)
	}
	seq = e.lastSeq()

	e.clk.Add(10 * time.Minute)
	got, err := e.m.Relinquish(e.as("ALICE"), r.ID, "done early") // any spelling of the holder
	if err != nil {
		t.Fatal(err)
	}
	if got.State != pam.Relinquished || got.ClosedBy != "alice" || !got.ClosedAt.Equal(e.clk.Now()) || !got.State.Terminal() {
		t.Errorf("relinquished request: %s, closed by %q at %v", got.State, got.ClosedBy, got.ClosedAt)
	}
	events := e.eventsSince(seq)
	if d := cmp.Diff([]pam.EventType{pam.EventRequestRelinquished}, types(events)); d != "" {
		t.Fatalf("events (-want +got):\n%s", d)
	}
	if ev := events[0]; ev.Actor != "alice" || ev.RequestID != r.ID || ev.PolicyID != "move" || ev.Detail["comment"] != "done early" {
		t.Errorf("relinquished event %+v", ev)
	}
	notes := e.delivered()
	if len(notes) != 1 || notes[0].Type != pam.EventRequestRelinquished || notes[0].Recipients[0] != "alice" || notes[0].Request.State != pam.Relinquished {
		t.Errorf("notifications %+v, want one request.relinquished to alice", notes)
	}

	// The grant no longer counts, and the request never changes again.
	if ran, err := e.guard("alice", "New-MoveRequest", nil); ran || !errors.Is(err, pam.ErrNotApproved) {
		t.Errorf("Guard after relinquishing: ran %v, %v", ran, err)
	}
	for name, act := range map[string]func() (pam.Request, error){
		"relinquish": func() (pam.Request, error) { return e.m.Relinquish(e.as("alice"), r.ID, "") },
		"revoke":     func() (pam.Request, error) { return e.m.Revoke(e.admin(), r.ID, "") },
	} {
		if _, err := act(); !errors.Is(err, pam.ErrWrongState) {
			t.Errorf("%s after relinquishing = %v, want ErrWrongState", name, err)
		}
	}
	// Sweep has nothing to record for it, now or after its window.
	e.clk.Add(3 * time.Hour)
	if n, err := e.m.Sweep(context.Background()); err != nil || n != 0 {
		t.Errorf("Sweep = %d, %v; want 0", n, err)
	}
	if got, _ := e.m.Request(e.as("alice"), r.ID); got.State != pam.Relinquished {
		t.Errorf("after its window the request reads %s", got.State)
	}
	rs, _, err := e.m.Requests(e.as("alice"), pam.RequestFilter{Requester: "alice", States: []pam.State{pam.Relinquished}})
	if err != nil || len(rs) != 1 || rs[0].ID != r.ID {
		t.Errorf("Requests by state relinquished = %v, %v", rs, err)
	}
}

// TestRelinquishPending: a request that is not approved cannot be
// relinquished; its holder cancels it instead.
func TestRelinquishPending(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	r := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	if _, err := e.m.Relinquish(e.as("alice"), r.ID, ""); !errors.Is(err, pam.ErrWrongState) {
		t.Errorf("Relinquish of a pending request = %v, want ErrWrongState", err)
	}
	if _, err := e.m.Relinquish(e.as("alice"), "req_missing", ""); !errors.Is(err, pam.ErrNotFound) {
		t.Errorf("Relinquish of no request = %v, want ErrNotFound", err)
	}
	if _, err := e.m.Relinquish(context.Background(), r.ID, ""); !errors.Is(err, pam.ErrNoActor) {
		t.Errorf("Relinquish without an actor = %v, want ErrNoActor", err)
	}
}

// TestRelinquishEndsRunningWork: work running under a relinquished grant
// ends as on revocation, with its own cause, as Relinquish returns; work
// under other grants runs on.
func TestRelinquishEndsRunningWork(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	e.policy(journalPolicy)
	alice := e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Duration: 2 * time.Hour})
	e.grant("zoe", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Duration: 2 * time.Hour})
	e.grant("alice", pam.RequestInput{Scope: pam.RoleScope("Journaling"), Duration: 2 * time.Hour})

	fn := startGuarded(t, e.m, "alice", "New-MoveRequest")
	zoe := startGuarded(t, e.m, "zoe", "New-MoveRequest")
	journal := startGuarded(t, e.m, "alice", "Set-JournalRule")
	if _, err := e.m.Relinquish(e.as("alice"), alice.ID, "done"); err != nil {
		t.Fatal(err)
	}
	fn.endedWithin(t, time.Now(), 10*time.Millisecond, pam.GrantRelinquished, alice.ID)
	if !errors.Is(fn.cause, context.Canceled) || !errors.Is(fn.cause, pam.ErrGrantEnded) {
		t.Errorf("cause %v, want ErrGrantEnded matching context.Canceled", fn.cause)
	}
	zoe.stillRunning(t)
	journal.stillRunning(t)
	<-fn.done
	if !errors.Is(fn.err, context.Canceled) {
		t.Errorf("Guard = %v, want fn's ctx.Err(), context.Canceled", fn.err)
	}
}
