package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"

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
	tx := &pam.Tx{Events: []pam.Event{{Type: pam.EventCatalogSet, Actor: "admin"}}}
	if err := s.Commit(context.Background(), tx); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, path)
	es, err := s.Events(context.Background(), pam.EventFilter{})
	if err != nil || len(es) != 1 || es[0].Actor != "admin" {
		t.Fatalf("after reopening: %+v, %v", es, err)
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

func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(t testing.TB, _ *clock.Mock) pam.Store {
		return open(t, filepath.Join(t.TempDir(), "pam.db"))
	})
}
