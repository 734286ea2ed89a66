// Package postgres is the pam.Store for many replicas of a host sharing one
// PostgreSQL database (github.com/jackc/pgx/v5). It passes
// store/storetest.
//
// Every transaction takes the row lock of one counters row first, so
// commits from all replicas are serialised: audit sequence numbers are
// gapless and ordered across replicas, and every compare-and-swap on a
// version sees the latest committed state. Requests are stored as given, their
// decisions in the request's data; the rules of a request's contents are
// the engine's. Guard reads the policy revision and the actor's grants
// from the database on every call, so a policy change or a revocation
// through any replica is seen by every replica's next Guard.
//
// # Group commit
//
// Commits that arrive while another is being written are written
// together: one goroutine per Store, started by Open or New and stopped
// by Close, takes every Tx queued (up to 128) and sends them as one pgx
// batch, which PostgreSQL runs as one implicit transaction — one round
// trip, one lock of the counters row, one WAL flush for the group. It
// waits for no one: a lone Commit is sent at once. Each Tx's checks run
// against the state the Txs before it in the batch left. A Tx that fails
// on its own (ErrConflict, ErrNotFound for a run not open, a duplicate
// or invalid value) aborts the batch; the group is then sent again
// without it, and its caller alone gets the error. Any other error (the
// connection lost, say) is every caller's. The events of the group are
// chained in the database from the head it holds under the lock, so
// sequence numbers and the hash chain run on across groups and replicas
// without a gap. A caller whose context ends while its Tx is queued gets
// ctx.Err(), and the Tx is not sent; a group is canceled only when every
// caller in it has left, and each of them then gets ctx.Err() with the
// outcome unknown (as with any lost reply).
//
// The Store is a pam.TimeSource: decisions are made on the database
// server's clock (SELECT now()), so replicas whose own clocks drift still
// decide expiries identically. Tests set Options.Clock to a fake clock
// instead.
//
// The schema is created and migrated from embedded SQL files under an
// advisory lock, so replicas starting at once do not race, and its
// version is recorded; a database migrated by a newer version of this
// package is refused with ErrSchemaTooNew.
package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/internal/groupcommit"
	"github.com/zerostanding/pam/internal/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// ErrSchemaTooNew: the database was migrated by a newer version of this
// package.
var ErrSchemaTooNew = sqlstore.ErrSchemaTooNew

// migrationLock keys the advisory lock migrations hold.
const migrationLock = `SELECT pg_advisory_xact_lock(1885433197)` // "pams" in ASCII

// Options configure a Store. The zero value is usable.
type Options struct {
	// Schema, with Open, puts the tables in this schema (created if
	// missing) by setting the connections' search_path. With New the
	// host's pool decides.
	Schema string
	// Clock, when set, replaces the database clock as the store's time
	// source: tests pass a fake clock.
	Clock clock.Clock
}

// Store is a pam.Store in PostgreSQL.
type Store struct {
	*sqlstore.Store
	db    *sql.DB
	pool  *pgxpool.Pool
	owned bool // the Store opened the pool and closes it
	clock clock.Clock
	g     groupcommit.Queue
	txs   atomic.Int64 // transactions committed, for the tests

	// Listeners (Changes) end with Close, before the pool closes.
	listening  context.Context
	stopListen context.CancelFunc
	listeners  sync.WaitGroup
}

var (
	_ pam.OutboxStore    = (*Store)(nil)
	_ pam.TimeSource     = (*Store)(nil)
	_ pam.ChangeNotifier = (*Store)(nil)
	_ pam.GuardReader    = (*Store)(nil)
	_ pam.GroupCommitter = (*Store)(nil)
)

// Open connects to the database at dsn (a PostgreSQL URL or key=value
// string), migrates the schema and returns the Store. Close closes the
// pool.
func Open(ctx context.Context, dsn string, opts *Options) (*Store, error) {
	if opts == nil {
		opts = &Options{}
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if opts.Schema != "" {
		cfg.ConnConfig.RuntimeParams["search_path"] = opts.Schema
	}
	cfg.ConnConfig.BuildContextWatcherHandler = CancelOnServer
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if opts.Schema != "" {
		if err := createSchema(ctx, pool, opts.Schema); err != nil {
			pool.Close()
			return nil, err
		}
	}
	s, err := New(ctx, pool, opts)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s.owned = true
	return s, nil
}

func createSchema(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, migrationLock); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize())
		return err
	})
}

// New returns a Store over the host's pool, migrating the schema first.
// Close does not close the pool. Give the pool CancelOnServer as its
// connections' context watcher, as Open does.
func New(ctx context.Context, pool *pgxpool.Pool, opts *Options) (*Store, error) {
	if opts == nil {
		opts = &Options{}
	}
	db := stdlib.OpenDBFromPool(pool)
	files, _ := fs.Sub(migrations, "migrations")
	if _, err := sqlstore.Migrate(ctx, db, files, migrationLock, map[int]func(context.Context, *sql.Tx) error{3: chainExisting, 8: sqlstore.FillSearch}); err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	st := &Store{Store: sqlstore.New(db, db, dialect), db: db, pool: pool, clock: opts.Clock}
	st.listening, st.stopListen = context.WithCancel(context.Background())
	st.g.Start("postgres", maxGroup, st.writeGroup)
	return st, nil
}

// chainExisting chains the events stored before the hash chain existed
// and moves the head kept in pam_meta to the last event.
func chainExisting(ctx context.Context, t *sql.Tx) error {
	if err := sqlstore.ChainExisting(ctx, t); err != nil {
		return err
	}
	_, err := t.ExecContext(ctx, `UPDATE pam_meta SET (prev_hash, head_hash) = (SELECT prev_hash, hash FROM pam_events ORDER BY seq DESC LIMIT 1)
		WHERE id = 1 AND EXISTS (SELECT 1 FROM pam_events)`)
	return err
}

// Now implements pam.TimeSource: the database server's time, or
// Options.Clock's.
func (s *Store) Now(ctx context.Context) (time.Time, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	if s.clock != nil {
		return s.clock.Now(), nil
	}
	var t time.Time
	if err := s.pool.QueryRow(ctx, "SELECT now()").Scan(&t); err != nil {
		return time.Time{}, err
	}
	return t, nil
}

// Close releases the Store's connections (and the pool, if Open made it).
func (s *Store) Close() error {
	s.g.Close()
	s.stopListen()
	s.listeners.Wait()
	err := errors.Join(s.Store.Close(), s.db.Close())
	if s.owned {
		s.pool.Close()
	}
	return err
}

func pgCode(err error) string {
	var e *pgconn.PgError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// dialect: the Store uses sqlstore for reads, migrations and claiming
// outbox messages, and commits with its own batch (commit.go). pgx caches
// prepared statements itself. Claims skip rows another replica is
// claiming, so replicas take different messages.
var dialect = sqlstore.Dialect{SkipLocked: " FOR UPDATE SKIP LOCKED"}

// CancelOnServer is the context watcher that Open gives its connections,
// and that a pool handed to New should have
// (pgconn.Config.BuildContextWatcherHandler): a query whose ctx ends is
// canceled on the server with a cancel request, then abandoned by the
// client if the server has not answered within 5 seconds. pgx's default
// only abandons it: the server would go on, and a commit cut short
// while it waits for the counters row's lock (see Commit) would still
// be written once the lock is free.
func CancelOnServer(c *pgconn.PgConn) ctxwatch.Handler {
	return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: 5 * time.Second}
}
