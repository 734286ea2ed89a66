package storetest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/zerostanding/pam"
)

// BreakGlassOnce breaks glass from one Manager per store given (two
// stores over one database are two replicas), sixteen activations at
// once against a limit of two: exactly two succeed. It then sweeps eight
// at once at each instant: the overdue notice of each review is recorded
// once per ReviewWithin, also after the grant's window ended, and none
// once reviewed. clk must be the stores' clock. Run runs it over one
// store.
func BreakGlassOnce(t *testing.T, stores []pam.Store, clk *clock.Mock) {
	ms := managers(t, stores, clk)
	p := TwoApprovals
	p.ID, p.Scope = "glass", pam.TaskScope("Glass-Task")
	p.BreakGlass = &pam.BreakGlass{Group: "pam-admins", Limit: 2, ReviewWithin: 2 * time.Hour}
	if _, err := ms[0].CreatePolicy(As("admin"), p); err != nil {
		t.Fatal(err)
	}
	start := clk.Now()
	var ok, limited atomic.Int64
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			_, err := ms[i%len(ms)].BreakGlass(As("admin"), pam.RequestInput{PolicyID: p.ID, Reason: "outage"})
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, pam.ErrLimit):
				limited.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 2 || limited.Load() != 14 {
		t.Fatalf("%d activations, %d refused; want 2 and 14", ok.Load(), limited.Load())
	}
	count := func() int {
		events, err := stores[0].Events(context.Background(), pam.EventFilter{Types: []pam.EventType{pam.EventRequestBreakGlassOverdue}})
		if err != nil {
			t.Fatal(err)
		}
		return len(events)
	}
	sweep := func() {
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				if _, err := ms[i%len(ms)].Sweep(context.Background()); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	for _, step := range []struct {
		at      time.Duration
		overdue int // of the two activations
	}{
		{time.Hour, 0}, // the grants ended
		{2*time.Hour - time.Nanosecond, 0},
		{2 * time.Hour, 2},
		{3 * time.Hour, 2},
		{4*time.Hour - time.Nanosecond, 2},
		{4 * time.Hour, 4},
	} {
		clk.Set(start.Add(step.at))
		sweep()
		if got := count(); got != step.overdue {
			t.Errorf("at %v: %d overdue notices, want %d", step.at, got, step.overdue)
		}
	}
	list, err := ms[0].BreakGlassReviews(As("bob"))
	if err != nil || len(list) != 2 {
		t.Fatalf("bob's reviews: %v, %v", list, err)
	}
	for _, r := range list {
		if _, err := ms[len(ms)-1].ReviewBreakGlass(As("bob"), r.ID, pam.ReviewConfirmed, "ok"); err != nil {
			t.Fatal(err)
		}
	}
	clk.Set(start.Add(6 * time.Hour))
	sweep()
	if got := count(); got != 4 {
		t.Errorf("after the reviews: %d overdue notices, want still 4", got)
	}
}
