package pam_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/zerostanding/pam"
)

// The Guard benchmarks run at 30 (Purview's limit), 1,000 and 10,000
// policies, each on its own task; one more policy guards the task under
// test. The baselines at the end are measured in the same run: a Go map
// lookup of a grant plus one time.Now(), and a bare OPA evaluation of the
// condition the conditional case uses.

var policyCounts = []int{30, 1000, 10000}

const benchCondition = "input.op.params.mailbox in data.pam.vip"

// benchEnv returns a Manager with n background policies (with conditions
// when cond is set) and "target" guarding New-MoveRequest, and alice
// holding an active grant under it.
func benchEnv(b *testing.B, n int, cond bool) *env {
	b.Helper()
	// The wall clock, as in production: the mock clock's deadline contexts
	// cost more than the real ones.
	// Run ends deferred, as by default.
	e := newEnv(b, func(o *pam.Options) { o.AuditSinks, o.Notifier, o.Clock, o.SyncRunEnds = nil, nil, clock.New(), false })
	tx := &pam.Tx{}
	for i := range n {
		p := pam.Policy{ID: fmt.Sprintf("bg%05d", i), Scope: pam.TaskScope(fmt.Sprintf("Task-%05d", i)), Approval: pam.Manual,
			ApproverGroups: []pam.ApproverGroup{{Group: "mailbox-managers"}}, Version: 1, MinGrantVersion: 1, CreatedAt: epoch, UpdatedAt: epoch}
		if cond {
			p.Condition = fmt.Sprintf("input.op.params.n > %d", i)
		}
		tx.Policies = append(tx.Policies, p)
	}
	if err := e.store.Commit(context.Background(), tx); err != nil {
		b.Fatal(err)
	}
	target := movePolicy()
	target.ID = "target"
	if cond {
		target.Condition = benchCondition
	}
	e.policy(target) // loads and compiles the background policies too
	e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	return e
}

func nop(context.Context) error { return nil }

