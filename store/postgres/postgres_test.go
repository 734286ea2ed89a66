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
	r, err := m.Submit(storetest.As("alice"), pam.NewRequest{Scope: p.Scope, Reason: "bench", Duration: 8 * time.Hour})
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
	schema := freshSchema(t)
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			s, err := postgres.Open(context.Background(), dsn(t), &postgres.Options{Schema: schema})
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
