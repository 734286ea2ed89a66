// Package sqlite is the embedded pam.Store: one file, pure Go
// (modernc.org/sqlite, no cgo). It passes store/storetest.
//
// One connection writes (transactions begin IMMEDIATE, so writers queue
// on busy_timeout instead of failing on a lock upgrade) while several
// read. The schema is created and migrated from the SQL files embedded in
// the package, and its version recorded; a file written by a newer
// version of this package is refused with ErrSchemaTooNew.
//
// # Group commit
//
// Commits that arrive while another is being written are written
// together, in the next transaction: one goroutine, started by Open and
// stopped by Close, takes every Tx queued (up to 128) and writes them in
// one BEGIN IMMEDIATE ... COMMIT, so that with synchronous=FULL they
// share one fsync. It waits for no one: a lone Commit is written at once,
// as its own transaction, and costs what it did before. Each Tx of a
// group is written inside a SAVEPOINT of its own and checked against the
// state the Txs before it in the group left: one that fails (ErrConflict,
// ErrNotFound for a run not open, any error) is rolled back to its
// savepoint and its caller alone gets the error; the others go on. The
// events of each Tx are chained from the head the one before it left, so
// sequence numbers and the hash chain run on across the group without a
// gap. Every caller gets its result once the transaction has ended, and
// Commit sets the fields of its Tx only then: if the COMMIT fails, every
// Tx of the group that had been written gets its error. A caller whose
// context ends while its Tx is queued gets ctx.Err(), and the Tx is not
// written; once the committer has begun writing it, the caller gets the
// transaction's outcome.
//
// # Durability
//
// The file is in WAL mode with synchronous=FULL: the WAL is fsync'd at
// every commit (one per group, see above), so a commit that returned
// survives a crash of the process, of the operating system or of the
// machine. A covered Guard
// waits for the fsync of its start's commit (and of its end's too, with
// pam.Options.SyncRunEnds).
//
// Options.Synchronous = SyncNormal (OpenWith) opts into
// synchronous=NORMAL: the WAL is fsync'd only when a checkpoint copies it
// into the database, which SQLite does once the WAL passes 1,000 pages,
// so a commit waits for no fsync. A crash of
// the process still loses nothing: a commit that returned is in the WAL,
// which the operating system holds. A crash of the operating system or a
// power loss can lose every commit since the last checkpoint, and with
// them what they recorded: requests, decisions, policy changes, outbox
// messages, and the start events of Guard runs. A run that was allowed
// and whose fn ran can be left with neither its start nor its end in the
// trail, and no open run for Sweep to end. (A run whose start was kept
// and whose end was lost is ended by Sweep, as after a crash of the
// process.)
//
// The loss is a clean cut: SQLite's recovery keeps the commits that
// precede the first one not wholly on disk, so the file is consistent,
// sequence numbers have no gap and the hash chain is intact up to its new
// head: pam.Verify of the file alone passes. Only a record kept outside
// the file shows the cut: a signed pam.Checkpoint past the new head makes
// Verify report pam.ReasonTruncated. A required audit sink that syncs
// (pam.SinkConfig.Required, sinks.File) held each run's start event
// before fn ran, so it keeps those the store lost; it then skips the
// store's new events under the same sequence numbers, and its chain
// breaks at the first event after them.
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
	g     committer
}

var (
	_ pam.OutboxStore    = (*Store)(nil)
	_ pam.GroupCommitter = (*Store)(nil)
)

// Readers is the size of the read connection pool.
const Readers = 4

// dialect is how the shared reads run on SQLite: prepared by the store,
// each read of requests naming its index (SQLite has no statistics to
// choose by).
var dialect = sqlstore.Dialect{Prepare: true, IndexedBy: true}

// Options configure a Store. The zero value is the default: every commit
// fsync'd.
type Options struct {
	// Synchronous is when commits reach the disk. Default: SyncFull.
	Synchronous Sync
}

// Sync is SQLite's synchronous setting, in WAL mode.
type Sync int

const (
	// SyncFull fsyncs the WAL at every commit: a commit that returned
	// survives any crash. The default.
	SyncFull Sync = iota
	// SyncNormal fsyncs the WAL only at checkpoints: a commit that
	// returned survives a crash of the process, but an operating system
	// crash or a power loss can lose the commits since the last
	// checkpoint (see Durability in the package documentation).
	SyncNormal
)

// pragma returns the value of PRAGMA synchronous for s.
func (s Sync) pragma() (string, error) {
	switch s {
	case SyncFull:
		return "FULL", nil
	case SyncNormal:
		return "NORMAL", nil
	}
	return "", fmt.Errorf("sqlite: %w: unknown Synchronous %d", pam.ErrInvalid, s)
}

// Open opens (creating if needed) the database file at path and migrates
// its schema, with the default options.
func Open(ctx context.Context, path string) (*Store, error) {
	return open(ctx, path, nil, dialect)
}

// OpenWith is Open with options; nil opts are the defaults.
func OpenWith(ctx context.Context, path string, opts *Options) (*Store, error) {
	return open(ctx, path, opts, dialect)
}

func open(ctx context.Context, path string, opts *Options, d sqlstore.Dialect) (*Store, error) {
	if opts == nil {
		opts = &Options{}
	}
	sync, err := opts.Synchronous.pragma()
	if err != nil {
		return nil, err
	}
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
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(" + sync + ")&_pragma=busy_timeout(10000)&_pragma=foreign_keys(ON)"
	w, err := sql.Open("sqlite", dsn+"&_txlock=immediate")
	if err != nil {
		return nil, err
	}
	w.SetMaxOpenConns(1)
	files, _ := fs.Sub(migrations, "migrations")
	if _, err := sqlstore.Migrate(ctx, w, files, "", map[int]func(context.Context, *sql.Tx) error{2: sqlstore.ChainExisting, 7: sqlstore.FillSearch}); err != nil {
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
	s.startCommitter()
	if err := s.prepare(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	return s, nil
}

// Close closes the database, once the Commits under way are written.
// Commit returns an error from then on.
func (s *Store) Close() error {
	s.stopCommitter()
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
