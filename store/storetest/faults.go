package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/internal/fakes"
)

// FaultTarget is how many faults testFaults injects with the default,
// deferred run ends; with Options.SyncRunEnds, a fifth as many. Short
// runs, and runs under the race detector, inject a tenth (CI runs the
// full count without it).
const FaultTarget = 10000

// testFaults drives requests, decisions and Guard (granted and exempt)
// from several goroutines while the store fails commits at random (before
// writing, or after writing with the reply lost) and the audit sinks fail
// or hang, until FaultTarget faults were injected. Then, after Close:
//
//   - every run's start (guard.allowed, guard.exempt) has exactly one
//     end, guard.finished with the same Run, and no end lacks its start;
//     no run is left open in the store;
//   - a run whose fn ran ended "ok" (fn returns nil), one whose fn did
//     not ended "not_run";
//   - no caller was told ErrAudit for work that ran, and every caller
//     whose fn ran was told nil or ErrAuditIncomplete;
//   - no fn ran before its start was in the store and in the required
//     sink;
//   - every request's recorded state has its events; each sink holds
//     exactly the store's trail, and the trail verifies.
//
// With syncEnds the Manager runs with Options.SyncRunEnds (Guard returns
// once the end is stored, or says it is not); without, with the default
// deferred ends.
func testFaults(t *testing.T, s pam.Store, syncEnds bool) {
	inner, ok := s.(pam.OutboxStore)
	if !ok {
		t.Skip("the store keeps no outbox")
	}
	target := int64(FaultTarget)
	if syncEnds {
		target /= 5
	}
	if testing.Short() || raceDetector {
		target /= 10
	}
	store := fakes.NewFaultyStore(inner, 0, 1)
	required, bestEffort := fakes.NewFaultySink(0, 2), fakes.NewFaultySink(0, 3)
	dir, err := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin"}, "approvers": {"bob", "carol", "dave"}})
	if err != nil {
		t.Fatal(err)
	}
	fast := func(c pam.SinkConfig) pam.SinkConfig {
		c.MinBackoff, c.MaxBackoff = 100*time.Microsecond, time.Millisecond
		return c
	}
	m, err := pam.New(store, dir, &pam.Options{AdminGroup: "pam-admins", SystemAccounts: []string{"svc-backup"},
		ParamAudit:        pam.ParamAudit{Params: map[string]pam.ParamMode{"run": pam.ParamFull}},
		AuditSinks:        []pam.SinkConfig{fast(pam.SinkConfig{Name: "required", Sink: required, Required: true}), fast(pam.SinkConfig{Name: "best-effort", Sink: bestEffort})},
		AuditTimeout:      20 * time.Millisecond,
		AuditPollInterval: 50 * time.Millisecond,
		OnError:           func(error) {},
		SyncRunEnds:       syncEnds,
	})
	if err != nil {
		t.Fatal(err)
	}
	policy := pam.Policy{ID: "move", Scope: pam.TaskScope("New-MoveRequest"), Approval: pam.Manual,
		ApproverGroups: []pam.ApproverGroup{{Group: "approvers", MinApprovals: 1}}, DefaultDuration: time.Hour, MaxDuration: time.Hour}
	if _, err := m.CreatePolicy(As("admin"), policy); err != nil {
		t.Fatal(err)
	}
	store.SetP(0.2)
	required.SetP(0.02)
	bestEffort.SetP(0.3)
	faults := func() int64 {
		return store.Before.Load() + store.After.Load() + required.Faults.Load() + bestEffort.Faults.Load()
	}

	type call struct {
		ran bool
		err error
	}
	var (
		mu         sync.Mutex
		ids        []string
		calls      = map[string]call{} // by run parameter
		unrecorded atomic.Int64
		ops, fails atomic.Int64
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
				switch op := rng.IntN(12); {
				case op < 2:
					var r pam.Request
					if r, err = m.Submit(As(who), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "fault test"}); err == nil {
						mu.Lock()
						ids = append(ids, r.ID)
						mu.Unlock()
					}
				case op < 4:
					_, err = m.Approve(As(approvers[rng.IntN(3)]), pick(), "ok")
				case op == 4:
					_, err = m.Deny(As(approvers[rng.IntN(3)]), pick(), "no")
				case op == 5:
					_, err = m.Revoke(As("admin"), pick(), "done")
				default:
					if op == 6 {
						who = "svc-backup"
					}
					run := fmt.Sprintf("%d-%d", w, i)
					ran := false
					err = m.Guard(As(who), pam.Op{Task: "New-MoveRequest", Params: map[string]any{"run": run}}, func(context.Context) error {
						ran = true
						if !required.Has(run) {
							unrecorded.Add(1)
						}
						return nil
					})
					mu.Lock()
					calls[run] = call{ran, err}
					mu.Unlock()
				}
				ops.Add(1)
				if err != nil {
					fails.Add(1)
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
	trail, err := inner.Events(ctx, pam.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	starts := map[string]pam.Event{} // by Run
	ends := map[string][]pam.Event{}
	byParam := map[string]string{} // run parameter → Run
	perRequest := map[string]map[pam.EventType]int{}
	endOutcomes := map[pam.Outcome]int{}
	for _, e := range trail {
		switch e.Type {
		case pam.EventGuardAllowed, pam.EventGuardExempt:
			if e.Run == "" {
				t.Errorf("start %d has no run", e.Seq)
			}
			if _, dup := starts[e.Run]; dup {
				t.Errorf("run %s started twice", e.Run)
			}
			starts[e.Run] = e
			byParam[e.Detail["param.run"]] = e.Run
		case pam.EventGuardFinished, pam.EventGuardFinishedLate:
			ends[e.Run] = append(ends[e.Run], e)
			endOutcomes[e.Outcome]++
		}
		if e.RequestID != "" && strings.HasPrefix(string(e.Type), "request.") {
			if perRequest[e.RequestID] == nil {
				perRequest[e.RequestID] = map[pam.EventType]int{}
			}
			perRequest[e.RequestID][e.Type]++
		}
	}
	for run, es := range ends {
		if _, ok := starts[run]; !ok {
			t.Errorf("run %s has an end (%s, %s) but no start", run, es[0].Type, es[0].Outcome)
		}
	}
	told := map[string]int{}
	ran, lostStarts := 0, 0
	for param, c := range calls {
		class := errorClass(c.err)
		told[class]++
		run, started := byParam[param]
		if c.ran {
			ran++
			if !started {
				t.Errorf("run %s: fn ran without its start in the store", param)
				continue
			}
			if errors.Is(c.err, pam.ErrAudit) {
				t.Errorf("run %s: fn ran, and its caller was told ErrAudit (%v)", param, c.err)
			}
			if c.err != nil && !errors.Is(c.err, pam.ErrAuditIncomplete) {
				t.Errorf("run %s: fn ran and returned nil, and its caller was told %v", param, c.err)
			}
		}
		if !started {
			continue
		}
		if !c.ran {
			lostStarts++
		}
		es := ends[run]
		if len(es) != 1 || es[0].Type != pam.EventGuardFinished {
			t.Errorf("run %s (fn ran: %t, Guard: %v): %d ends %v, want one guard.finished", param, c.ran, c.err, len(es), es)
			continue
		}
		want := pam.OutcomeNotRun
		if c.ran {
			want = pam.OutcomeOK
		}
		if es[0].Outcome != want {
			t.Errorf("run %s (fn ran: %t, Guard: %v): ended %s, want %s", param, c.ran, c.err, es[0].Outcome, want)
		}
	}
	if len(starts) != len(byParam) || len(byParam) > len(calls) {
		t.Errorf("%d starts for %d runs of %d calls", len(starts), len(byParam), len(calls))
	}
	if open, err := inner.OpenRuns(ctx, time.Now().Add(1000*time.Hour), 0); err != nil || len(open) != 0 {
		t.Errorf("runs left open: %d (%v)", len(open), err)
	}

	requests, err := inner.Requests(ctx, pam.RequestFilter{})
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
	if _, err := pam.Verify(ctx, inner, pam.VerifyOptions{}); err != nil {
		t.Error(err)
	}
	t.Logf("faults injected: %d (store: %d commits rejected, %d committed with the reply lost; required sink: %d; best-effort sink: %d)",
		faults(), store.Before.Load(), store.After.Load(), required.Faults.Load(), bestEffort.Faults.Load())
	t.Logf("operations: %d (%d failed); Guard calls: %d, fn ran %d times; starts stored: %d, of which fn did not run: %d; ends by outcome: %s; callers told: %s; events: %d, requests: %d",
		ops.Load(), fails.Load(), len(calls), ran, len(starts), lostStarts, counts(endOutcomes), counts(told), len(trail), len(requests))
	if faults() < target {
		t.Errorf("only %d faults injected", faults())
	}
}

// errorClass names what Guard's error tells its caller.
func errorClass(err error) string {
	for _, s := range []struct {
		err  error
		name string
	}{{pam.ErrAuditIncomplete, "ErrAuditIncomplete"}, {pam.ErrAudit, "ErrAudit"}, {pam.ErrNotApproved, "ErrNotApproved"}, {pam.ErrConflict, "ErrConflict"}} {
		if errors.Is(err, s.err) {
			return s.name
		}
	}
	if err == nil {
		return "nil"
	}
	return "other"
}

func counts[K ~string](m map[K]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, string(k))
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", k, m[K(k)])
	}
	return b.String()
}
