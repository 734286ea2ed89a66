package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/store/sqlite"
	"github.com/zerostanding/pam/store/storetest"
)

func open(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t testing.TB, _ *clock.Mock) pam.Store {
		return open(t, filepath.Join(t.TempDir(), "pam.db"))
	})
}

func TestReopenKeepsState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pam.db")
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	cat := &pam.Catalog{Version: 1, Roles: map[string][]string{"MailboxAdmin": {"New-MoveRequest"}}}
	tx := &pam.Tx{Catalog: cat, Events: []pam.Event{{Type: pam.EventCatalogSet, Actor: "admin"}}}
	if err := s.Commit(context.Background(), tx); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, path)
	es, err := s.Events(context.Background(), pam.EventFilter{})
	if err != nil || len(es) != 1 || es[0].Actor != "admin" {
		t.Fatalf("after reopening: %+v, %v", es, err)
	}
	if c, err := s.Catalog(context.Background()); err != nil || c.Version != 1 || c.Revision != 1 || len(c.Roles["MailboxAdmin"]) != 1 {
		t.Fatalf("catalog after reopening: %+v, %v", c, err)
	}
	if err := s.IntegrityCheck(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestNewerSchemaIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pam.db")
	open(t, path).Close()
	// Pretend a newer version of the package migrated the file.
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("UPDATE pam_schema SET version = 99"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := sqlite.Open(context.Background(), path); !errors.Is(err, sqlite.ErrSchemaTooNew) {
		t.Fatalf("Open of a newer schema = %v, want ErrSchemaTooNew", err)
	}
}

func TestBadPath(t *testing.T) {
	for _, p := range []string{"", "a?mode=memory", "x#y"} {
		if _, err := sqlite.Open(context.Background(), p); err == nil {
			t.Errorf("Open(%q) succeeded", p)
		}
	}
}

// TestSynchronous: commits are fsync'd (synchronous=FULL, 2) unless
// Options.Synchronous relaxes them (NORMAL, 1); the file is in WAL mode
// either way, and the setting is the opener's, not the file's.
func TestSynchronous(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "pam.db")
	for _, tc := range []struct {
		name string
		open func() (*sqlite.Store, error)
		want string
	}{
		{"Open", func() (*sqlite.Store, error) { return sqlite.Open(ctx, path) }, "2"},
		{"nil options", func() (*sqlite.Store, error) { return sqlite.OpenWith(ctx, path, nil) }, "2"},
		{"zero options", func() (*sqlite.Store, error) { return sqlite.OpenWith(ctx, path, &sqlite.Options{}) }, "2"},
		{"SyncNormal", func() (*sqlite.Store, error) {
			return sqlite.OpenWith(ctx, path, &sqlite.Options{Synchronous: sqlite.SyncNormal})
		}, "1"},
		{"SyncFull after SyncNormal", func() (*sqlite.Store, error) {
			return sqlite.OpenWith(ctx, path, &sqlite.Options{Synchronous: sqlite.SyncFull})
		}, "2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := tc.open()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.Commit(ctx, &pam.Tx{Events: []pam.Event{{Type: pam.EventCatalogSet, Actor: "admin"}}}); err != nil {
				t.Fatal(err)
			}
			for pragma, want := range map[string]string{"synchronous": tc.want, "journal_mode": "wal"} {
				if got, err := s.Pragma(ctx, pragma); err != nil || got != want {
					t.Errorf("PRAGMA %s = %q, %v; want %q", pragma, got, err, want)
				}
			}
		})
	}
	if _, err := sqlite.OpenWith(ctx, path, &sqlite.Options{Synchronous: 7}); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("OpenWith of an unknown Synchronous = %v, want ErrInvalid", err)
	}
}

