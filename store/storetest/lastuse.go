package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/benbjohnson/clock"

	"github.com/zerostanding/pam"
)

// LastUseRace races Guards for the runs of use-limited grants: 64
// goroutines, spread over one Manager per store given (two stores over
// one database are two replicas), Guard under one grant that allows
// uses runs. Exactly uses of them run, every other is refused with
// ErrNotApproved, the
// request ends with Uses = MaxUses, and the trail holds one guard.allowed
// per run and one request.spent. Run runs it over one store.
//
// With runs left for every Guard (1,000), 32 goroutines of 4 Guards each
// all run, though each run moves the grant's version under the others.
func LastUseRace(t *testing.T, stores []pam.Store, clk clock.Clock) {
	for _, uses := range []int{1, 5} {
		t.Run(fmt.Sprint("uses=", uses), func(t *testing.T) { lastUseRace(t, stores, clk, uses) })
	}
	t.Run("runs left", func(t *testing.T) { usesLeft(t, stores, clk) })
}

// useLimited creates a policy on a task of its own whose grants allow
// uses runs, and a grant of alice's under it, through ms.
func useLimited(t *testing.T, ms []*pam.Manager, id string, uses int) (pam.Policy, pam.Request) {
	p := TwoApprovals
	p.ID, p.Scope, p.MaxUses = id, pam.TaskScope("Task-"+id), uses
	if _, err := ms[0].CreatePolicy(As("admin"), p); err != nil {
		t.Fatal(err)
	}
	r, err := ms[len(ms)-1].Submit(As("alice"), pam.RequestInput{Scope: p.Scope, Reason: "runs"})
	if err != nil {
		t.Fatal(err)
	}
	for _, who := range []string{"bob", "carol"} {
		if _, err := ms[0].Approve(As(who), r.ID, ""); err != nil {
			t.Fatal(err)
		}
	}
	return p, r
}

func usesLeft(t *testing.T, stores []pam.Store, clk clock.Clock) {
	ms := managers(t, stores, clk)
	p, r := useLimited(t, ms, "many", 1000)
	const workers, each = 32, 4
	var ran atomic.Int64
	errs := make(chan error, workers*each)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range each {
				if err := ms[w%len(ms)].Guard(As("alice"), pam.Op{Task: p.Scope.Name}, func(context.Context) error { ran.Add(1); return nil }); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Guard under a grant with runs left: %v", err)
	}
	got, err := stores[0].Request(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ran.Load() != workers*each || got.Uses != workers*each {
		t.Errorf("%d runs, %d uses recorded; want %d of each", ran.Load(), got.Uses, workers*each)
	}
}

func lastUseRace(t *testing.T, stores []pam.Store, clk clock.Clock, uses int) {
	ms := managers(t, stores, clk)
	p, r := useLimited(t, ms, fmt.Sprint("once-", uses), uses)
	if r.MaxUses != uses {
		t.Fatalf("the request allows %d runs, want the policy's %d", r.MaxUses, uses)
	}
	const goroutines = 64
	var ran atomic.Int64
	errs := make([]error, goroutines)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[g] = ms[g%len(ms)].Guard(As("alice"), pam.Op{Task: p.Scope.Name}, func(context.Context) error {
				ran.Add(1)
				return nil
			})
		}()
	}
	close(start)
	wg.Wait()
	if n := ran.Load(); n != int64(uses) {
		t.Errorf("%d Guards ran under a grant of %d runs", n, uses)
	}
	refused := 0
	for _, err := range errs {
		switch {
		case err == nil:
		case errors.Is(err, pam.ErrNotApproved):
			refused++
		default:
			t.Errorf("Guard: %v", err)
		}
	}
	if refused != goroutines-uses {
		t.Errorf("%d Guards refused, want %d", refused, goroutines-uses)
	}
	got, err := stores[0].Request(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Uses != uses || got.State != pam.Approved {
		t.Errorf("the request after the race: %s with %d of %d runs used, want approved with all used", got.State, got.Uses, got.MaxUses)
	}
	events, err := stores[0].Events(context.Background(), pam.EventFilter{RequestID: r.ID})
	if err != nil {
		t.Fatal(err)
	}
	allowed, spent := 0, 0
	for _, e := range events {
		switch e.Type {
		case pam.EventGuardAllowed:
			allowed++
		case pam.EventRequestSpent:
			spent++
		}
	}
	if allowed != uses || spent != 1 {
		t.Errorf("the trail holds %d guard.allowed and %d request.spent for the grant, want %d and 1", allowed, spent, uses)
	}
}

// testBoundGrant: a grant bound to parameter values, read back through
// the store, covers the operations that match them and no other.
func testBoundGrant(t *testing.T, s pam.Store, clk clock.Clock) {
	m := Manager(t, s, clk)
	t.Cleanup(func() { m.Close(context.Background()) })
	if _, err := m.CreatePolicy(As("admin"), TwoApprovals); err != nil {
		t.Fatal(err)
	}
	r, err := m.Submit(As("alice"), pam.RequestInput{Scope: TwoApprovals.Scope, Reason: "one mailbox",
		Bind: map[string]any{"mailbox": "ceo@contoso.com", "batch": 50, "suspend": true}})
	if err != nil {
		t.Fatal(err)
	}
	for _, who := range []string{"bob", "carol"} {
		if _, err := m.Approve(As(who), r.ID, ""); err != nil {
			t.Fatal(err)
		}
	}
	guard := func(params map[string]any) error {
		return m.Guard(As("alice"), pam.Op{Task: TwoApprovals.Scope.Name, Params: params}, func(context.Context) error { return nil })
	}
	if err := guard(map[string]any{"mailbox": "ceo@contoso.com", "batch": 50.0, "suspend": true}); err != nil {
		t.Errorf("the bound operation: %v", err)
	}
	for _, params := range []map[string]any{
		{"mailbox": "cfo@contoso.com", "batch": 50, "suspend": true},
		{"mailbox": "ceo@contoso.com", "batch": 51, "suspend": true},
		{"mailbox": "ceo@contoso.com", "batch": 50, "suspend": false},
		nil,
	} {
		if err := guard(params); !errors.Is(err, pam.ErrNotApproved) {
			t.Errorf("Guard(%v) = %v, want ErrNotApproved", params, err)
		}
	}
}
