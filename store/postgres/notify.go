package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"

	"github.com/zerostanding/pam"
)

// changesChannel is the NOTIFY channel of changes that can end a grant. It
// is per database, not per schema: a store in another schema of the same
// database only causes an extra check.
const changesChannel = "pam_changes"

// sqlNotify is queued in a Commit's batch, so the notification is sent
// when, and only if, the commit does.
const sqlNotify = `SELECT pg_notify('` + changesChannel + `', '')`

// notifies reports whether tx can end a grant or move its end: it writes
// a policy or the catalog, closes a request, or records an extension
// granted (pam.EventRequestExtended).
func notifies(tx *pam.Tx) bool {
	if tx.Catalog != nil || len(tx.Policies) > 0 {
		return true
	}
	for i := range tx.Requests {
		if tx.Requests[i].State.Terminal() {
			return true
		}
	}
	for i := range tx.Events {
		if tx.Events[i].Type == pam.EventRequestExtended {
			return true
		}
	}
	return false
}

// Changes implements pam.ChangeNotifier with LISTEN on a connection of
// its own, opened with the pool's settings but outside it (a listener
// must not take one of the pool's connections for as long as it
// listens), and closed when the listening ends: when ctx is done, the
// connection fails, or Close. Every Commit that writes a policy or the
// catalog, closes a request or extends a grant, sends a NOTIFY in its own transaction,
// which PostgreSQL delivers to every listener when it commits.
func (s *Store) Changes(ctx context.Context) (<-chan struct{}, error) {
	if s.listening.Err() != nil {
		return nil, errors.New("postgres: listen: the store is closed")
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.listening, cancel)
	cfg := s.pool.Config().ConnConfig
	// Waiting for a notification runs no query that a cancel request
	// (CancelOnServer) could end: the wait is abandoned at once.
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: c.Conn()}
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		if _, err = conn.Exec(ctx, "LISTEN "+changesChannel); err != nil {
			closeConn(conn)
		}
	}
	if err != nil {
		stop()
		cancel()
		return nil, fmt.Errorf("postgres: listen: %w", err)
	}
	ch := make(chan struct{}, 1)
	s.listeners.Add(1)
	go func() {
		defer s.listeners.Done()
		defer close(ch)
		defer cancel()
		defer stop()
		defer closeConn(conn)
		for {
			if _, err := conn.WaitForNotification(ctx); err != nil {
				return
			}
			select {
			case ch <- struct{}{}:
			default: // one pending value stands for all
			}
		}
	}()
	return ch, nil
}

// closeConn closes a listening connection, giving the server a second to
// hear it.
func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c.Close(ctx)
}
