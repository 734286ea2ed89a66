// Package sqlite is the embedded pam.Store: one file, pure Go
// (modernc.org/sqlite, no cgo). It passes store/storetest.
//
// The file is in WAL mode with synchronous=FULL, so a commit that returned
// survives a crash of the process or the machine. One connection writes
// (transactions begin IMMEDIATE, so writers queue on busy_timeout instead
// of failing on a lock upgrade) while several read. The schema is created
// and migrated from the SQL files embedded in the package, and its
// version recorded; a file written by a newer version of this package is
// refused with ErrSchemaTooNew.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/internal/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// ErrSchemaTooNew: the file was written by a newer version of this
// package.
var ErrSchemaTooNew = sqlstore.ErrSchemaTooNew

// Store is a pam.Store in one SQLite file. Close it when done.
type Store struct {
	*sqlstore.Store
	w, r  *sql.DB
	stmts map[string]*sql.Stmt // Commit's, prepared on w
}

var _ pam.OutboxStore = (*Store)(nil)

// Readers is the size of the read connection pool.
const Readers = 4

// dialect is how the shared reads run on SQLite: prepared by the store,
// each read of requests naming its index (SQLite has no statistics to
// choose by).
var dialect = sqlstore.Dialect{Prepare: true, IndexedBy: true}

// Open opens (creating if needed) the database file at path and migrates
// its schema.
func Open(ctx context.Context, path string) (*Store, error) {
	return open(ctx, path, dialect)
}

func open(ctx context.Context, path string, d sqlstore.Dialect) (*Store, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("sqlite: invalid path %q", path)
	}
	// A new database is readable by its owner alone: it holds the audit
	// trail and who may do what. SQLite gives the -wal and -shm files
	// the database file's permissions.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	f.Close()
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(ON)"
	w, err := sql.Open("sqlite", dsn+"&_txlock=immediate")
	if err != nil {
		return nil, err
	}
	w.SetMaxOpenConns(1)
	files, _ := fs.Sub(migrations, "migrations")
	if _, err := sqlstore.Migrate(ctx, w, files, "", map[int]func(context.Context, *sql.Tx) error{2: sqlstore.ChainExisting}); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", dsn+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, err
	}
	r.SetMaxOpenConns(Readers)
	s := &Store{Store: sqlstore.New(w, r, d), w: w, r: r}
	if err := s.prepare(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error {
	errs := []error{s.Store.Close()}
	for _, st := range s.stmts {
		errs = append(errs, st.Close())
	}
	return errors.Join(append(errs, s.r.Close(), s.w.Close())...)
}

// IntegrityCheck runs PRAGMA integrity_check and returns its complaints.
func (s *Store) IntegrityCheck(ctx context.Context) error {
	rows, err := s.w.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return err
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return err
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(problems) > 0 {
		return fmt.Errorf("sqlite: integrity check: %s", strings.Join(problems, "; "))
	}
	return nil
}
