package storetest

import (
	"context"
	"fmt"
	"testing"

	"github.com/benbjohnson/clock"

	"github.com/zerostanding/pam"
)

// BenchPolicies measures loading n policies, each on a task of its own,
// into an empty store, one b.N iteration per full load:
//
//   - OneByOne: n calls of CreatePolicy, each its own commit.
//   - Apply: one Apply of all n, one commit.
//   - BaselineCommit: the same n policies and their n events written
//     with one bare Store.Commit, no engine: what Apply cannot beat.
func BenchPolicies(b *testing.B, open Opener, counts ...int) {
	policies := func(n int) map[string]pam.Policy {
		ps := make(map[string]pam.Policy, n)
		for i := range n {
			ps[fmt.Sprintf("p%05d", i)] = pam.Policy{Scope: pam.TaskScope(fmt.Sprintf("Task-%05d", i)), Approval: pam.Manual,
				ApproverGroups: []pam.ApproverGroup{{Group: "approvers"}}}
		}
		return ps
	}
	fresh := func(b *testing.B) (pam.Store, *pam.Manager) {
		clk := clock.NewMock()
		clk.Set(Epoch)
		s := open(b, clk)
		return s, Manager(b, s, clk)
	}
	for _, n := range counts {
		want := policies(n)
		b.Run(fmt.Sprintf("OneByOne/n=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				_, m := fresh(b)
				b.StartTimer()
				for id, p := range want {
					p.ID = id
					if _, err := m.CreatePolicy(As("admin"), p); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
		b.Run(fmt.Sprintf("Apply/n=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				_, m := fresh(b)
				b.StartTimer()
				plan, err := m.Apply(As("admin"), pam.Config{Policies: want}, pam.ApplyOptions{})
				if err != nil || len(plan.Policies) != n {
					b.Fatalf("Apply: %d changes, %v", len(plan.Policies), err)
				}
			}
		})
		b.Run(fmt.Sprintf("BaselineCommit/n=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				s, _ := fresh(b)
				tx := &pam.Tx{}
				for id, p := range want {
					p.ID, p.Version, p.MinGrantVersion, p.CreatedAt, p.UpdatedAt = id, 1, 1, Epoch, Epoch
					tx.Policies = append(tx.Policies, p)
					tx.Events = append(tx.Events, pam.Event{Time: Epoch, Type: pam.EventPolicyCreated, Actor: "admin", PolicyID: id, Task: p.Scope.Name})
				}
				b.StartTimer()
				if err := s.Commit(context.Background(), tx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
