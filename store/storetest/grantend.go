package storetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/zerostanding/pam"
)

// GrantEndsAcross runs two Managers, one over each of sa and sb (two
// handles on one store, as two replicas have), with
// Options.AuditPollInterval poll. Over rounds rounds, a guarded fn runs on
// the second while the first revokes its grant; then once while its
// holder relinquishes it on the first, and once while the first cuts it
// with a policy change. Each fn's context must end within bound of
// the change returning, with the reason as its cause; the delays are
// logged (min, median, max). Last, an extension granted on the first
// must move the deadline of the fn running on the second within bound.
func GrantEndsAcross(t *testing.T, sa, sb pam.Store, clk clock.Clock, poll, bound time.Duration, rounds int) {
	t.Helper()
	newManager := func(s pam.Store) *pam.Manager {
		dir, err := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin"}, "approvers": {"bob", "carol", "dave"}})
		if err != nil {
			t.Fatal(err)
		}
		m, err := pam.New(s, dir, &pam.Options{Clock: clk, AdminGroup: "pam-admins", AuditPollInterval: poll})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := m.Close(ctx); err != nil {
				t.Error(err)
			}
		})
		return m
	}
	a, b := newManager(sa), newManager(sb)
	p, err := a.CreatePolicy(As("admin"), TwoApprovals)
	if err != nil {
		t.Fatal(err)
	}
	grant := func() pam.Request {
		t.Helper()
		r, err := a.Submit(As("alice"), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "leaver", Duration: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		for _, who := range []string{"bob", "carol"} {
			if r, err = a.Approve(As(who), r.ID, ""); err != nil {
				t.Fatal(err)
			}
		}
		return r
	}
	type ended struct {
		at    time.Time
		cause error
	}
	// run starts a guarded fn on b and returns once it runs.
	run := func() (<-chan ended, <-chan error) {
		t.Helper()
		started, end, done := make(chan struct{}), make(chan ended, 1), make(chan error, 1)
		go func() {
			done <- b.Guard(As("alice"), pam.Op{Task: "New-MoveRequest"}, func(ctx context.Context) error {
				close(started)
				select {
				case <-ctx.Done():
					end <- ended{time.Now(), context.Cause(ctx)}
				case <-time.After(bound + 10*time.Second):
				}
				return ctx.Err()
			})
		}()
		select {
		case <-started:
		case err := <-done:
			t.Fatalf("Guard on the second Manager did not run fn: %v", err)
		}
		return end, done
	}
	wait := func(what string, end <-chan ended, done <-chan error, since time.Time, reason pam.GrantEndReason, id string) time.Duration {
		t.Helper()
		// fn reports the end before it returns, so end comes before Guard
		// returns; only a context that never ended leaves end empty.
		var e ended
		select {
		case e = <-end:
		case <-time.After(bound + 11*time.Second):
			t.Fatalf("%s: fn's context still live %v after the change (Guard: %v)", what, bound+10*time.Second, <-done)
		}
		<-done
		var ge *pam.GrantEndedError
		if !errors.As(e.cause, &ge) || ge.Reason != reason || ge.RequestID != id {
			t.Errorf("%s: context.Cause = %v, want %q of %s", what, e.cause, reason, id)
		}
		d := max(e.at.Sub(since), 0)
		if d > bound {
			t.Errorf("%s: fn's context ended %v after the change, want within %v", what, d, bound)
		}
		return d
	}
	var delays []time.Duration
	for range rounds {
		r := grant()
		end, done := run()
		if _, err := a.Revoke(As("admin"), r.ID, ""); err != nil {
			t.Fatal(err)
		}
		delays = append(delays, wait("revoke", end, done, time.Now(), pam.GrantRevoked, r.ID))
	}
	slices.Sort(delays)
	t.Logf("revoke on one Manager, fn on the other ended after: min %v, median %v, max %v (%d rounds, poll %v)",
		delays[0], delays[len(delays)/2], delays[len(delays)-1], len(delays), poll)

	// The holder relinquishes on one Manager: the other tells it from a
	// revocation by the state it reads.
	r := grant()
	end, done := run()
	if _, err := a.Relinquish(As("alice"), r.ID, ""); err != nil {
		t.Fatal(err)
	}
	d := wait("relinquish", end, done, time.Now(), pam.GrantRelinquished, r.ID)
	t.Logf("relinquish on one Manager, fn on the other ended after %v", d)

	r = grant()
	end, done = run()
	p.ApproverGroups = []pam.ApproverGroup{{Group: "approvers", MinApprovals: 3}}
	if _, err := a.UpdatePolicy(As("admin"), p); err != nil {
		t.Fatal(err)
	}
	d = wait("policy cut", end, done, time.Now(), pam.GrantCut, r.ID)
	t.Logf("policy cut on one Manager, fn on the other ended after %v", d)

	// An extension granted on one Manager moves the deadline of the fn
	// running on the other, which runs on.
	if p, err = a.Policy(As("admin"), p.ID); err != nil {
		t.Fatal(err)
	}
	p.ApproverGroups = []pam.ApproverGroup{{Group: "approvers", MinApprovals: 2}}
	if _, err = a.UpdatePolicy(As("admin"), p); err != nil {
		t.Fatal(err)
	}
	r = grant()
	started, moved, ran := make(chan time.Time, 1), make(chan time.Time, 1), make(chan error, 1)
	go func() {
		ran <- b.Guard(As("alice"), pam.Op{Task: "New-MoveRequest"}, func(ctx context.Context) error {
			first, _ := ctx.Deadline()
			started <- first
			for give := time.Now().Add(bound + 10*time.Second); time.Now().Before(give); time.Sleep(time.Millisecond) {
				if dl, _ := ctx.Deadline(); dl.After(first) {
					moved <- dl
					return ctx.Err()
				}
			}
			return errors.New("the deadline never moved")
		})
	}()
	first := <-started
	if _, err := a.Extend(As("alice"), r.ID, 30*time.Minute, "the move is slow"); err != nil {
		t.Fatal(err)
	}
	for _, who := range []string{"bob", "carol"} {
		if r, err = a.Approve(As(who), r.ID, ""); err != nil {
			t.Fatal(err)
		}
	}
	since := time.Now()
	select {
	case dl := <-moved:
		if d := time.Since(since); d > bound {
			t.Errorf("extension: fn's deadline moved %v after the change, want within %v", d, bound)
		} else {
			t.Logf("extension on one Manager, fn's deadline on the other moved after %v", d)
		}
		if got := dl.Sub(first); got != 30*time.Minute {
			t.Errorf("extension: the deadline moved by %v, want 30m", got)
		}
	case err := <-ran:
		t.Fatalf("extension: fn returned before its deadline moved: %v", err)
	}
	if err := <-ran; err != nil {
		t.Errorf("extension: Guard = %v, want fn to run on", err)
	}
}
