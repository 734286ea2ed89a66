// Package storetest is the contract every pam.Store must meet. A store's
// own test is a few lines:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t testing.TB, clk *clock.Mock) pam.Store { return memory.New() })
//	}
//
// The suite hands each store a fake clock, for stores that keep time.
// A store over a database that others can write to also runs Malformed,
// with rows written around it that do not decode strictly.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/zerostanding/pam"
)

// Opener returns a new, empty store for one test. clk is the fake clock
// the test drives; stores that keep time in Go must use it.
type Opener func(t testing.TB, clk *clock.Mock) pam.Store

// Epoch is the fake clock's start.
var Epoch = time.Date(2026, 11, 2, 9, 0, 0, 123456789, time.UTC)

// Run runs the conformance suite against the stores open returns.
func Run(t *testing.T, open Opener) {
	fresh := func(t *testing.T) (pam.Store, *clock.Mock) {
		t.Helper()
		clk := clock.NewMock()
		clk.Set(Epoch)
		return open(t, clk), clk
	}
	t.Run("PolicyCRUD", func(t *testing.T) { s, _ := fresh(t); testPolicyCRUD(t, s) })
	t.Run("PolicyChanges", func(t *testing.T) { s, _ := fresh(t); testPolicyChanges(t, s) })
	t.Run("RequestCRUD", func(t *testing.T) { s, _ := fresh(t); testRequestCRUD(t, s) })
	t.Run("Atomicity", func(t *testing.T) { s, _ := fresh(t); testAtomicity(t, s) })
	t.Run("DuplicatesInTx", func(t *testing.T) { s, _ := fresh(t); testDuplicatesInTx(t, s) })
	t.Run("PolicyRevisionExpected", func(t *testing.T) { s, _ := fresh(t); testPolicyRevisionExpected(t, s) })
	t.Run("SameApproverTwice", func(t *testing.T) { s, _ := fresh(t); testSameApproverTwice(t, s) })
	t.Run("ShrinkingDecisions", func(t *testing.T) { s, _ := fresh(t); testShrinkingDecisions(t, s) })
	t.Run("RequestFilters", func(t *testing.T) { s, _ := fresh(t); testRequestFilters(t, s) })
	t.Run("Counts", func(t *testing.T) { s, _ := fresh(t); testCounts(t, s) })
	t.Run("DueBoundary", func(t *testing.T) { s, _ := fresh(t); testDueBoundary(t, s) })
	t.Run("Grants", func(t *testing.T) { s, _ := fresh(t); testGrants(t, s) })
	t.Run("EventOrder", func(t *testing.T) { s, _ := fresh(t); testEventOrder(t, s) })
	t.Run("EventFilters", func(t *testing.T) { s, _ := fresh(t); testEventFilters(t, s) })
	t.Run("Copies", func(t *testing.T) { s, _ := fresh(t); testCopies(t, s) })
	t.Run("Canceled", func(t *testing.T) { s, _ := fresh(t); testCanceled(t, s) })
	t.Run("ConcurrentCommits", func(t *testing.T) { s, _ := fresh(t); testConcurrentCommits(t, s) })
	t.Run("GroupCommit", func(t *testing.T) { s, _ := fresh(t); GroupCommit(t, s, nil) })
	t.Run("ConcurrentCAS", func(t *testing.T) { s, _ := fresh(t); testConcurrentCAS(t, s) })
	t.Run("HashChain", func(t *testing.T) { s, _ := fresh(t); testHashChain(t, s) })
	t.Run("OpenRuns", func(t *testing.T) { s, _ := fresh(t); testOpenRuns(t, s) })
	t.Run("Catalog", func(t *testing.T) { s, _ := fresh(t); testCatalog(t, s) })
	t.Run("CatalogRevisions", func(t *testing.T) { s, _ := fresh(t); testCatalogRevisions(t, s) })
	t.Run("CatalogAtomicity", func(t *testing.T) { s, _ := fresh(t); testCatalogAtomicity(t, s) })
	t.Run("ConcurrentCatalog", func(t *testing.T) { s, _ := fresh(t); testConcurrentCatalog(t, s) })
	t.Run("Outbox", func(t *testing.T) { s, _ := fresh(t); testOutbox(t, outboxOf(t, s)) })
	t.Run("ConcurrentClaims", func(t *testing.T) { s, _ := fresh(t); testConcurrentClaims(t, outboxOf(t, s)) })
	t.Run("Engine", func(t *testing.T) { runEngine(t, fresh) })
}

var (
	ctx   = context.Background()
	opts  = cmp.Options{cmpopts.EquateEmpty()}
	later = Epoch.Add(time.Hour)
)

func policy(id string, version int64) pam.Policy {
	return pam.Policy{
		ID: id, Name: "Policy " + id, Scope: pam.TaskScope("task-" + id), Condition: "input.op.params.x == 1",
		Approval: pam.Manual, ApproverGroups: []pam.ApproverGroup{{Group: "g1", MinApprovals: 2}, {Group: "g2"}},
		DefaultDuration: time.Hour, MaxDuration: 8 * time.Hour, PendingTTL: 24 * time.Hour, MaxStartDelay: 72 * time.Hour, MaxExtendedDuration: 12 * time.Hour,
		RequestRule: `deny contains "x" if false`, AutoApproveRule: "approve if false",
		Version: version, MinGrantVersion: 1, CreatedAt: Epoch, CreatedBy: "admin", UpdatedAt: later, UpdatedBy: "admin2",
	}
}

