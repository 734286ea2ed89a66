package pam_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/zerostanding/pam"
)

// nudgePolicy needs two mailbox-managers, reminds every hour and
// escalates to security after three.
func nudgePolicy() pam.Policy {
	p := movePolicy()
	p.ApproverGroups = []pam.ApproverGroup{{Group: "mailbox-managers", MinApprovals: 2}}
	p.RemindAfter, p.EscalateAfter, p.EscalationGroup = time.Hour, 3*time.Hour, "security"
	return p
}

// recipients returns who was notified of events of type t, sorted.
func recipients(notes []pam.Notification, t pam.EventType) []string {
	var out []string
	for _, n := range notes {
		if n.Type == t {
			out = append(out, n.Recipients...)
		}
	}
	slices.Sort(out)
	return out
}

// TestRemindersAndEscalation: a request pending past RemindAfter reminds
// the approvers who have not decided, once per interval (±1 ns), however
// many Managers sweep at once; past EscalateAfter it escalates to the
// escalation group, whose members then see it, and one of whom decides
// it alone.
func TestRemindersAndEscalation(t *testing.T) {
	e := newEnv(t)
	e.policy(nudgePolicy())
	r := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	if r.RemindAt != r.CreatedAt.Add(time.Hour) || r.EscalateAt != r.CreatedAt.Add(3*time.Hour) {
		t.Fatalf("RemindAt %v, EscalateAt %v", r.RemindAt, r.EscalateAt)
	}
	e.approve("bob", r.ID) // one of two
	e.delivered()
	// A second Manager over the same store sweeps at the same time.
	other, err := pam.New(e.store, e.dir, &pam.Options{Clock: e.clk, Catalog: testCatalog, AdminGroup: "pam-admins", Notifier: e.notes})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(context.Background())
	sweepBoth := func() int {
		var wg sync.WaitGroup
		var n [2]int
		for i, m := range []*pam.Manager{e.m, other} {
			wg.Go(func() {
				var err error
				if n[i], err = m.Sweep(context.Background()); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		return n[0] + n[1]
	}
	count := func(since int64, t pam.EventType) int {
		n := 0
		for _, ev := range e.eventsSince(since) {
			if ev.Type == t {
				n++
			}
		}
		return n
	}
	seq := e.lastSeq()

	e.clk.Set(r.CreatedAt.Add(time.Hour - time.Nanosecond))
	if n := sweepBoth(); n != 0 {
		t.Errorf("a nanosecond before the reminder: %d recorded", n)
	}
	e.clk.Set(r.CreatedAt.Add(time.Hour))
	if n := sweepBoth(); n != 1 || count(seq, pam.EventRequestReminded) != 1 {
		t.Errorf("at the reminder: %d recorded, %d reminders", n, count(seq, pam.EventRequestReminded))
	}
	if n := sweepBoth(); n != 0 {
		t.Errorf("sweeping again: %d recorded", n)
	}
	notes := e.delivered()
	if got := recipients(notes, pam.EventRequestReminded); !slices.Equal(got, []string{"carol", "dave"}) {
		t.Errorf("reminded %v, want the managers who have not decided (carol, dave)", got)
	}
	// Before it escalates, security may neither see it nor decide it.
	if _, err := e.m.Approve(e.as("erin"), r.ID, ""); !errors.Is(err, pam.ErrNotFound) {
		t.Errorf("erin's approval before the escalation: %v, want ErrNotFound", err)
	}
	if waiting, _ := e.m.Reviewable(e.as("erin")); len(waiting) != 0 {
		t.Errorf("erin's waiting list before the escalation: %v", waiting)
	}

	e.clk.Set(r.CreatedAt.Add(3*time.Hour - time.Nanosecond))
	seq = e.lastSeq()
	if n := sweepBoth(); n != 1 || count(seq, pam.EventRequestReminded) != 1 || count(seq, pam.EventRequestEscalated) != 0 {
		t.Errorf("at 2 h: %d recorded", n) // the reminder of 2 h, no escalation yet
	}
	e.clk.Set(r.CreatedAt.Add(3 * time.Hour))
	seq = e.lastSeq()
	if n := sweepBoth(); n != 2 || count(seq, pam.EventRequestEscalated) != 1 || count(seq, pam.EventRequestReminded) != 1 {
		t.Errorf("at 3 h: %d recorded, want the escalation and the reminder", n)
	}
	notes = e.delivered()
	if got := recipients(notes, pam.EventRequestEscalated); !slices.Equal(got, []string{"carol", "erin", "frank"}) {
		t.Errorf("escalated to %v, want security's members", got)
	}
	got, err := e.m.Request(e.admin(), r.ID)
	if err != nil || !got.EscalatedAt.Equal(r.CreatedAt.Add(3*time.Hour)) || !got.EscalateAt.IsZero() || !got.RemindAt.Equal(r.CreatedAt.Add(4*time.Hour)) {
		t.Errorf("after escalating: %+v, %v", got, err)
	}

	// erin, in security only, now sees it and decides it alone.
	if waiting, _ := e.m.Reviewable(e.as("erin")); len(waiting) != 1 || waiting[0].ID != r.ID {
		t.Errorf("erin's waiting list after the escalation: %v", waiting)
	}
	if _, err := e.m.Request(e.as("erin"), r.ID); err != nil {
		t.Errorf("erin reads it: %v", err)
	}
	approved := e.approve("erin", r.ID)
	if approved.State != pam.Approved || !approved.Decisions[len(approved.Decisions)-1].Escalation {
		t.Errorf("erin's escalated approval: %+v", approved)
	}
	if ran, err := e.guard("alice", "New-MoveRequest", nil); !ran || err != nil {
		t.Errorf("Guard after the escalated approval: ran %v, %v", ran, err)
	}
	// Decided: no more reminders.
	e.clk.Add(10 * time.Hour)
	seq = e.lastSeq()
	sweepBoth()
	if count(seq, pam.EventRequestReminded) != 0 {
		t.Error("a decided request was reminded")
	}
}

// TestNudgePolicyValidation: reminders and escalation must come before
// the pending TTL, not more often than MinNudgeInterval, and the
// escalation names its group.
func TestNudgePolicyValidation(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name   string
		change func(*pam.Policy)
	}{
		{"a reminder after the TTL", func(p *pam.Policy) { p.RemindAfter = 24 * time.Hour }},
		{"reminders every second", func(p *pam.Policy) { p.RemindAfter = time.Second }},
		{"an escalation without a group", func(p *pam.Policy) { p.EscalationGroup = "" }},
		{"a group without an escalation", func(p *pam.Policy) { p.EscalateAfter = 0 }},
		{"an escalation after the TTL", func(p *pam.Policy) { p.PendingTTL = 2 * time.Hour }},
		{"a bad group name", func(p *pam.Policy) { p.EscalationGroup = "a\x00b" }},
	} {
		p := nudgePolicy()
		tc.change(&p)
		if _, err := e.m.CreatePolicy(e.admin(), p); !errors.Is(err, pam.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", tc.name, err)
		}
	}
}