// BenchmarkStore runs the shared store benchmarks on a file with
// synchronous=FULL, the default, and with NORMAL (Options.Synchronous).
func BenchmarkStore(b *testing.B) {
	for _, sync := range []struct {
		name string
		opts sqlite.Options
	}{{"FULL", sqlite.Options{}}, {"NORMAL", sqlite.Options{Synchronous: sqlite.SyncNormal}}} {
		b.Run(sync.name, func(b *testing.B) {
			storetest.Bench(b, func(t testing.TB, _ *clock.Mock) pam.Store {
				s, err := sqlite.OpenWith(context.Background(), filepath.Join(t.TempDir(), "pam.db"), &sync.opts)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				return s
			})
		})
	}
}

// BenchmarkBaselineCommit is what a Guard's two audit commits are bounded
// by: a bare one-row INSERT committed in WAL mode, durable (FULL) and not
// fsync'd (NORMAL).
func BenchmarkBaselineCommit(b *testing.B) {
	for _, sync := range []string{"FULL", "NORMAL"} {
		b.Run(sync, func(b *testing.B) {
			db, err := sql.Open("sqlite", "file:"+filepath.Join(b.TempDir(), "x.db")+"?_pragma=journal_mode(WAL)&_pragma=synchronous("+sync+")&_txlock=immediate")
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			db.SetMaxOpenConns(1)
			if _, err := db.Exec("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)"); err != nil {
				b.Fatal(err)
			}
			ins, err := db.Prepare("INSERT INTO t (b) VALUES ($1)")
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				tx, err := db.Begin()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := tx.Stmt(ins).Exec("guard.allowed"); err != nil {
					b.Fatal(err)
				}
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestUpgradeChainsExistingEvents: a file written before the hash chain
// existed (schema version 1) gets its events chained by the upgrade, and
// later commits continue the chain.
func TestUpgradeChainsExistingEvents(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pam.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	v1, err := os.ReadFile("migrations/001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{string(v1), `CREATE TABLE pam_schema (version INTEGER NOT NULL)`, `INSERT INTO pam_schema VALUES (1)`} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatal(err)
		}
	}
	for seq := 1; seq <= 250; seq++ {
		_, err := db.Exec(`INSERT INTO pam_events (seq, time, type, actor, request_id, policy_id, task, outcome, detail) VALUES ($1, $2, 'guard.allowed', 'alice', '', 'p1', 'Task', 'granted', '{"n":"1"}')`,
			seq, int64(seq)*1e9)
		if err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	s := open(t, path)
	if res, err := pam.Verify(context.Background(), s, pam.VerifyOptions{}); err != nil || res.Events != 250 {
		t.Fatalf("after the upgrade: Verify = %+v, %v", res, err)
	}
	if c, err := s.Catalog(context.Background()); err != nil || c.Version != 0 {
		t.Fatalf("after the upgrade: Catalog = %+v, %v; want none", c, err)
	}
	tx := &pam.Tx{Catalog: &pam.Catalog{Version: 1}, Events: []pam.Event{{Type: pam.EventCatalogSet, Actor: "admin"}}}
	if err := s.Commit(context.Background(), tx); err != nil {
		t.Fatal(err)
	}
	if tx.Catalog.Revision != 1 {
		t.Fatalf("first catalog after the upgrade at revision %d, want 1", tx.Catalog.Revision)
	}
	if res, err := pam.Verify(context.Background(), s, pam.VerifyOptions{}); err != nil || res.Events != 251 || tx.Events[0].Seq != 251 {
		t.Fatalf("after a commit: Verify = %+v, %v", res, err)
	}
}

// BenchmarkTrail searches and verifies a trail of 1,000,000 events.
func BenchmarkTrail(b *testing.B) {
	storetest.BenchTrail(b, func(t testing.TB, _ *clock.Mock) pam.Store {
		return open(t, filepath.Join(t.TempDir(), "pam.db"))
	}, 1_000_000)
}

// BenchmarkOutbox is the cost of the outbox write in a transition.
func BenchmarkOutbox(b *testing.B) {
	storetest.BenchOutbox(b, func(t testing.TB, _ *clock.Mock) pam.Store {
		return open(t, filepath.Join(t.TempDir(), "pam.db"))
	})
}

func BenchmarkPolicies(b *testing.B) {
	storetest.BenchPolicies(b, func(t testing.TB, _ *clock.Mock) pam.Store {
		return open(t, filepath.Join(t.TempDir(), "pam.db"))
	}, 1000, 10000)
}

// TestFilesAreTheOwnersAlone: the database, its -wal and its -shm are
// created readable and writable by their owner only.
func TestFilesAreTheOwnersAlone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pam.db")
	s := open(t, path)
	if err := s.Commit(context.Background(), &pam.Tx{Events: []pam.Event{{Type: pam.EventCatalogSet, Actor: "admin"}}}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s is %v, want no access for group and others", filepath.Base(name), perm)
		}
	}
}

// TestGrantEndsAcrossManagers: two Managers on one SQLite file; a
// revocation through one ends the fn running on the other within the poll
// interval (a second more, for a loaded machine; the test logs how long).
func TestGrantEndsAcrossManagers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pam.db")
	clk := clock.NewMock()
	clk.Set(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC))
	const poll = 50 * time.Millisecond
	storetest.GrantEndsAcross(t, open(t, path), open(t, path), clk, poll, poll+time.Second, 20)
}