func request(id, requester, policyID string, state pam.State, version int64) pam.Request {
	r := pam.Request{
		ID: id, Requester: requester, Scope: pam.TaskScope("New-MoveRequest"), PolicyID: policyID,
		Reason: "move the mailbox of a leaver", Ticket: "INC-1", Duration: 4 * time.Hour, State: state,
		PolicyVersion: 3, CreatedAt: Epoch, PendingUntil: Epoch.Add(24 * time.Hour), Version: version,
	}
	if state != pam.Pending {
		r.Decisions = []pam.Decision{{Approver: "bob", Verdict: pam.Approve, Comment: "ok", At: later, PolicyVersion: 3}}
		r.ApprovedAt, r.ExpiresAt = later, later.Add(4*time.Hour)
		// Scheduled, and extended: every field travels in the stored data.
		r.Start = later
		r.Extension = &pam.Extension{By: 90 * time.Minute, Reason: "more to move", RequestedAt: later.Add(time.Hour), State: pam.Pending,
			Decisions: []pam.Decision{{Approver: "carol", Verdict: pam.Approve, At: later.Add(2 * time.Hour), PolicyVersion: 3}}}
	}
	if state.Terminal() {
		r.ClosedAt, r.ClosedBy = later.Add(time.Minute), "carol"
	}
	return r
}

func event(typ pam.EventType, actor, requestID string) pam.Event {
	return pam.Event{Time: Epoch, Type: typ, Actor: actor, RequestID: requestID, PolicyID: "p1", Task: "New-MoveRequest", Outcome: "ok",
		Detail: map[string]string{"reason": "because", "ü": "ünïcode ✓"}}
}

