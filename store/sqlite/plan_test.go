package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/internal/sqlstore"
	"github.com/zerostanding/pam/store/sqlite"
	"github.com/zerostanding/pam/store/storetest"
)

// TestPlans reads SQLite's plan of each hot read, as the store builds it,
// and checks that its index serves it: in a file without statistics, as
// every file is unless someone runs ANALYZE, and after ANALYZE of a file
// where one policy has thousands of approved requests and one requester
// thousands of grants on other policies.
func TestPlans(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pam.db")
	open(t, path)
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)

	type plan struct {
		name  string
		query string
		args  []any
		want  string // the plan's line that reads the table
	}
	var plans []plan
	requests := func(name string, f pam.RequestFilter, want string) {
		q, args := sqlstore.RequestsQuery(sqlite.Dialect, f)
		plans = append(plans, plan{name, q, args, want})
	}
	events := func(name string, f pam.EventFilter, want string) {
		q, args := sqlstore.EventsQuery(f)
		plans = append(plans, plan{name, q, args, want})
	}
	for _, ids := range [][]string{{"move"}, {"move", "other"}} {
		q, args := sqlstore.GrantsQuery(sqlite.Dialect, "alice", ids)
		plans = append(plans, plan{fmt.Sprintf("Grants of %d policies", len(ids)), q, args,
			"SEARCH pam_requests USING INDEX pam_requests_grants (requester=? AND policy_id=?)"})
	}
	byRequester := "SEARCH pam_requests USING INDEX pam_requests_requester (requester=? AND id>?)"
	requests("a requester's pending requests (MaxPending)", pam.RequestFilter{Requester: "alice", States: []pam.State{pam.Pending}}, byRequester)
	requests("a requester's requests of a policy", pam.RequestFilter{Requester: "alice", PolicyIDs: []string{"move"}, Limit: 100}, byRequester)
	requests("a requester's newest requests (the page)", pam.RequestFilter{Requester: "alice", Newest: true, Limit: 50},
		"SEARCH pam_requests USING INDEX pam_requests_requester (requester=?)")
	requests("a requester's requests older than a cursor", pam.RequestFilter{Requester: "alice", Newest: true, After: "req_1", Limit: 50},
		"SEARCH pam_requests USING INDEX pam_requests_requester (requester=? AND id<?)")
	requests("due requests (Sweep)", pam.RequestFilter{States: []pam.State{pam.Pending, pam.Approved}, DueBy: storetest.Epoch},
		"SEARCH pam_requests USING INDEX pam_requests_due (due<?)")
	requests("approved requests of policies (Apply)", pam.RequestFilter{PolicyIDs: []string{"move", "other"}, States: []pam.State{pam.Approved}},
		"SEARCH pam_requests USING INDEX pam_requests_policy (policy_id=? AND state=?)")
	newest := func(f pam.EventFilter) pam.EventFilter { f.Descending, f.Limit = true, 100; return f }
	events("events of an actor", newest(pam.EventFilter{Actor: "alice"}), "SEARCH pam_events USING INDEX pam_events_actor (actor=? AND seq>?)")
	events("events of a task", newest(pam.EventFilter{Task: "New-MoveRequest"}), "SEARCH pam_events USING INDEX pam_events_task (task=? AND seq>?)")
	events("events of a request", newest(pam.EventFilter{RequestID: "req_1"}), "SEARCH pam_events USING INDEX pam_events_request (request_id=? AND seq>?)")
	events("events of a policy", newest(pam.EventFilter{PolicyID: "move"}), "SEARCH pam_events USING INDEX pam_events_policy (policy_id=? AND seq>?)")
	events("events of a run", pam.EventFilter{Run: "run_1"}, "SEARCH pam_events USING INDEX pam_events_run (run=? AND seq>?)")
	events("events of an outcome", newest(pam.EventFilter{Outcome: "panic"}), "SEARCH pam_events USING INDEX pam_events_outcome (outcome=? AND seq>?)")
	events("events of a type", newest(pam.EventFilter{Types: []pam.EventType{pam.EventPolicyUpdated}}), "SEARCH pam_events USING INDEX pam_events_type (type=? AND seq>?)")

	check := func(t *testing.T) {
		for _, p := range plans {
			got := queryPlan(t, db, p.query, p.args)
			t.Logf("%s: %s\n\t%s", p.name, p.query, got)
			if !strings.Contains(got, p.want) || strings.Contains(got, "SCAN ") {
				t.Errorf("%s: the plan of\n\t%s\nis\n\t%s\nwant\n\t%s", p.name, p.query, got, p.want)
			}
		}
	}
	t.Run("without statistics", check)

	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5000 {
		for _, r := range [][]any{
			{fmt.Sprint("other", i), fmt.Sprint("user", i), "move", "approved", i},
			{fmt.Sprint("own", i), "alice", fmt.Sprint("p", i), "approved", i},
			{fmt.Sprint("old", i), fmt.Sprint("user", i), "move", "expired", nil},
		} {
			if _, err := tx.Exec(`INSERT INTO pam_requests (id, requester, policy_id, state, due, version, data) VALUES ($1, $2, $3, $4, $5, 1, '{}')`, r...); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("ANALYZE"); err != nil {
		t.Fatal(err)
	}
	t.Run("after ANALYZE", check)
}

// queryPlan returns the lines of EXPLAIN QUERY PLAN of q, joined by "; ".
func queryPlan(t *testing.T, db *sql.DB, q string, args []any) string {
	t.Helper()
	rows, err := db.Query("EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		t.Fatalf("EXPLAIN QUERY PLAN %s: %v", q, err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "; ")
}

// BenchmarkGuardGrants is a covered Guard through a Manager, alice's one
// grant active, while the store holds n approved requests of which it
// must read only hers: others, the policy's grants of n-1 other
// requesters; own, alice's grants of n-1 other policies. Each runs with
// the store's reads (pinned: they name their index) and, as baseline,
// with reads that leave the index to SQLite's planner, as they did
// before (unpinned); on a file with synchronous=FULL, the default, and
// NORMAL, where no fsync hides the reads' cost.
func BenchmarkGuardGrants(b *testing.B) {
	for _, layout := range []string{"others", "own"} {
		for _, n := range []int{10, 10_000} {
			for _, sync := range []struct {
				name string
				opts sqlite.Options
			}{{"FULL", sqlite.Options{}}, {"NORMAL", sqlite.Options{Synchronous: sqlite.SyncNormal}}} {
				for _, reads := range []struct {
					name string
					open func(context.Context, string, *sqlite.Options) (*sqlite.Store, error)
				}{{"pinned", sqlite.OpenWith}, {"unpinned", sqlite.OpenUnpinned}} {
					b.Run(fmt.Sprintf("%s/grants=%d/%s/%s", layout, n, sync.name, reads.name), func(b *testing.B) {
						s, err := reads.open(context.Background(), filepath.Join(b.TempDir(), "pam.db"), &sync.opts)
						if err != nil {
							b.Fatal(err)
						}
						defer s.Close()
						benchGuardGrants(b, s, layout, n)
					})
				}
			}
		}
	}
}

func benchGuardGrants(b *testing.B, s *sqlite.Store, layout string, n int) {
	clk := clock.NewMock()
	clk.Set(storetest.Epoch)
	m := storetest.Manager(b, s, clk)
	p := storetest.TwoApprovals
	p.ApproverGroups = []pam.ApproverGroup{{Group: "approvers"}}
	if _, err := m.CreatePolicy(storetest.As("admin"), p); err != nil {
		b.Fatal(err)
	}
	op := pam.Op{Task: "New-MoveRequest"}
	r, err := m.Submit(storetest.As("alice"), pam.RequestInput{Scope: pam.TaskScope(op.Task), Reason: "bench", Duration: 8 * time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	if r, err = m.Approve(storetest.As("bob"), r.ID, ""); err != nil {
		b.Fatal(err)
	}
	tx := &pam.Tx{}
	for i := 1; i < n; i++ {
		c := r
		c.ID, c.Version = fmt.Sprintf("req_bench_%05d", i), 1
		if layout == "others" {
			c.Requester = fmt.Sprint("user", i)
		} else {
			c.PolicyID = fmt.Sprint("other", i)
		}
		tx.Requests = append(tx.Requests, c)
	}
	if err := s.Commit(context.Background(), tx); err != nil {
		b.Fatal(err)
	}
	ctx := storetest.As("alice")
	nop := func(context.Context) error { return nil }
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Guard(ctx, op, nop); err != nil {
			b.Fatal(err)
		}
	}
}