// BenchmarkCommitParallel is Store.Commit of one event from many
// goroutines at once (GOMAXPROCS of them, times 16 in "x16"), with every
// commit fsync'd: what concurrent Guards' audit commits are bounded by.
func BenchmarkCommitParallel(b *testing.B) {
	for _, p := range []int{1, 16} {
		b.Run(fmt.Sprintf("x%d", p), func(b *testing.B) {
			s := open(b, filepath.Join(b.TempDir(), "pam.db"))
			ctx := context.Background()
			b.SetParallelism(p)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					tx := &pam.Tx{Events: []pam.Event{{Time: storetest.Epoch, Type: pam.EventGuardAllowed, Actor: "alice", Task: "Rotate-Key"}}}
					if err := s.Commit(ctx, tx); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// TestUpgradeFillsSearch: requests written before the search and
// deciders columns existed (schema version 6) are found by Search and
// DecidedBy after the upgrade.
func TestUpgradeFillsSearch(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "pam.db")
	s := open(t, path)
	var tx pam.Tx
	for i := range 1500 { // more than one page of the data migration
		r := pam.Request{ID: fmt.Sprintf("req_%04d", i), Requester: "alice", Scope: pam.TaskScope("Drop-Table"), PolicyID: "p1",
			Ticket: fmt.Sprintf("CHG-%d", i), State: pam.Pending, CreatedAt: time.Unix(0, 0).UTC(), PendingUntil: time.Unix(3600, 0).UTC(), Version: 1}
		if i%2 == 1 {
			r.State = pam.Denied
			r.Decisions = []pam.Decision{{Approver: "bob", Verdict: pam.Deny, At: time.Unix(60, 0).UTC()}}
		}
		tx.Requests = append(tx.Requests, r)
	}
	if err := s.Commit(ctx, &tx); err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{`ALTER TABLE pam_requests DROP COLUMN search`, `ALTER TABLE pam_requests DROP COLUMN deciders`, `UPDATE pam_schema SET version = 6`} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	s = open(t, path)
	got, err := s.Requests(ctx, pam.RequestFilter{Search: "chg-1499"})
	if err != nil || len(got) != 1 || got[0].ID != "req_1499" {
		t.Fatalf("Search after the upgrade = %v, %v; want req_1499", got, err)
	}
	got, err = s.Requests(ctx, pam.RequestFilter{DecidedBy: "bob"})
	if err != nil || len(got) != 750 {
		t.Fatalf("DecidedBy after the upgrade: %d requests, %v; want 750", len(got), err)
	}
}
