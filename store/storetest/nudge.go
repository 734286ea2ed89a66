package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/zerostanding/pam"
)

// NudgeOnce sweeps a pending request from one Manager per store given
// (two stores over one database are two replicas), eight sweeps at once
// at each instant: its reminder and its escalation are each recorded
// once per instant they are due, whoever sweeps. clk must be the
// stores' clock. Run runs it over one store.
func NudgeOnce(t *testing.T, stores []pam.Store, clk *clock.Mock) {
	ms := managers(t, stores, clk)
	p := TwoApprovals
	p.ID, p.RemindAfter, p.EscalateAfter, p.EscalationGroup = "nudged", time.Hour, 2*time.Hour, "pam-admins"
	p.Scope = pam.TaskScope("Nudged-Task")
	if _, err := ms[0].CreatePolicy(As("admin"), p); err != nil {
		t.Fatal(err)
	}
	r, err := ms[len(ms)-1].Submit(As("alice"), pam.RequestInput{Scope: p.Scope, Reason: "waiting"})
	if err != nil {
		t.Fatal(err)
	}
	count := func(typ pam.EventType) int {
		events, err := stores[0].Events(context.Background(), pam.EventFilter{RequestID: r.ID, Types: []pam.EventType{typ}})
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
		at                  time.Duration
		reminded, escalated int
	}{
		{time.Hour - time.Nanosecond, 0, 0},
		{time.Hour, 1, 0},
		{2*time.Hour - time.Nanosecond, 1, 0},
		{2 * time.Hour, 2, 1},
		{2*time.Hour + time.Minute, 2, 1},
		{3 * time.Hour, 3, 1},
	} {
		clk.Set(r.CreatedAt.Add(step.at))
		sweep()
		if got, gotE := count(pam.EventRequestReminded), count(pam.EventRequestEscalated); got != step.reminded || gotE != step.escalated {
			t.Errorf("at %v: %d reminders and %d escalations recorded, want %d and %d", step.at, got, gotE, step.reminded, step.escalated)
		}
	}
	// The escalation group decides alone.
	got, err := ms[0].Approve(As("admin"), r.ID, "escalated")
	if err != nil || got.State != pam.Approved {
		t.Errorf("the escalation group's approval: %+v, %v", got, err)
	}
}
