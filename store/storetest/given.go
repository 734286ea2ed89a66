package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/zerostanding/pam"
)

// The cases below are where stores once answered differently: each store
// made rules of its own. A store stores what it is given; the rules of a
// request's contents are the engine's, and what every store must do alike
// is written once in the root package (storekit.go).

// readBack commits r and checks that Request and Requests return it
// exactly as given.
func readBack(t *testing.T, s pam.Store, r pam.Request) {
	t.Helper()
	commit(t, s, &pam.Tx{Requests: []pam.Request{r}, Events: []pam.Event{event(pam.EventRequestDecision, "bob", r.ID)}})
	got, err := s.Request(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(r, got, opts); d != "" {
		t.Fatalf("Request at version %d (-given +stored):\n%s", r.Version, d)
	}
	list, err := s.Requests(ctx, pam.RequestFilter{Requester: r.Requester})
	if err != nil || len(list) != 1 {
		t.Fatalf("Requests: %v, %v", list, err)
	}
	if d := cmp.Diff(r, list[0], opts); d != "" {
		t.Fatalf("Requests at version %d (-given +stored):\n%s", r.Version, d)
	}
}

func decision(approver string, v pam.Verdict, at time.Time) pam.Decision {
	return pam.Decision{Approver: approver, Verdict: v, Comment: approver + " " + string(v), At: at, PolicyVersion: 3}
}

// testSameApproverTwice: one decision per approver is the engine's rule.
// A request that names an approver twice, written new or as an update,
// is stored and read back as given.
func testSameApproverTwice(t *testing.T, s pam.Store) {
	r := request("r1", "alice", "p1", pam.Pending, 1)
	r.Decisions = []pam.Decision{decision("bob", pam.Approve, Epoch), decision("bob", pam.Approve, later)}
	readBack(t, s, r)
	r.Version = 2
	r.Decisions = append(r.Decisions, decision("carol", pam.Approve, later), decision("bob", pam.Deny, later))
	readBack(t, s, r)
}

// testShrinkingDecisions: decisions are only ever added by the engine.
// A write with fewer decisions than the stored version is stored and
// read back as given, down to none, and may grow again.
func testShrinkingDecisions(t *testing.T, s pam.Store) {
	r := request("r1", "alice", "p1", pam.Pending, 1)
	r.Decisions = []pam.Decision{decision("bob", pam.Approve, Epoch), decision("carol", pam.Approve, Epoch), decision("dave", pam.Approve, later)}
	readBack(t, s, r)
	for _, d := range [][]pam.Decision{
		{decision("carol", pam.Approve, Epoch)}, // fewer, and not a prefix
		nil,                                     // none
		{decision("dave", pam.Deny, later), decision("bob", pam.Approve, later)}, // again
		{decision("bob", pam.Approve, later)},                                    // fewer, by its last
	} {
		r.Version++
		r.Decisions = d
		readBack(t, s, r)
	}
}

// testDueBoundary: RequestFilter.DueBy keeps the requests whose Due is at
// or before it, to the nanosecond: a pending one by PendingUntil, an
// approved one by ExpiresAt, the other field being no matter.
func testDueBoundary(t *testing.T, s pam.Store) {
	due := Epoch.Add(36*time.Hour + 1)
	pending := request("r1", "alice", "p1", pam.Pending, 1)
	pending.PendingUntil = due
	pending.ExpiresAt = Epoch // not its due: a pending request times out at PendingUntil
	approved := request("r2", "alice", "p1", pam.Approved, 1)
	approved.ExpiresAt = due
	approved.PendingUntil = Epoch // not its due
	closed := request("r3", "alice", "p1", pam.Revoked, 1)
	closed.PendingUntil, closed.ExpiresAt = Epoch, Epoch // terminal: never due
	commit(t, s, &pam.Tx{Requests: []pam.Request{pending, approved, closed}})

	for _, r := range []pam.Request{pending, approved} {
		t.Run(string(r.State), func(t *testing.T) {
			if !r.Due().Equal(due) {
				t.Fatalf("Due() = %v, want %v", r.Due(), due)
			}
			for _, tc := range []struct {
				by   time.Time
				want bool
			}{{due.Add(-1), false}, {due, true}, {due.Add(1), true}} {
				f := pam.RequestFilter{DueBy: tc.by, PolicyIDs: []string{"p1"}, States: []pam.State{r.State}}
				got, err := s.Requests(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				if found := len(got) == 1 && got[0].ID == r.ID; found != tc.want || len(got) > 1 {
					t.Errorf("DueBy due%+dns: got %d requests (%v), want %s: %t", tc.by.Sub(due), len(got), got, r.ID, tc.want)
				}
				if f.Matches(&r) != tc.want {
					t.Errorf("RequestFilter.Matches with DueBy due%+dns = %t, want %t", tc.by.Sub(due), !tc.want, tc.want)
				}
			}
		})
	}
	got, err := s.Requests(ctx, pam.RequestFilter{DueBy: due.Add(1)})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range got {
		ids = append(ids, r.ID)
	}
	if d := cmp.Diff([]string{"r1", "r2"}, ids); d != "" {
		t.Errorf("due by due+1ns, any state (-want +got):\n%s", d)
	}
}

// testDuplicatesInTx: a Tx that names one policy, request or message
// twice is refused by every store alike (Tx.Validate: ErrInvalid), and
// nothing of it is written, not even what it names once.
func testDuplicatesInTx(t *testing.T, s pam.Store) {
	commit(t, s, &pam.Tx{Policies: []pam.Policy{policy("p1", 1)}, Requests: []pam.Request{request("r1", "alice", "p1", pam.Pending, 1)},
		Events: []pam.Event{event(pam.EventRequestSubmitted, "alice", "r1")}})
	_, outbox := s.(pam.OutboxStore)
	if outbox {
		commit(t, s, &pam.Tx{Messages: []pam.Message{message("m1", "r1", Epoch)}})
	}
	approved := request("r1", "alice", "p1", pam.Approved, 2)
	cases := map[string]pam.Tx{
		"new policy twice":       {Policies: []pam.Policy{policy("p2", 1), policy("p2", 1)}},
		"policy update twice":    {Policies: []pam.Policy{policy("p1", 2), policy("p2", 1), policy("p1", 2)}},
		"new request twice":      {Requests: []pam.Request{request("r2", "bob", "p1", pam.Pending, 1), request("r2", "bob", "p1", pam.Pending, 1)}},
		"request update twice":   {Requests: []pam.Request{approved, request("r2", "bob", "p1", pam.Pending, 1), approved}},
		"request, two versions":  {Requests: []pam.Request{approved, request("r1", "alice", "p1", pam.Revoked, 3)}},
		"with events and others": {Policies: []pam.Policy{policy("p2", 1)}, Requests: []pam.Request{request("r2", "bob", "p1", pam.Pending, 1), approved, approved}},
	}
	if outbox {
		settled := message("m1", "r1", Epoch)
		settled.State, settled.Version = pam.MessageDelivered, 2
		cases["new message twice"] = pam.Tx{Messages: []pam.Message{message("m2", "r1", Epoch), message("m2", "r1", Epoch)}}
		cases["message settled twice"] = pam.Tx{Requests: []pam.Request{request("r2", "bob", "p1", pam.Pending, 1)}, Messages: []pam.Message{settled, message("m2", "r1", Epoch), settled}}
	}
	for name, tx := range cases {
		t.Run(name, func(t *testing.T) {
			tx.Events = []pam.Event{event(pam.EventRequestSubmitted, "bob", "r2"), event(pam.EventPolicyCreated, "admin", "")}
			if err := tx.Validate(); !errors.Is(err, pam.ErrInvalid) {
				t.Fatalf("Tx.Validate = %v, want ErrInvalid", err)
			}
			if err := s.Commit(ctx, &tx); !errors.Is(err, pam.ErrInvalid) {
				t.Fatalf("Commit = %v, want ErrInvalid", err)
			}
			for _, e := range tx.Events {
				if e.Seq != 0 || e.Hash != "" {
					t.Errorf("a refused commit chained its events: %+v", e)
				}
			}
			if p, err := s.Policy(ctx, "p1"); err != nil || p.Version != 1 {
				t.Errorf("policy p1 after a refused commit: %+v, %v", p, err)
			}
			if _, err := s.Policy(ctx, "p2"); !errors.Is(err, pam.ErrNotFound) {
				t.Errorf("policy p2 written by a refused commit (%v)", err)
			}
			if r, err := s.Request(ctx, "r1"); err != nil || r.Version != 1 || r.State != pam.Pending {
				t.Errorf("request r1 after a refused commit: %+v, %v", r, err)
			}
			if _, err := s.Request(ctx, "r2"); !errors.Is(err, pam.ErrNotFound) {
				t.Errorf("request r2 written by a refused commit (%v)", err)
			}
			if seq := lastSeq(t, s); seq != 1 {
				t.Errorf("a refused commit appended events: last Seq %d, want 1", seq)
			}
			if rev, _ := s.PolicyRevision(ctx); rev != 1 {
				t.Errorf("a refused commit moved PolicyRevision to %d", rev)
			}
			if outbox {
				msgs, err := s.(pam.OutboxStore).Messages(ctx, pam.MessageFilter{})
				if err != nil || len(msgs) != 1 || msgs[0].Version != 1 || msgs[0].State != pam.MessagePending {
					t.Errorf("messages after a refused commit: %+v, %v", msgs, err)
				}
			}
		})
	}
}

// testPolicyRevisionExpected: a write that expects the policy revision
// commits while no policy or catalog was written since, and otherwise is
// refused whole with ErrConflict.
func testPolicyRevisionExpected(t *testing.T, s pam.Store) {
	commit(t, s, &pam.Tx{Policies: []pam.Policy{policy("p1", 1)}})
	rev, err := s.PolicyRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	commit(t, s, &pam.Tx{PolicyRevision: rev, Requests: []pam.Request{request("r1", "alice", "p1", pam.Pending, 1)},
		Events: []pam.Event{event(pam.EventRequestSubmitted, "alice", "r1")}})
	commit(t, s, &pam.Tx{Policies: []pam.Policy{policy("p2", 1)}}) // moves the revision
	mustConflict(t, s, &pam.Tx{PolicyRevision: rev, Requests: []pam.Request{request("r2", "alice", "p1", pam.Pending, 1)},
		Events: []pam.Event{event(pam.EventRequestSubmitted, "alice", "r2")}})
	if _, err := s.Request(ctx, "r2"); !errors.Is(err, pam.ErrNotFound) {
		t.Errorf("a write that expected an old policy revision stored its request (%v)", err)
	}
	cat := &pam.Catalog{Version: 1, Roles: map[string][]string{"R": {"T"}}}
	mustConflict(t, s, &pam.Tx{PolicyRevision: rev, Catalog: cat})
	if c, err := s.Catalog(ctx); err != nil || c.Version != 0 {
		t.Errorf("a catalog write that expected an old policy revision was stored: %+v, %v", c, err)
	}
	now, err := s.PolicyRevision(ctx)
	if err != nil || now != rev+1 {
		t.Fatalf("PolicyRevision = %d, %v, want %d", now, err, rev+1)
	}
	commit(t, s, &pam.Tx{PolicyRevision: now, Catalog: cat})
}
