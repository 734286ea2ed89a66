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
//     revision read, the grants read, two audit events written).
//   - Cycle: one full submit → approve → Guard cycle, each by a new
//     requester.
//   - AuditLast100: the newest 100 events out of 100,000.
func Bench(b *testing.B, open Opener) {
	fresh := func(b *testing.B) (pam.Store, *clock.Mock, *pam.Manager) {
		clk := clock.NewMock()
		clk.Set(Epoch)
		s := open(b, clk)
		m := Manager(b, s, clk)
		p := TwoApprovals
		p.ApproverGroups = []pam.ApproverGroup{{Group: "approvers"}}
		if _, err := m.CreatePolicy(As("admin"), p); err != nil {
			b.Fatal(err)
		}
		return s, clk, m
	}
	op := pam.Op{Task: "New-MoveRequest"}
	nop := func(context.Context) error { return nil }
	b.Run("Guard", func(b *testing.B) {
		_, _, m := fresh(b)
		r, err := m.Submit(As("alice"), pam.NewRequest{Scope: pam.TaskScope(op.Task), Reason: "bench", Duration: 8 * time.Hour})
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
	})
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
			r, err := m.Submit(alice, pam.NewRequest{Scope: pam.TaskScope(op.Task), Reason: "bench", Duration: time.Hour})
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
			events, _, err := m.Audit(context.Background(), f)
			if err != nil || len(events) != 100 {
				b.Fatalf("%d events, %v", len(events), err)
			}
		}
	})
}