func BenchmarkGuard(b *testing.B) {
	vip := map[string]any{"mailbox": "ceo@contoso.com", "target_database": "DB02"}
	for _, tc := range []struct {
		name string
		cond bool
		op   pam.Op
	}{
		{"uncovered", false, pam.Op{Task: "Get-Mailbox"}},
		{"granted", false, pam.Op{Task: "New-MoveRequest"}},
		{"condition", true, pam.Op{Task: "New-MoveRequest", Params: vip}},
	} {
		for _, n := range policyCounts {
			b.Run(fmt.Sprintf("%s/policies=%d", tc.name, n), func(b *testing.B) {
				e := benchEnv(b, n, tc.cond)
				ctx := e.as("alice")
				if err := e.m.Guard(ctx, tc.op, nop); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if err := e.m.Guard(ctx, tc.op, nop); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
	// A condition seen for the first time every time: no memoised
	// outcome helps. The mailbox is no VIP's, so the policy does not
	// cover the operation and the cost is the decision's alone.
	for _, n := range policyCounts {
		b.Run(fmt.Sprintf("condition_first_seen/policies=%d", n), func(b *testing.B) {
			e := benchEnv(b, n, true)
			ctx := e.as("alice")
			mailboxes := make([]string, 1<<16)
			for i := range mailboxes {
				mailboxes[i] = fmt.Sprint("user", i, "@contoso.com")
			}
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				i++
				op := pam.Op{Task: "New-MoveRequest", Params: map[string]any{"mailbox": mailboxes[i%len(mailboxes)], "target_database": "DB02"}}
				if err := e.m.Guard(ctx, op, nop); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPolicyUpdate changes one policy's condition among 10,000 and
// runs the Guard that must see the change.
func BenchmarkPolicyUpdate(b *testing.B) {
	e := benchEnv(b, 10000, true)
	ctx := e.as("alice")
	p, err := e.m.Policy(e.admin(), "target")
	if err != nil {
		b.Fatal(err)
	}
	vip := pam.Op{Task: "New-MoveRequest", Params: map[string]any{"mailbox": "ceo@contoso.com"}}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		i++
		// Alternate between a condition that covers the VIP move and one
		// that does not; the Guard after the update must follow.
		covers := i%2 == 0
		if covers {
			p.Condition = fmt.Sprintf("%s\n%d > 0", benchCondition, i)
		} else {
			p.Condition = fmt.Sprintf("input.op.params.mailbox == \"nobody\"\n%d > 0", i)
		}
		if p, err = e.m.UpdatePolicy(e.admin(), p); err != nil {
			b.Fatal(err)
		}
		res, err := e.m.Check(ctx, vip)
		if err != nil {
			b.Fatal(err)
		}
		if got := res.Outcome != pam.OutcomeUncovered; got != covers {
			b.Fatalf("update %d: covered %v, want %v", i, got, covers)
		}
	}
}

// BenchmarkBaseline is what Guard is measured against.
func BenchmarkBaseline(b *testing.B) {
	b.Run("map_lookup_and_time_now", func(b *testing.B) {
		type grant struct{ expires time.Time }
		grants := make(map[string]*grant, 10000)
		for i := range 10000 {
			grants[fmt.Sprintf("user%d|Task-%05d", i%100, i)] = &grant{expires: time.Now().Add(time.Hour)}
		}
		grants["alice|New-MoveRequest"] = &grant{expires: time.Now().Add(time.Hour)}
		key := "alice|New-MoveRequest"
		b.ReportAllocs()
		ok := 0
		for b.Loop() {
			if g := grants[key]; g != nil && time.Now().Before(g.expires) {
				ok++
			}
		}
		if ok == 0 {
			b.Fatal("no grant found")
		}
	})
	b.Run("opa_eval_condition", func(b *testing.B) {
		ctx := context.Background()
		store := inmem.NewFromObject(map[string]any{"pam": map[string]any{"vip": []any{"ceo@contoso.com", "cfo@contoso.com"}}})
		pq, err := rego.New(rego.Query("covered := "+benchCondition), rego.Store(store)).PrepareForEval(ctx)
		if err != nil {
			b.Fatal(err)
		}
		input := map[string]any{"actor": "alice", "op": map[string]any{"task": "New-MoveRequest",
			"params": map[string]any{"mailbox": "ceo@contoso.com", "target_database": "DB02"}}}
		b.ReportAllocs()
		for b.Loop() {
			rs, err := pq.Eval(ctx, rego.EvalInput(input))
			if err != nil || len(rs) != 1 || rs[0].Bindings["covered"] != true {
				b.Fatalf("eval: %v, %v", rs, err)
			}
		}
	})
}

// BenchmarkEventHash is what the hash chain adds to each event a store
// commits: the content digest, the chain hash and its hexadecimal form.
// A covered Guard commits two events.
func BenchmarkEventHash(b *testing.B) {
	e := pam.Event{Time: epoch, Type: pam.EventGuardAllowed, Actor: "alice", RequestID: "req_06h1qrpm41n03bxbqcpn2sfmp4",
		PolicyID: "move", Task: "New-MoveRequest", Outcome: "granted"}
	b.ReportAllocs()
	for b.Loop() {
		if err := e.Chain(42, pam.GenesisHash); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGuardParallel runs Guard from GOMAXPROCS goroutines at once
// over one Manager (30 policies): run it with -cpu 1,2,... and compare
// ns/op, which is the whole machine's time per Guard. The baseline is
// the floor of a read path that writes nothing shared: an atomic pointer
// load of an immutable map and a lookup in it.
func BenchmarkGuardParallel(b *testing.B) {
	vip := map[string]any{"mailbox": "ceo@contoso.com", "target_database": "DB02"}
	for _, tc := range []struct {
		name string
		cond bool
		op   pam.Op
	}{
		{"uncovered", false, pam.Op{Task: "Get-Mailbox"}},
		{"granted", false, pam.Op{Task: "New-MoveRequest"}},
		{"condition", true, pam.Op{Task: "New-MoveRequest", Params: vip}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e := benchEnv(b, 30, tc.cond)
			ctx := e.as("alice")
			if err := e.m.Guard(ctx, tc.op, nop); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := e.m.Guard(ctx, tc.op, nop); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
	b.Run("baseline_atomic_map_read", func(b *testing.B) {
		m := map[string]int{}
		for i := range 30 {
			m[fmt.Sprintf("Task-%05d", i)] = i
		}
		m["New-MoveRequest"] = 30
		var p atomic.Pointer[map[string]int]
		p.Store(&m)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if (*p.Load())["New-MoveRequest"] != 30 {
					b.Error("not found")
					return
				}
			}
		})
	})
}
