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
// uses runs. Exactly uses of them run, every other is refused
// (ErrNotApproved, or ErrConflict when it lost the race too often), the
// request ends with Uses = MaxUses, and the trail holds one guard.allowed
// per run and one request.spent. Run runs it over one store.
func LastUseRace(t *testing.T, stores []pam.Store, clk clock.Clock) {
	for _, uses := range []int{1, 5} {
		t.Run(fmt.Sprint("uses=", uses), func(t *testing.T) { lastUseRace(t, stores, clk, uses) })
	}
}

func lastUseRace(t *testing.T, stores []pam.Store, clk clock.Clock, uses int) {
	var ms []*pam.Manager
	for _, s := range stores {
		m := Manager(t, s, clk)
		t.Cleanup(func() { m.Close(context.Background()) })
		ms = append(ms, m)
	}
	p := TwoApprovals
	p.ID = fmt.Sprint("once-", uses)
	p.Scope = pam.TaskScope(fmt.Sprint("Drop-Table-", uses))
	p.MaxUses = uses
	if _, err := ms[0].CreatePolicy(As("admin"), p); err != nil {
		t.Fatal(err)
	}
	r, err := ms[len(ms)-1].Submit(As("alice"), pam.RequestInput{Scope: p.Scope, Reason: "the last use"})
	if err != nil {
		t.Fatal(err)
	}
	if r.MaxUses != uses {
		t.Fatalf("the request allows %d runs, want the policy's %d", r.MaxUses, uses)
	}
	for _, who := range []string{"bob", "carol"} {
		if _, err := ms[0].Approve(As(who), r.ID, ""); err != nil {
			t.Fatal(err)
		}
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
		case errors.Is(err, pam.ErrNotApproved), errors.Is(err, pam.ErrConflict):
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
