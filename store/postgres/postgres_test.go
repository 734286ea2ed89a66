package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/store/postgres"
	"github.com/zerostanding/pam/store/storetest"
)

// dsn returns PAM_POSTGRES_DSN, or skips the test when it is unset.
func dsn(t testing.TB) string {
	t.Helper()
	d := os.Getenv("PAM_POSTGRES_DSN")
	if d == "" {
		t.Skip("PAM_POSTGRES_DSN is not set; set it to a PostgreSQL URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run the PostgreSQL tests")
	}
	return d
}

// freshSchema returns the name of a new schema, dropped when the test ends.
func freshSchema(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	schema := "pamtest_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), dsn(t))
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return schema
}

// open returns a Store in schema, closed when the test ends.
func open(t testing.TB, schema string, clk clock.Clock) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), dsn(t), &postgres.Options{Schema: schema, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	dsn(t)
	storetest.Run(t, func(t testing.TB, clk *clock.Mock) pam.Store {
		return open(t, freshSchema(t), clk)
	})
}

func BenchmarkStore(b *testing.B) {
	dsn(b)
	storetest.Bench(b, func(t testing.TB, clk *clock.Mock) pam.Store {
		return open(t, freshSchema(t), clk)
	})
}

// BenchmarkGuardDatabaseClock is the Guard of BenchmarkStore with the
// database clock as the time source, as in production: one more round
// trip for the decision's time.
func BenchmarkGuardDatabaseClock(b *testing.B) {
	s := open(b, freshSchema(b), nil)
	m := storetest.Manager(b, s, clock.New())
	p := storetest.TwoApprovals
	p.ApproverGroups = []pam.ApproverGroup{{Group: "approvers"}}
	if _, err := m.CreatePolicy(storetest.As("admin"), p); err != nil {
		b.Fatal(err)
	}
	r, err := m.Submit(storetest.As("alice"), pam.RequestInput{Scope: p.Scope, Reason: "bench", Duration: 8 * time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := m.Approve(storetest.As("bob"), r.ID, ""); err != nil {
		b.Fatal(err)
	}
	ctx, op := storetest.As("alice"), pam.Op{Task: p.Scope.Name}
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Guard(ctx, op, func(context.Context) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}

// TestConcurrentMigrations starts eight replicas at once on an empty
// schema: the advisory lock lets one migrate and the others find it done.
func TestConcurrentMigrations(t *testing.T) {
	url := dsn(t)
	schema := freshSchema(t)
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			s, err := postgres.Open(context.Background(), url, &postgres.Options{Schema: schema})
			if err == nil {
				_, err = s.PolicyRevision(context.Background())
				s.Close()
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestNewerSchemaIsRefused: a database migrated by a newer version of the
// package is not touched.
func TestNewerSchemaIsRefused(t *testing.T) {
	schema := freshSchema(t)
	open(t, schema, nil)
	conn, err := pgx.Connect(context.Background(), dsn(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), "UPDATE "+pgx.Identifier{schema, "pam_schema"}.Sanitize()+" SET version = 99"); err != nil {
		t.Fatal(err)
	}
	if _, err := postgres.Open(context.Background(), dsn(t), &postgres.Options{Schema: schema}); !errors.Is(err, postgres.ErrSchemaTooNew) {
		t.Fatalf("Open = %v, want ErrSchemaTooNew", err)
	}
}

// TestUpgradeChainsExistingEvents: a schema written before the hash chain
// existed (version 2) gets its events chained by the upgrade, and later
// commits continue the chain from the head the upgrade left.
func TestUpgradeChainsExistingEvents(t *testing.T) {
	url := dsn(t)
	schema := freshSchema(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	stmts := []string{"CREATE SCHEMA " + pgx.Identifier{schema}.Sanitize(), "SET search_path TO " + pgx.Identifier{schema}.Sanitize()}
	for _, f := range []string{"migrations/001_init.sql", "migrations/002_check.sql"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		stmts = append(stmts, string(b))
	}
	stmts = append(stmts, `CREATE TABLE pam_schema (version INTEGER NOT NULL)`, `INSERT INTO pam_schema VALUES (2)`,
		`INSERT INTO pam_events (seq, time, type, actor, request_id, policy_id, task, outcome, detail)
		 SELECT g, g::bigint * 1000000000, 'guard.allowed', 'alice', '', 'p1', 'Task', 'granted', '{"n":"1"}' FROM generate_series(1, 250) g`,
		`UPDATE pam_meta SET last_seq = 250`)
	for _, q := range stmts {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	s := open(t, schema, nil)
	if res, err := pam.Verify(ctx, s, pam.VerifyOptions{}); err != nil || res.Events != 250 {
		t.Fatalf("after the upgrade: Verify = %+v, %v", res, err)
	}
	if c, err := s.Catalog(ctx); err != nil || c.Version != 0 {
		t.Fatalf("after the upgrade: Catalog = %+v, %v; want none", c, err)
	}
	tx := &pam.Tx{Catalog: &pam.Catalog{Version: 1}, Events: []pam.Event{{Type: pam.EventCatalogSet, Actor: "admin"}, {Type: pam.EventCatalogSet, Actor: "admin2"}}}
	if err := s.Commit(ctx, tx); err != nil {
		t.Fatal(err)
	}
	if tx.Catalog.Revision != 1 {
		t.Fatalf("first catalog after the upgrade at revision %d, want 1", tx.Catalog.Revision)
	}
	if res, err := pam.Verify(ctx, s, pam.VerifyOptions{}); err != nil || res.Events != 252 || tx.Events[1].Seq != 252 {
		t.Fatalf("after a commit: Verify = %+v, %v", res, err)
	}
}

// BenchmarkTrail searches and verifies a trail of 1,000,000 events.
func BenchmarkTrail(b *testing.B) {
	schema := freshSchema(b)
	storetest.BenchTrail(b, func(t testing.TB, clk *clock.Mock) pam.Store { return open(t, schema, clk) }, 1_000_000)
}

// BenchmarkBaselineCommit is a bare one-row INSERT committed over the
// same pool: the floor under each of a Guard's two audit commits.
func BenchmarkBaselineCommit(b *testing.B) {
	schema := freshSchema(b)
	open(b, schema, nil) // creates the schema
	pool, err := pgxpool.New(context.Background(), dsn(b))
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	table := pgx.Identifier{schema, "baseline"}.Sanitize()
	if _, err := pool.Exec(context.Background(), "CREATE TABLE "+table+" (id bigserial PRIMARY KEY, v text)"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := pool.Exec(context.Background(), "INSERT INTO "+table+" (v) VALUES ($1)", "x"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestMalformedEventsAreTampering stores events that do not decode
// strictly, writing to the tables around the store, and checks that each
// is reported as tampering rather than breaking the reads: see
// storetest.Malformed. PostgreSQL keeps every column's type, so only a
// column's content can be malformed.
func TestMalformedEventsAreTampering(t *testing.T) {
	url := dsn(t)
	storetest.Malformed(t, func(t testing.TB, clk *clock.Mock) (pam.Store, storetest.Exec) {
		schema := freshSchema(t)
		s := open(t, schema, clk)
		cfg, err := pgxpool.ParseConfig(url)
		if err != nil {
			t.Fatal(err)
		}
		cfg.ConnConfig.RuntimeParams["search_path"] = schema
		pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		return s, func(t testing.TB, q string, args ...any) {
			t.Helper()
			if _, err := pool.Exec(context.Background(), q, args...); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}, storetest.SQLMalformedRows)
}

// TestGroupCommit: Commits from many goroutines at once are written
// together, several to a transaction of one round trip, and each is
// still all or nothing: one that conflicts is taken out of its group,
// which is sent again without it.
func TestGroupCommit(t *testing.T) {
	dsn(t)
	s := open(t, freshSchema(t), nil)
	storetest.GroupCommit(t, s, s)
}

// TestGroupCommitContext: a Commit whose ctx ends while it is queued
// returns ctx.Err() and is not written; a group whose every caller has
// left is cut short, and not written either; the Commits queued behind
// it are written once the writer is free. After Close, Commit fails.
func TestGroupCommitContext(t *testing.T) {
	ctx := context.Background()
	schema := freshSchema(t)
	s := open(t, schema, nil)
	ev := func(actor string) *pam.Tx {
		return &pam.Tx{Events: []pam.Event{{Time: storetest.Epoch, Type: pam.EventGuardAllowed, Actor: actor, Task: "Rotate-Key", Outcome: "ok"}}}
	}
	release, err := s.HoldWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	actx, cancelA := context.WithCancel(ctx)
	a := make(chan error, 1)
	go func() { a <- s.Commit(actx, ev("a")) }()
	waitFor(t, func() bool { return s.Taken() == 1 })
	// a's batch is at the server, waiting for the lock that HoldWriter
	// holds: a lock not granted to the backend that holds the tuple
	// lock of the schema's counters row.
	conn, err := pgx.Connect(ctx, dsn(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	waitFor(t, func() bool {
		var n int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_locks w WHERE NOT w.granted AND w.pid IN (
			SELECT l.pid FROM pg_locks l JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace ns ON ns.oid = c.relnamespace
			WHERE l.locktype = 'tuple' AND ns.nspname = $1 AND c.relname = 'pam_meta')`, schema).Scan(&n)
		return err == nil && n > 0
	})
	b := make(chan error, 1)
	go func() { b <- s.Commit(ctx, ev("b")) }()
	waitFor(t, func() bool { return s.Queued() == 1 })
	cctx, cancelC := context.WithCancel(ctx)
	c := make(chan error, 1)
	go func() { c <- s.Commit(cctx, ev("c")) }()
	waitFor(t, func() bool { return s.Queued() == 2 })
	cancelC()
	if err := <-c; !errors.Is(err, context.Canceled) {
		t.Fatalf("the Commit canceled while queued = %v, want context.Canceled", err)
	}
	// a's group waits for the row lock; its only caller leaves, and the
	// server cancels it: it is not written once the lock is free.
	cancelA()
	if err := <-a; !errors.Is(err, context.Canceled) {
		t.Fatalf("the Commit canceled while written = %v, want context.Canceled", err)
	}
	release()
	if err := <-b; err != nil {
		t.Fatal(err)
	}
	events, err := s.Events(ctx, pam.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0].Actor != "b" || events[0].Seq != 1 {
		t.Errorf("events stored: %+v; want b's alone, as 1", events)
	}

	s.Close()
	if err := s.Commit(ctx, ev("late")); err == nil {
		t.Error("Commit after Close succeeded")
	}
}

// waitFor polls cond until it holds, for up to 10 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}
