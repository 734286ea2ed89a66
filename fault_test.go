package pam_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/internal/fakes"
	"github.com/zerostanding/pam/store/memory"
)

// TestFaultInjection drives requests, decisions and Guard from several
// goroutines while the store fails commits at random (before writing, or
// after writing with the reply lost) and the audit sinks fail or hang,
// until at least 10,000 faults were injected. Then: no fn ran before its
// start event was in the store and in the required sink; every request's
// recorded state has its events; each sink ends up with exactly the
// store's trail, and the trail verifies.
func TestFaultInjection(t *testing.T) {
	target := int64(10000)
	if testing.Short() {
		target = 1000
	}
	inner := memory.New()
	store := fakes.NewFaultyStore(inner, 0, 1)
	required, bestEffort := fakes.NewFaultySink(0, 2), fakes.NewFaultySink(0, 3)
	dir, _ := pam.NewStaticDirectory(testGroups)
	fast := func(c pam.SinkConfig) pam.SinkConfig {
		c.MinBackoff, c.MaxBackoff = 100*time.Microsecond, time.Millisecond
		return c
	}
	m, err := pam.New(store, dir, &pam.Options{Catalog: testCatalog, AdminGroup: "pam-admins",
		ParamAudit:   pam.ParamAudit{Params: map[string]pam.ParamMode{"run": pam.ParamFull}},
		AuditSinks:   []pam.SinkConfig{fast(pam.SinkConfig{Name: "required", Sink: required, Required: true}), fast(pam.SinkConfig{Name: "best-effort", Sink: bestEffort})},
		AuditTimeout: 20 * time.Millisecond,
		OnError:      func(error) {},
	})
	if err != nil {
		t.Fatal(err)
	}
	as := func(who string) context.Context { return pam.WithActor(context.Background(), who) }
	if _, err := m.CreatePolicy(as("admin"), movePolicy()); err != nil {
		t.Fatal(err)
	}
	store.SetP(0.2)
	required.SetP(0.02)
	bestEffort.SetP(0.3)
	faults := func() int64 {
		return store.Before.Load() + store.After.Load() + required.Faults.Load() + bestEffort.Faults.Load()
	}

	var (
		mu         sync.Mutex
		ids        []string
		ran        sync.Map
		unrecorded atomic.Int64
		ok, fail   atomic.Int64
		runs       atomic.Int64
		wg         sync.WaitGroup
	)
	requesters, approvers := []string{"alice", "erin", "frank"}, []string{"bob", "carol", "dave"}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			pick := func() string {
				mu.Lock()
				defer mu.Unlock()
				if len(ids) == 0 {
					return "req_none"
				}
				return ids[rng.IntN(len(ids))]
			}
			for i := 0; faults() < target; i++ {
				var err error
				who := requesters[rng.IntN(len(requesters))]
				switch op := rng.IntN(10); {
				case op < 2:
					var r pam.Request
					if r, err = m.Submit(as(who), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "fault test"}); err == nil {
						mu.Lock()
						ids = append(ids, r.ID)
						mu.Unlock()
					}
				case op < 4:
					_, err = m.Approve(as(approvers[rng.IntN(3)]), pick(), "ok")
				case op == 4:
					_, err = m.Deny(as(approvers[rng.IntN(3)]), pick(), "no")
				case op == 5:
					_, err = m.Revoke(as("admin"), pick(), "done")
				default:
					run := fmt.Sprintf("%d-%d", w, i)
					err = m.Guard(as(who), pam.Op{Task: "New-MoveRequest", Params: map[string]any{"run": run}}, func(context.Context) error {
						runs.Add(1)
						ran.Store(run, who)
						if !required.Has(run) {
							unrecorded.Add(1)
						}
						return nil
					})
				}
				if err == nil {
					ok.Add(1)
				} else {
					fail.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	store.SetP(0)
	required.SetP(0)
	bestEffort.SetP(0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}

	if n := unrecorded.Load(); n != 0 {
		t.Errorf("%d runs started before their start event reached the required sink", n)
	}
	trail, err := inner.Events(context.Background(), pam.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	started := map[string]bool{}
	perRequest := map[string]map[pam.EventType]int{}
	for _, e := range trail {
		if e.Type == pam.EventGuardAllowed {
			started[e.Detail["param.run"]] = true
		}
		if e.RequestID != "" && string(e.Type[:8]) == "request." {
			if perRequest[e.RequestID] == nil {
				perRequest[e.RequestID] = map[pam.EventType]int{}
			}
			perRequest[e.RequestID][e.Type]++
		}
	}
	ran.Range(func(k, _ any) bool {
		if !started[k.(string)] {
			t.Errorf("run %s has no guard.allowed event in the store", k)
		}
		return true
	})
	requests, err := inner.Requests(context.Background(), pam.RequestFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range requests {
		ev := perRequest[r.ID]
		want := map[pam.EventType]int{pam.EventRequestSubmitted: 1}
		if len(r.Decisions) > 0 {
			want[pam.EventRequestDecision] = len(r.Decisions)
		}
		switch r.State {
		case pam.Approved:
			want[pam.EventRequestApproved] = 1
		case pam.Denied:
			want[pam.EventRequestDenied] = 1
		case pam.Revoked:
			want[pam.EventRequestApproved], want[pam.EventRequestRevoked] = 1, 1
		}
		for typ, n := range want {
			if ev[typ] != n {
				t.Errorf("request %s (%s, %d decisions): %d %s events, want %d", r.ID, r.State, len(r.Decisions), ev[typ], typ, n)
			}
		}
		if len(ev) != len(want) {
			t.Errorf("request %s (%s): events %v, want %v", r.ID, r.State, ev, want)
		}
	}
	for name, sink := range map[string]*fakes.FaultySink{"required": required, "best-effort": bestEffort} {
		got := sink.Events()
		lost := 0
		for _, e := range trail {
			if g, ok := got[e.Seq]; !ok || g.Hash != e.Hash {
				lost++
			}
		}
		if lost > 0 || len(got) != len(trail) {
			t.Errorf("%s sink: %d of %d events missing or different, %d held", name, lost, len(trail), len(got))
		}
	}
	if _, err := pam.Verify(context.Background(), inner, pam.VerifyOptions{}); err != nil {
		t.Error(err)
	}
	st := m.SinkStatus()
	t.Logf("faults injected: %d (store: %d rejected, %d committed with the reply lost; required sink: %d; best-effort sink: %d)",
		faults(), store.Before.Load(), store.After.Load(), required.Faults.Load(), bestEffort.Faults.Load())
	t.Logf("operations: %d succeeded, %d failed; %d runs, %d of them unrecorded; %d events, %d requests; sink failures counted: %d, %d",
		ok.Load(), fail.Load(), runs.Load(), unrecorded.Load(), len(trail), len(requests), st[0].Failures, st[1].Failures)
	if faults() < target {
		t.Errorf("only %d faults injected", faults())
	}
}