func commit(t *testing.T, s pam.Store, tx *pam.Tx) {
	t.Helper()
	if err := s.Commit(ctx, tx); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func mustConflict(t *testing.T, s pam.Store, tx *pam.Tx) {
	t.Helper()
	if err := s.Commit(ctx, tx); !errors.Is(err, pam.ErrConflict) {
		t.Fatalf("Commit = %v, want ErrConflict", err)
	}
}

func lastSeq(t *testing.T, s pam.Store) int64 {
	t.Helper()
	es, err := s.Events(ctx, pam.EventFilter{Descending: true, Limit: 1})
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	if len(es) == 0 {
		return 0
	}
	return es[0].Seq
}

func testPolicyCRUD(t *testing.T, s pam.Store) {
	if _, err := s.Policy(ctx, "p1"); !errors.Is(err, pam.ErrNotFound) {
		t.Fatalf("Policy of unknown id = %v, want ErrNotFound", err)
	}
	if rev, err := s.PolicyRevision(ctx); err != nil || rev != 0 {
		t.Fatalf("PolicyRevision of empty store = %d, %v; want 0", rev, err)
	}
	p := policy("p1", 1)
	tx := &pam.Tx{Policies: []pam.Policy{p}, Events: []pam.Event{event(pam.EventPolicyCreated, "admin", "")}}
	commit(t, s, tx)
	if tx.Policies[0].Revision != 1 || tx.Events[0].Seq != 1 {
		t.Fatalf("after first commit: Revision %d, Seq %d; want 1, 1", tx.Policies[0].Revision, tx.Events[0].Seq)
	}
	got, err := s.Policy(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	p.Revision = 1
	if d := cmp.Diff(p, got, opts); d != "" {
		t.Fatalf("Policy round trip (-want +got):\n%s", d)
	}

	mustConflict(t, s, &pam.Tx{Policies: []pam.Policy{policy("p1", 1)}}) // create again
	mustConflict(t, s, &pam.Tx{Policies: []pam.Policy{policy("p1", 3)}}) // skips a version
	mustConflict(t, s, &pam.Tx{Policies: []pam.Policy{policy("p2", 2)}}) // update of nothing

	p2 := policy("p1", 2)
	p2.Condition, p2.Deleted = "", true
	commit(t, s, &pam.Tx{Policies: []pam.Policy{p2}})
	got, err = s.Policy(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Deleted || got.Version != 2 || got.Revision != 2 || got.Condition != "" {
		t.Fatalf("after update: %+v", got)
	}
	if rev, _ := s.PolicyRevision(ctx); rev != 2 {
		t.Fatalf("PolicyRevision = %d, want 2", rev)
	}
}

func testPolicyChanges(t *testing.T, s pam.Store) {
	commit(t, s, &pam.Tx{Policies: []pam.Policy{policy("a", 1), policy("b", 1)}}) // revisions 1, 2
	commit(t, s, &pam.Tx{Policies: []pam.Policy{policy("c", 1)}})                 // 3
	commit(t, s, &pam.Tx{Policies: []pam.Policy{policy("a", 2)}})                 // 4
	del := policy("b", 2)
	del.Deleted = true
	commit(t, s, &pam.Tx{Policies: []pam.Policy{del}}) // 5

	for _, tc := range []struct {
		since int64
		want  []string // id@version in revision order
	}{
		{0, []string{"c@1", "a@2", "b@2"}},
		{2, []string{"c@1", "a@2", "b@2"}},
		{3, []string{"a@2", "b@2"}},
		{4, []string{"b@2"}},
		{5, nil},
	} {
		ps, rev, err := s.PolicyChanges(ctx, tc.since)
		if err != nil {
			t.Fatal(err)
		}
		if rev != 5 {
			t.Errorf("PolicyChanges(%d) revision = %d, want 5", tc.since, rev)
		}
		var got []string
		for i, p := range ps {
			got = append(got, fmt.Sprintf("%s@%d", p.ID, p.Version))
			if i > 0 && p.Revision <= ps[i-1].Revision {
				t.Errorf("PolicyChanges(%d) not in revision order: %v", tc.since, ps)
			}
		}
		if d := cmp.Diff(tc.want, got, opts); d != "" {
			t.Errorf("PolicyChanges(%d) (-want +got):\n%s", tc.since, d)
		}
	}
}

func testRequestCRUD(t *testing.T, s pam.Store) {
	if _, err := s.Request(ctx, "r1"); !errors.Is(err, pam.ErrNotFound) {
		t.Fatalf("Request of unknown id = %v, want ErrNotFound", err)
	}
	r := request("r1", "alice", "p1", pam.Pending, 1)
	commit(t, s, &pam.Tx{Requests: []pam.Request{r}, Events: []pam.Event{event(pam.EventRequestSubmitted, "alice", "r1")}})
	got, err := s.Request(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(r, got, opts); d != "" {
		t.Fatalf("Request round trip (-want +got):\n%s", d)
	}
	r2 := request("r1", "alice", "p1", pam.Revoked, 2)
	commit(t, s, &pam.Tx{Requests: []pam.Request{r2}})
	got, err = s.Request(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(r2, got, opts); d != "" {
		t.Fatalf("Request after update (-want +got):\n%s", d)
	}
	mustConflict(t, s, &pam.Tx{Requests: []pam.Request{request("r1", "alice", "p1", pam.Denied, 2)}})
	mustConflict(t, s, &pam.Tx{Requests: []pam.Request{request("r1", "alice", "p1", pam.Pending, 1)}})
	mustConflict(t, s, &pam.Tx{Requests: []pam.Request{request("r9", "alice", "p1", pam.Pending, 2)}})
}

func testAtomicity(t *testing.T, s pam.Store) {
	commit(t, s, &pam.Tx{
		Policies: []pam.Policy{policy("p1", 1)},
		Requests: []pam.Request{request("r1", "alice", "p1", pam.Pending, 1)},
		Events:   []pam.Event{event(pam.EventRequestSubmitted, "alice", "r1")},
	})
	// One stale write spoils the whole commit: nothing of it may land.
	for name, tx := range map[string]*pam.Tx{
		"stale request": {
			Policies: []pam.Policy{policy("p2", 1)},
			Requests: []pam.Request{request("r2", "bob", "p1", pam.Pending, 1), request("r1", "alice", "p1", pam.Approved, 1)},
			Events:   []pam.Event{event(pam.EventRequestApproved, "bob", "r1")},
		},
		"stale policy": {
			Policies: []pam.Policy{policy("p3", 1), policy("p1", 1)},
			Requests: []pam.Request{request("r3", "bob", "p1", pam.Pending, 1)},
			Events:   []pam.Event{event(pam.EventPolicyCreated, "bob", "")},
		},
	} {
		t.Run(name, func(t *testing.T) {
			mustConflict(t, s, tx)
			for _, id := range []string{"p2", "p3"} {
				if _, err := s.Policy(ctx, id); !errors.Is(err, pam.ErrNotFound) {
					t.Errorf("policy %s written by a failed commit (%v)", id, err)
				}
			}
			for _, id := range []string{"r2", "r3", "r4"} {
				if _, err := s.Request(ctx, id); !errors.Is(err, pam.ErrNotFound) {
					t.Errorf("request %s written by a failed commit (%v)", id, err)
				}
			}
			if r, _ := s.Request(ctx, "r1"); r.Version != 1 || r.State != pam.Pending {
				t.Errorf("request r1 changed by a failed commit: %+v", r)
			}
			if seq := lastSeq(t, s); seq != 1 {
				t.Errorf("failed commit appended events: last Seq %d, want 1", seq)
			}
			if rev, _ := s.PolicyRevision(ctx); rev != 1 {
				t.Errorf("failed commit moved PolicyRevision to %d", rev)
			}
		})
	}
	// A write that depends on an unchanged request fails when it changed.
	mustConflict(t, s, &pam.Tx{Events: []pam.Event{event(pam.EventGuardAllowed, "alice", "r1")}, Unchanged: []pam.RequestVersion{{ID: "r1", Version: 2}}})
	mustConflict(t, s, &pam.Tx{Events: []pam.Event{event(pam.EventGuardAllowed, "alice", "r9")}, Unchanged: []pam.RequestVersion{{ID: "r9", Version: 1}}})
	if seq := lastSeq(t, s); seq != 1 {
		t.Errorf("failed commit appended events: last Seq %d, want 1", seq)
	}
	tx := &pam.Tx{Events: []pam.Event{event(pam.EventGuardAllowed, "alice", "r1")}, Unchanged: []pam.RequestVersion{{ID: "r1", Version: 1}}}
	commit(t, s, tx)
	if tx.Events[0].Seq != 2 {
		t.Errorf("next event after failed commits has Seq %d, want 2 (no gaps)", tx.Events[0].Seq)
	}
}

func testRequestFilters(t *testing.T, s pam.Store) {
	var all []pam.Request
	states := []pam.State{pam.Pending, pam.Approved, pam.Denied, pam.Canceled, pam.Revoked, pam.Relinquished, pam.Expired}
	for i := range 30 {
		r := request(fmt.Sprintf("r%02d", i), []string{"alice", "bob", "carol"}[i%3], []string{"p1", "p2"}[i%2], states[i%len(states)], 1)
		r.PendingUntil = Epoch.Add(time.Duration(i) * time.Hour)
		if r.State == pam.Approved {
			r.ExpiresAt = Epoch.Add(time.Duration(i) * time.Minute)
		}
		// Tickets and deciders to search for, LIKE's wildcards among
		// them.
		switch i % 5 {
		case 1:
			r.Ticket = fmt.Sprintf("CHG-%d", i)
		case 2:
			r.Ticket = "50%_off"
		case 3:
			r.Ticket = "5000 off"
			if len(r.Decisions) > 0 {
				r.Decisions[0].Approver = "dave_x"
			}
		}
		all = append(all, r)
	}
	// Commit in shuffled order: results are still ordered by ID.
	for _, i := range []int{17, 3, 29, 0, 11, 5, 23, 8, 14, 1, 20, 26, 9, 2, 28, 6, 12, 18, 24, 4, 15, 27, 7, 21, 10, 13, 19, 16, 22, 25} {
		commit(t, s, &pam.Tx{Requests: []pam.Request{all[i]}})
	}
	check := func(name string, f pam.RequestFilter) {
		t.Helper()
		var want []string
		for k := range all {
			r := all[k]
			if f.Newest {
				r = all[len(all)-1-k]
			}
			if f.Matches(&r) && !f.Before(f.After, r.ID) && (f.Limit == 0 || len(want) < f.Limit) {
				want = append(want, r.ID)
			}
		}
		if len(want) == 0 && name != "unknown policy" && name != "after last" && name != "newest after first" && name != "decided by a prefix" {
			t.Fatalf("%s: the test data has no match", name)
		}
		got, err := s.Requests(ctx, f)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var ids []string
		for _, r := range got {
			ids = append(ids, r.ID)
		}
		if d := cmp.Diff(want, ids, opts); d != "" {
			t.Errorf("%s (-want +got):\n%s", name, d)
		}
	}
	check("all", pam.RequestFilter{})
	check("requester", pam.RequestFilter{Requester: "bob"})
	check("policy", pam.RequestFilter{PolicyIDs: []string{"p2"}})
	check("policies", pam.RequestFilter{PolicyIDs: []string{"p2", "p1"}})
	check("unknown policy", pam.RequestFilter{PolicyIDs: []string{"p9"}})
	check("state", pam.RequestFilter{States: []pam.State{pam.Approved}})
	check("states", pam.RequestFilter{States: []pam.State{pam.Pending, pam.Revoked}})
	check("relinquished", pam.RequestFilter{States: []pam.State{pam.Relinquished}})
	check("combined", pam.RequestFilter{Requester: "alice", PolicyIDs: []string{"p1"}, States: []pam.State{pam.Pending, pam.Approved, pam.Revoked}})
	check("due", pam.RequestFilter{States: []pam.State{pam.Pending, pam.Approved}, DueBy: Epoch.Add(7 * time.Hour)})
	check("due at the instant", pam.RequestFilter{DueBy: Epoch.Add(12 * time.Hour)})
	check("limit", pam.RequestFilter{Limit: 7})
	check("after", pam.RequestFilter{After: "r12", Limit: 5})
	check("after last", pam.RequestFilter{After: "r29"})
	check("newest", pam.RequestFilter{Newest: true})
	check("newest limit", pam.RequestFilter{Newest: true, Limit: 6})
	check("newest after", pam.RequestFilter{Newest: true, After: "r12", Limit: 5})
	check("newest after first", pam.RequestFilter{Newest: true, After: "r00"})
	check("newest requester", pam.RequestFilter{Newest: true, Requester: "carol", After: "r20"})
	check("newest due", pam.RequestFilter{Newest: true, DueBy: Epoch.Add(7 * time.Hour)})
	check("decided by", pam.RequestFilter{DecidedBy: "carol"})
	check("decided by the first", pam.RequestFilter{DecidedBy: "bob"})
	check("decided by, underscore", pam.RequestFilter{DecidedBy: "dave_x"})
	check("decided by a prefix", pam.RequestFilter{DecidedBy: "dave"})
	check("decided by, newest", pam.RequestFilter{DecidedBy: "bob", Newest: true, Limit: 3, After: "r25"})
	check("search ticket", pam.RequestFilter{Search: "chg-1"})
	check("search case", pam.RequestFilter{Search: "ALIce"})
	check("search percent", pam.RequestFilter{Search: "0%"})
	check("search underscore", pam.RequestFilter{Search: "%_"})
	check("search scope", pam.RequestFilter{Search: "moverequest"})
	check("search policy", pam.RequestFilter{Search: "p2", States: []pam.State{pam.Pending}})
	check("search id", pam.RequestFilter{Search: "r1", Newest: true, Limit: 4})
	check("search combined", pam.RequestFilter{Search: "off", Requester: "bob", DecidedBy: "dave_x"})
	// Paging through with After collects each match exactly once.
	f := pam.RequestFilter{States: []pam.State{pam.Pending, pam.Approved, pam.Expired}, Limit: 4}
	var paged []string
	for {
		page, err := s.Requests(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page {
			paged = append(paged, r.ID)
		}
		if len(page) < f.Limit {
			break
		}
		f.After = page[len(page)-1].ID
	}
	var want []string
	for _, r := range all {
		if r.State == pam.Pending || r.State == pam.Approved || r.State == pam.Expired {
			want = append(want, r.ID)
		}
	}
	if d := cmp.Diff(want, paged); d != "" {
		t.Errorf("paging (-want +got):\n%s", d)
	}
}

func testGrants(t *testing.T, s pam.Store) {
	commit(t, s, &pam.Tx{Requests: []pam.Request{
		request("g1", "alice", "p1", pam.Approved, 1),
		request("g2", "alice", "p2", pam.Approved, 1),
		request("g3", "alice", "p1", pam.Pending, 1),
		request("g4", "alice", "p1", pam.Revoked, 1),
		request("g5", "bob", "p1", pam.Approved, 1),
		request("g6", "alice", "p3", pam.Approved, 1),
	}})
	ids := func(requester string, policies ...string) []string {
		t.Helper()
		rs, err := s.Grants(ctx, requester, policies)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, g := range rs {
			out = append(out, g.RequestID)
		}
		sort.Strings(out)
		return out
	}
	for _, tc := range []struct {
		requester string
		policies  []string
		want      []string
	}{
		{"alice", []string{"p1"}, []string{"g1"}},
		{"alice", []string{"p1", "p2"}, []string{"g1", "g2"}},
		{"alice", []string{"p9"}, nil},
		{"bob", []string{"p1", "p2"}, []string{"g5"}},
		{"carol", []string{"p1"}, nil},
	} {
		if d := cmp.Diff(tc.want, ids(tc.requester, tc.policies...), opts); d != "" {
			t.Errorf("Grants(%s, %v) (-want +got):\n%s", tc.requester, tc.policies, d)
		}
		sameReadGuard(t, s, tc.requester, tc.policies)
	}
	sameReadGuard(t, s, "alice", nil)
	// A grant leaves the set when its recorded state changes.
	commit(t, s, &pam.Tx{Requests: []pam.Request{request("g1", "alice", "p1", pam.Revoked, 2), request("g3", "alice", "p1", pam.Approved, 2)}})
	if d := cmp.Diff([]string{"g3"}, ids("alice", "p1")); d != "" {
		t.Errorf("Grants after revoke and approve (-want +got):\n%s", d)
	}
	sameReadGuard(t, s, "alice", []string{"p1"})
	commit(t, s, &pam.Tx{Policies: []pam.Policy{{ID: "p1", Version: 1}}})
	sameReadGuard(t, s, "alice", []string{"p1", "p2"})
	got, err := s.Grants(ctx, "alice", []string{"p1"})
	if err != nil || len(got) != 1 {
		t.Fatalf("Grants: %v, %v", got, err)
	}
	g3 := request("g3", "alice", "p1", pam.Approved, 2)
	if d := cmp.Diff(g3.Grant(), got[0], opts); d != "" {
		t.Errorf("Grants returns the request's grant (-want +got):\n%s", d)
	}
}

// sameReadGuard checks that a GuardReader's ReadGuard reads what
// PolicyRevision, Now and Grants read; it does nothing for other stores.
func sameReadGuard(t *testing.T, s pam.Store, requester string, policyIDs []string) {
	t.Helper()
	gr, ok := s.(pam.GuardReader)
	if !ok {
		return
	}
	got, err := gr.ReadGuard(ctx, requester, policyIDs)
	if err != nil {
		t.Fatalf("ReadGuard(%s, %v): %v", requester, policyIDs, err)
	}
	rev, err := s.PolicyRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.PolicyRevision != rev {
		t.Errorf("ReadGuard(%s, %v) read revision %d, PolicyRevision %d", requester, policyIDs, got.PolicyRevision, rev)
	}
	var want []pam.Grant
	if len(policyIDs) > 0 {
		if want, err = s.Grants(ctx, requester, policyIDs); err != nil {
			t.Fatal(err)
		}
	}
	byID := cmpopts.SortSlices(func(a, b pam.Grant) bool { return a.RequestID < b.RequestID })
	if d := cmp.Diff(want, got.Grants, opts, byID); d != "" {
		t.Errorf("ReadGuard(%s, %v) grants differ from Grants' (-Grants +ReadGuard):\n%s", requester, policyIDs, d)
	}
	if ts, ok := s.(pam.TimeSource); ok {
		now, err := ts.Now(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if d := now.Sub(got.Now); d < 0 || d > time.Minute {
			t.Errorf("ReadGuard read the time %v, Now then %v", got.Now, now)
		}
	} else if !got.Now.IsZero() {
		t.Errorf("ReadGuard of a store that is not a TimeSource read the time %v", got.Now)
	}
}

func testEventOrder(t *testing.T, s pam.Store) {
	var want []int64
	n := int64(0)
	for i := range 20 {
		tx := &pam.Tx{}
		for range i%4 + 1 {
			tx.Events = append(tx.Events, event(pam.EventGuardAllowed, "alice", ""))
		}
		commit(t, s, tx)
		for _, e := range tx.Events {
			n++
			if e.Seq != n {
				t.Fatalf("commit %d: Seq %d, want %d", i, e.Seq, n)
			}
			want = append(want, n)
		}
	}
	es, err := s.Events(ctx, pam.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, e := range es {
		got = append(got, e.Seq)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("event sequence (-want +got):\n%s", d)
	}
}

func testEventFilters(t *testing.T, s pam.Store) {
	var all []pam.Event
	types := []pam.EventType{pam.EventRequestSubmitted, pam.EventRequestApproved, pam.EventGuardAllowed, pam.EventGuardFinished}
	for i := range 40 {
		e := pam.Event{
			Time: Epoch.Add(time.Duration(i) * time.Minute), Type: types[i%4], Actor: []string{"alice", "bob", "carol"}[i%3],
			RequestID: fmt.Sprintf("r%d", i%5), PolicyID: fmt.Sprintf("p%d", i%2), Task: []string{"New-MoveRequest", "Set-Mailbox"}[i%2],
		}
		if i%3 == 0 {
			e.Detail = map[string]string{"i": fmt.Sprint(i)}
		}
		if i%4 == 3 {
			e.Outcome = []pam.Outcome{pam.OutcomeOK, pam.OutcomeError}[i%8/4]
		}
		if i%4 >= 2 {
			e.Run = fmt.Sprintf("run-%d", i/4%3)
		}
		tx := &pam.Tx{Events: []pam.Event{e}}
		commit(t, s, tx)
		all = append(all, tx.Events[0])
	}
	check := func(name string, f pam.EventFilter) {
		t.Helper()
		var want []pam.Event
		for i := range all {
			e := all[len(all)-1-i]
			if !f.Descending {
				e = all[i]
			}
			if f.Matches(&e) && e.Seq > f.After && (f.Before == 0 || e.Seq < f.Before) && (f.Limit == 0 || len(want) < f.Limit) {
				want = append(want, e)
			}
		}
		got, err := s.Events(ctx, f)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if d := cmp.Diff(want, got, opts); d != "" {
			t.Errorf("%s (-want +got):\n%s", name, d)
		}
	}
	check("all", pam.EventFilter{})
	check("actor", pam.EventFilter{Actor: "bob"})
	check("task", pam.EventFilter{Task: "Set-Mailbox"})
	check("type", pam.EventFilter{Types: []pam.EventType{pam.EventGuardAllowed}})
	check("types", pam.EventFilter{Types: []pam.EventType{pam.EventGuardAllowed, pam.EventRequestSubmitted}})
	check("request", pam.EventFilter{RequestID: "r3"})
	check("policy", pam.EventFilter{PolicyID: "p1"})
	check("outcome", pam.EventFilter{Outcome: "error"})
	check("run", pam.EventFilter{Run: "run-1"})
	check("since", pam.EventFilter{Since: Epoch.Add(30 * time.Minute)})
	check("until", pam.EventFilter{Until: Epoch.Add(10 * time.Minute)})
	check("range", pam.EventFilter{Since: Epoch.Add(5 * time.Minute), Until: Epoch.Add(25 * time.Minute), Actor: "alice"})
	check("after", pam.EventFilter{After: 35})
	check("before", pam.EventFilter{Before: 4})
	check("limit", pam.EventFilter{Limit: 3, Task: "New-MoveRequest"})
	check("descending", pam.EventFilter{Descending: true, Limit: 5})
	check("descending before", pam.EventFilter{Descending: true, Before: 20, Limit: 5, Actor: "carol"})
	check("last 100 of few", pam.EventFilter{Descending: true, Limit: 100})
	// Verify and Audit read from the lowest possible number, to see
	// events stored with a number below 1; cursors may be negative.
	check("from the lowest", pam.EventFilter{After: math.MinInt64})
	check("from the lowest, descending", pam.EventFilter{After: math.MinInt64, Descending: true, Limit: 3})
	check("after a negative", pam.EventFilter{After: -3, Limit: 2})
	check("below 1", pam.EventFilter{After: math.MinInt64, Before: 1})
	check("before a negative", pam.EventFilter{Descending: true, Before: -1})
	check("past the last", pam.EventFilter{After: math.MaxInt64})
	check("nothing", pam.EventFilter{Actor: "mallory"})
}

func testCopies(t *testing.T, s pam.Store) {
	p := policy("p1", 1)
	r := request("r1", "alice", "p1", pam.Approved, 1)
	r.Bind = map[string]any{"mailbox": "ceo@contoso.com"}
	e := event(pam.EventRequestApproved, "bob", "r1")
	commit(t, s, &pam.Tx{Policies: []pam.Policy{p}, Requests: []pam.Request{r}, Events: []pam.Event{e}})
	// The caller changing what it passed in must not change the store...
	p.ApproverGroups[0].Group = "changed"
	r.Decisions[0].Approver = "changed"
	r.Bind["mailbox"] = "changed"
	e.Detail["reason"] = "changed"
	// ...nor changing what it got back.
	gp, _ := s.Policy(ctx, "p1")
	gp.ApproverGroups[0].Group = "changed"
	gr, _ := s.Request(ctx, "r1")
	gr.Decisions[0].Approver = "changed"
	gr.Bind["mailbox"] = "changed"
	if gs, _ := s.Grants(ctx, "alice", []string{"p1"}); len(gs) == 1 {
		gs[0].Bind["mailbox"] = "changed"
	}
	ge, _ := s.Events(ctx, pam.EventFilter{})
	ge[0].Detail["reason"] = "changed"

	if p, _ := s.Policy(ctx, "p1"); p.ApproverGroups[0].Group != "g1" {
		t.Errorf("policy changed through an alias: %+v", p.ApproverGroups)
	}
	if r, _ := s.Request(ctx, "r1"); r.Decisions[0].Approver != "bob" || r.Bind["mailbox"] != "ceo@contoso.com" {
		t.Errorf("request changed through an alias: %+v %v", r.Decisions, r.Bind)
	}
	if gs, _ := s.Grants(ctx, "alice", []string{"p1"}); len(gs) != 1 || gs[0].Bind["mailbox"] != "ceo@contoso.com" {
		t.Errorf("grant changed through an alias: %+v", gs)
	}
	if es, _ := s.Events(ctx, pam.EventFilter{}); es[0].Detail["reason"] != "because" {
		t.Errorf("event changed through an alias: %+v", es[0].Detail)
	}
}

func testCanceled(t *testing.T, s pam.Store) {
	commit(t, s, &pam.Tx{Policies: []pam.Policy{policy("p1", 1)}, Requests: []pam.Request{request("r1", "alice", "p1", pam.Approved, 1)}})
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	calls := map[string]func() error{
		"Commit": func() error {
			return s.Commit(cctx, &pam.Tx{Requests: []pam.Request{request("r2", "alice", "p1", pam.Pending, 1)}, Events: []pam.Event{event(pam.EventRequestSubmitted, "alice", "r2")}})
		},
		"Commit of a catalog": func() error {
			c := catalog(1)
			return s.Commit(cctx, &pam.Tx{Catalog: &c, Events: []pam.Event{event(pam.EventCatalogSet, "admin", "")}})
		},
		"Policy":         func() error { _, err := s.Policy(cctx, "p1"); return err },
		"PolicyChanges":  func() error { _, _, err := s.PolicyChanges(cctx, 0); return err },
		"PolicyRevision": func() error { _, err := s.PolicyRevision(cctx); return err },
		"Request":        func() error { _, err := s.Request(cctx, "r1"); return err },
		"Requests":       func() error { _, err := s.Requests(cctx, pam.RequestFilter{}); return err },
		"Grants":         func() error { _, err := s.Grants(cctx, "alice", []string{"p1"}); return err },
		"Catalog":        func() error { _, err := s.Catalog(cctx); return err },
		"Events":         func() error { _, err := s.Events(cctx, pam.EventFilter{}); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context = %v, want context.Canceled", name, err)
		}
	}
	if _, err := s.Request(ctx, "r2"); !errors.Is(err, pam.ErrNotFound) {
		t.Errorf("Commit with a canceled context wrote the request (%v)", err)
	}
	if seq := lastSeq(t, s); seq != 0 {
		t.Errorf("Commit with a canceled context wrote events up to %d", seq)
	}
	if c, err := s.Catalog(ctx); err != nil || c.Version != 0 {
		t.Errorf("Commit with a canceled context wrote the catalog (version %d, %v)", c.Version, err)
	}
}

func testConcurrentCommits(t *testing.T, s pam.Store) {
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				tx := &pam.Tx{Events: []pam.Event{event(pam.EventGuardAllowed, fmt.Sprint("w", w), ""), event(pam.EventGuardFinished, fmt.Sprint("w", w), "")}}
				if err := s.Commit(ctx, tx); err != nil {
					errs <- err
					return
				}
				if tx.Events[1].Seq != tx.Events[0].Seq+1 {
					errs <- fmt.Errorf("worker %d commit %d: events of one commit got Seq %d and %d", w, i, tx.Events[0].Seq, tx.Events[1].Seq)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	es, err := s.Events(ctx, pam.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != workers*each*2 {
		t.Fatalf("%d events, want %d", len(es), workers*each*2)
	}
	for i, e := range es {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has Seq %d: gap or duplicate", i, e.Seq)
		}
	}
}

func testConcurrentCAS(t *testing.T, s pam.Store) {
	commit(t, s, &pam.Tx{Requests: []pam.Request{request("r1", "alice", "p1", pam.Pending, 1)}})
	const workers, rounds = 8, 20
	var mu sync.Mutex
	wins := map[int64]int{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				cur, err := s.Request(ctx, "r1")
				if err != nil {
					t.Error(err)
					return
				}
				next := cur
				next.Version++
				next.ClosedBy = fmt.Sprint("w", w)
				err = s.Commit(ctx, &pam.Tx{Requests: []pam.Request{next}, Events: []pam.Event{event(pam.EventRequestDecision, next.ClosedBy, "r1")}})
				switch {
				case err == nil:
					mu.Lock()
					wins[next.Version]++
					mu.Unlock()
				case !errors.Is(err, pam.ErrConflict):
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	final, err := s.Request(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	for v := int64(2); v <= final.Version; v++ {
		if wins[v] != 1 {
			t.Errorf("version %d was written %d times, want exactly once", v, wins[v])
		}
	}
	if len(wins) != int(final.Version-1) {
		t.Errorf("%d successful writes, final version %d", len(wins), final.Version)
	}
	if seq := lastSeq(t, s); seq != final.Version-1 {
		t.Errorf("%d events for %d successful writes", seq, final.Version-1)
	}
}

// testHashChain: concurrent commits of several events each, with failed
// commits among them, leave one chain that verifies, and every commit
// hands back exactly the Seq and hashes that were stored.
func testHashChain(t *testing.T, s pam.Store) {
	commit(t, s, &pam.Tx{Requests: []pam.Request{request("r1", "alice", "p1", pam.Pending, 1)}})
	const workers, each = 6, 15
	var mu sync.Mutex
	returned := map[int64]pam.Event{}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				tx := &pam.Tx{}
				for k := range i%3 + 1 {
					e := event(pam.EventRequestDecision, fmt.Sprint("wörker", w), "r1")
					e.Time = Epoch.Add(time.Duration(w*1000+i*10+k) * time.Nanosecond)
					e.Outcome, e.Detail = "approve", map[string]string{"b": fmt.Sprint(i), "a": "ü\"\n"}
					tx.Events = append(tx.Events, e)
				}
				if i%5 == 4 {
					// A conflicting commit writes nothing and takes no Seq.
					tx.Unchanged = []pam.RequestVersion{{ID: "r1", Version: 7}}
					if err := s.Commit(ctx, tx); !errors.Is(err, pam.ErrConflict) {
						errs <- fmt.Errorf("conflicting commit = %v", err)
						return
					}
					continue
				}
				if err := s.Commit(ctx, tx); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				for _, e := range tx.Events {
					returned[e.Seq] = e
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	stored, err := s.Events(ctx, pam.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != len(returned) {
		t.Fatalf("%d events stored, %d returned by Commit", len(stored), len(returned))
	}
	for _, e := range stored {
		if d := cmp.Diff(returned[e.Seq], e, opts); d != "" {
			t.Fatalf("event %d (-returned by Commit +stored):\n%s", e.Seq, d)
		}
	}
	res, err := pam.Verify(ctx, s, pam.VerifyOptions{PageSize: 7})
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != int64(len(stored)) || res.Head != stored[len(stored)-1].Hash {
		t.Errorf("Verify = %+v; %d events, head %s", res, len(stored), stored[len(stored)-1].Hash)
	}
}

// outboxOf skips the outbox cases for a store that keeps no outbox.
func outboxOf(t *testing.T, s pam.Store) pam.OutboxStore {
	t.Helper()
	o, ok := s.(pam.OutboxStore)
	if !ok {
		t.Skip("the store does not implement pam.OutboxStore")
	}
	return o
}

func message(id, requestID string, next time.Time) pam.Message {
	r := request(requestID, "alice", "p1", pam.Pending, 1)
	return pam.Message{ID: id, Notifier: "mail", Recipient: "bob", Type: pam.EventRequestSubmitted, Request: r,
		State: pam.MessagePending, CreatedAt: Epoch, NextAttempt: next, Version: 1}
}

func testOutbox(t *testing.T, s pam.OutboxStore) {
	// Messages are written with the transition, or not at all.
	commit(t, s, &pam.Tx{Requests: []pam.Request{request("r1", "alice", "p1", pam.Pending, 1)},
		Messages: []pam.Message{message("m1", "r1", Epoch), message("m2", "r1", Epoch.Add(time.Minute)), message("m3", "r1", Epoch)}})
	mustConflict(t, s, &pam.Tx{Requests: []pam.Request{request("r1", "alice", "p1", pam.Pending, 1)}, Messages: []pam.Message{message("m9", "r1", Epoch)}})
	mustConflict(t, s, &pam.Tx{Messages: []pam.Message{message("m1", "r1", Epoch)}})
	all, err := s.Messages(ctx, pam.MessageFilter{})
	if err != nil {
		t.Fatal(err)
	}
	want := []pam.Message{message("m1", "r1", Epoch), message("m2", "r1", Epoch.Add(time.Minute)), message("m3", "r1", Epoch)}
	if d := cmp.Diff(want, all, opts); d != "" {
		t.Fatalf("Messages (-want +got):\n%s", d)
	}

	// Claim: the due ones, oldest first, leased and one version up.
	until := Epoch.Add(time.Minute)
	got, err := s.ClaimMessages(ctx, "a", Epoch, until, 10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range got {
		ids = append(ids, m.ID)
		if m.LeaseOwner != "a" || !m.LeaseUntil.Equal(until) || m.Version != 2 {
			t.Errorf("claimed %s: owner %q until %v version %d", m.ID, m.LeaseOwner, m.LeaseUntil, m.Version)
		}
	}
	if d := cmp.Diff([]string{"m1", "m3"}, ids); d != "" {
		t.Fatalf("claimed (-want +got):\n%s", d)
	}
	// Leased messages are not claimed again until the lease ends.
	if again, _ := s.ClaimMessages(ctx, "b", Epoch.Add(30*time.Second), Epoch.Add(time.Hour), 10); len(again) != 0 {
		t.Fatalf("claimed leased messages: %+v", again)
	}
	// Settling needs the claimed version: a stale settlement conflicts.
	settled := got[0]
	settled.State, settled.Attempts, settled.DeliveredAt, settled.Version = pam.MessageDelivered, 1, Epoch, 3
	stale := settled
	stale.Version = 2
	mustConflict(t, s, &pam.Tx{Messages: []pam.Message{stale}})
	retry := got[1]
	retry.Attempts, retry.NextAttempt, retry.LastError, retry.Version = 1, Epoch.Add(2*time.Minute), "smtp down", 3
	commit(t, s, &pam.Tx{Messages: []pam.Message{settled, retry}, Events: []pam.Event{event(pam.EventNotifyFailed, "", "r1")}})
	// After the lease: m2 is due; m3 waits for its next attempt; m1 is done.
	got, err = s.ClaimMessages(ctx, "b", Epoch.Add(time.Minute), Epoch.Add(2*time.Minute), 10)
	if err != nil || len(got) != 1 || got[0].ID != "m2" || got[0].LeaseOwner != "b" {
		t.Fatalf("claim after settling: %+v, %v", got, err)
	}
	got, err = s.ClaimMessages(ctx, "c", Epoch.Add(3*time.Minute), Epoch.Add(4*time.Minute), 10)
	if err != nil || len(got) != 2 || got[0].ID != "m2" || got[1].ID != "m3" || got[0].Version != 3 || got[1].Version != 4 {
		t.Fatalf("claim after m2's lease and m3's backoff: %+v, %v", got, err)
	}
	if got[1].Attempts != 1 || got[1].LastError != "smtp down" || !got[1].NextAttempt.Equal(Epoch.Add(2*time.Minute)) {
		t.Errorf("a settled message keeps its fields: %+v", got[1])
	}
	// Filters and pages.
	done, _ := s.Messages(ctx, pam.MessageFilter{States: []pam.MessageState{pam.MessageDelivered}})
	if len(done) != 1 || done[0].ID != "m1" || !done[0].DeliveredAt.Equal(Epoch) || done[0].LeaseOwner != "" {
		t.Errorf("delivered: %+v", done)
	}
	page, _ := s.Messages(ctx, pam.MessageFilter{After: "m1", Limit: 1})
	if len(page) != 1 || page[0].ID != "m2" {
		t.Errorf("page after m1: %+v", page)
	}
	if none, _ := s.Messages(ctx, pam.MessageFilter{RequestID: "r2"}); len(none) != 0 {
		t.Errorf("other request: %+v", none)
	}
	if limited, _ := s.ClaimMessages(ctx, "d", Epoch.Add(time.Hour), Epoch.Add(2*time.Hour), 1); len(limited) != 1 {
		t.Errorf("limit 1 claimed %d", len(limited))
	}
}

// testConcurrentClaims: claimers racing over one outbox each get
// different messages, and every message is claimed once.
func testConcurrentClaims(t *testing.T, s pam.OutboxStore) {
	const n = 60
	tx := &pam.Tx{Requests: []pam.Request{request("r1", "alice", "p1", pam.Pending, 1)}}
	for i := range n {
		tx.Messages = append(tx.Messages, message(fmt.Sprintf("m%03d", i), "r1", Epoch))
	}
	commit(t, s, tx)
	var mu sync.Mutex
	seen := map[string]string{}
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				got, err := s.ClaimMessages(ctx, fmt.Sprint("w", w), Epoch, Epoch.Add(time.Hour), 4)
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, m := range got {
					if prev, ok := seen[m.ID]; ok {
						t.Errorf("%s claimed by %s and w%d", m.ID, prev, w)
					}
					seen[m.ID] = m.LeaseOwner
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != n {
		t.Errorf("%d of %d messages claimed", len(seen), n)
	}
}

// testCounts: a store that counts (pam.Counter) counts the requests
// recorded pending and the outbox's pending and parked messages.
func testCounts(t *testing.T, s pam.Store) {
	c, ok := s.(pam.Counter)
	if !ok {
		t.Skip("the store does not count (pam.Counter)")
	}
	tx := &pam.Tx{}
	for i, st := range []pam.State{pam.Pending, pam.Pending, pam.Approved, pam.Denied, pam.Pending, pam.Expired} {
		tx.Requests = append(tx.Requests, request(fmt.Sprintf("r%d", i), "alice", "p1", st, 1))
	}
	commit(t, s, tx)
	if _, isOutbox := s.(pam.OutboxStore); isOutbox {
		var msgs []pam.Message
		for i, st := range []pam.MessageState{pam.MessagePending, pam.MessagePending, pam.MessagePending, pam.MessageFailed, pam.MessageDelivered} {
			msgs = append(msgs, pam.Message{ID: fmt.Sprintf("m%d", i), Notifier: "n", Recipient: "bob", Type: pam.EventRequestSubmitted,
				Request: request("r0", "alice", "p1", pam.Pending, 1), State: st, CreatedAt: Epoch, NextAttempt: Epoch, Version: 1})
		}
		commit(t, s, &pam.Tx{Messages: msgs})
	}
	got, err := c.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := pam.Counts{PendingRequests: 3}
	if _, isOutbox := s.(pam.OutboxStore); isOutbox {
		want.PendingMessages, want.ParkedMessages = 3, 1
	}
	if got != want {
		t.Errorf("Counts = %+v, want %+v", got, want)
	}
}
