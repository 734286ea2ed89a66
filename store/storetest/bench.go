package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/zerostanding/pam"
)

// Bench runs the store benchmarks every store reports side by side:
//
//   - Guard: Guard of a covered task with an active grant (the policy
//     revision read, the grants read, the start committed; the end rides
//     on the next start's commit).
//   - GuardSyncEnds: the same with Options.SyncRunEnds (the end committed
//     on its own before Guard returns).
//   - Cycle: one full submit → approve → Guard cycle, each by a new
//     requester.
//   - AuditLast100: the newest 100 events out of 100,000.
func Bench(b *testing.B, open Opener) {
	fresh := func(b *testing.B, deferEnds ...bool) (pam.Store, *clock.Mock, *pam.Manager) {
		clk := clock.NewMock()
		clk.Set(Epoch)
		s := open(b, clk)
		m := Manager(b, s, clk)
		if len(deferEnds) > 0 && deferEnds[0] {
			dir, _ := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin"}, "approvers": {"bob", "carol", "dave"}})
			var err error
			if m, err = pam.New(s, dir, &pam.Options{Clock: clk, AdminGroup: "pam-admins"}); err != nil {
				b.Fatal(err)
			}
		}
		p := TwoApprovals
		p.ApproverGroups = []pam.ApproverGroup{{Group: "approvers"}}
		if _, err := m.CreatePolicy(As("admin"), p); err != nil {
			b.Fatal(err)
		}
		return s, clk, m
	}
	op := pam.Op{Task: "New-MoveRequest"}
	nop := func(context.Context) error { return nil }
	for _, tc := range []struct {
		name      string
		deferEnds bool
	}{{"Guard", true}, {"GuardSyncEnds", false}} {
		b.Run(tc.name, func(b *testing.B) {
			_, _, m := fresh(b, tc.deferEnds)
			r, err := m.Submit(As("alice"), pam.RequestInput{Scope: pam.TaskScope(op.Task), Reason: "bench", Duration: 8 * time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := m.Approve(As("bob"), r.ID, ""); err != nil {
				b.Fatal(err)
			}
			ctx := As("alice")
			b.ReportAllocs()
			for b.Loop() {
				if err := m.Guard(ctx, op, nop); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if err := m.Close(context.Background()); err != nil {
				b.Fatal(err)
			}
		})
	}
	b.Run("Cycle", func(b *testing.B) {
		_, _, m := fresh(b)
		bob := As("bob")
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			// A new requester each cycle, as with many users: no one
			// piles up thousands of active grants.
			i++
			alice := As(fmt.Sprint("user", i))
			r, err := m.Submit(alice, pam.RequestInput{Scope: pam.TaskScope(op.Task), Reason: "bench", Duration: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := m.Approve(bob, r.ID, "ok"); err != nil {
				b.Fatal(err)
			}
			if err := m.Guard(alice, op, nop); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AuditLast100", func(b *testing.B) {
		s, _, m := fresh(b)
		const total, batch = 100_000, 1000
		for n := 0; n < total; n += batch {
			tx := &pam.Tx{}
			for i := range batch {
				tx.Events = append(tx.Events, pam.Event{Time: Epoch.Add(time.Duration(n+i) * time.Millisecond), Type: pam.EventGuardAllowed,
					Actor: fmt.Sprint("user", (n+i)%50), Task: "New-MoveRequest", PolicyID: "move", RequestID: fmt.Sprint("req", (n+i)%1000), Outcome: "granted"})
			}
			if err := s.Commit(context.Background(), tx); err != nil {
				b.Fatal(err)
			}
		}
		f := pam.EventFilter{Descending: true, Limit: 100}
		b.ReportAllocs()
		for b.Loop() {
			events, _, err := m.Audit(As("admin"), f)
			if err != nil || len(events) != 100 {
				b.Fatalf("%d events, %v", len(events), err)
			}
		}
	})
}

// BenchTrail fills one store with n audit events, then measures searches
// on it and Verify of the whole chain. The events cycle through 50 actors,
// 10 tasks and n/10 request IDs; one in 1,000 has the policy "rare", one
// in 5,000 the type policy.updated and the outcome "panic": the needles
// auditors search for.
//
//   - Newest100 (the baseline: a primary-key scan), Page (100 events from
//     the middle, ascending), Actor, Task, Request, RarePolicy, RareType,
//     RareOutcome (each the newest 100 matches, or all there are),
//     TimeRange (one minute in the middle).
//   - Verify: the whole chain; events/s is reported.
func BenchTrail(b *testing.B, open Opener, n int) {
	clk := clock.NewMock()
	clk.Set(Epoch)
	s := open(b, clk)
	const batch = 1000
	for done := 0; done < n; done += batch {
		tx := &pam.Tx{}
		for i := done; i < min(done+batch, n); i++ {
			e := pam.Event{Time: Epoch.Add(time.Duration(i) * time.Second), Type: pam.EventGuardAllowed,
				Actor: fmt.Sprint("user", i%50), Task: fmt.Sprint("Task-", i%10), PolicyID: "move",
				RequestID: fmt.Sprint("req", i%(n/10)), Outcome: "granted", Detail: map[string]string{"param.mailbox": "x"}}
			if i%1000 == 999 {
				e.PolicyID = "rare"
			}
			if i%5000 == 4999 {
				e.Type, e.Outcome = pam.EventPolicyUpdated, "panic"
			}
			tx.Events = append(tx.Events, e)
		}
		if err := s.Commit(context.Background(), tx); err != nil {
			b.Fatal(err)
		}
	}
	search := func(name string, f pam.EventFilter, want int) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				events, err := s.Events(context.Background(), f)
				if err != nil || len(events) != want {
					b.Fatalf("%d events, want %d: %v", len(events), want, err)
				}
			}
		})
	}
	mid := Epoch.Add(time.Duration(n/2) * time.Second)
	search("Newest100", pam.EventFilter{Descending: true, Limit: 100}, 100)
	search("Page", pam.EventFilter{After: int64(n / 2), Limit: 100}, 100)
	search("Actor", pam.EventFilter{Actor: "user7", Descending: true, Limit: 100}, 100)
	search("Task", pam.EventFilter{Task: "Task-3", Descending: true, Limit: 100}, 100)
	search("Request", pam.EventFilter{RequestID: "req42", Descending: true, Limit: 100}, 10)
	search("RarePolicy", pam.EventFilter{PolicyID: "rare", Descending: true, Limit: 100}, min(100, n/1000))
	search("RareType", pam.EventFilter{Types: []pam.EventType{pam.EventPolicyUpdated}, Descending: true, Limit: 100}, min(100, n/5000))
	search("RareOutcome", pam.EventFilter{Outcome: "panic", Descending: true, Limit: 100}, min(100, n/5000))
	search("TimeRange", pam.EventFilter{Since: mid, Until: mid.Add(time.Minute), Limit: 100}, 60)
	b.Run("Verify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			res, err := pam.Verify(context.Background(), s, pam.VerifyOptions{})
			if err != nil || res.Events != int64(n) {
				b.Fatalf("Verify = %+v, %v", res, err)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

// BenchOutbox measures what the outbox adds to a transition: Submit to a
// policy with three approvers, without a notifier (no messages) and with
// one (three messages in the same commit).
func BenchOutbox(b *testing.B, open Opener) {
	for _, tc := range []struct {
		name     string
		notifier bool
	}{{"NoNotifier", false}, {"ThreeMessages", true}} {
		b.Run(tc.name, func(b *testing.B) {
			clk := clock.NewMock()
			clk.Set(Epoch)
			s := open(b, clk)
			dir, _ := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin"}, "approvers": {"bob", "carol", "dave"}})
			o := &pam.Options{Clock: clk, AdminGroup: "pam-admins"}
			if tc.notifier {
				o.Notifier = pam.NotifierFunc(func(context.Context, pam.Notification) error { return nil })
			}
			m, err := pam.New(s, dir, o)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := m.CreatePolicy(As("admin"), TwoApprovals); err != nil {
				b.Fatal(err)
			}
			alice := As("alice")
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Submit(alice, pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "bench"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
