package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/internal/groupcommit"
	"github.com/zerostanding/pam/internal/sqlstore"
)

// Commit's fixed statements, prepared on the writer when the store opens.
const (
	sqlHead           = `SELECT seq, hash FROM pam_events ORDER BY seq DESC LIMIT 1`
	sqlBumpRevision   = `UPDATE pam_meta SET policy_revision = policy_revision + $1 WHERE id = 1 RETURNING policy_revision`
	sqlRequestVersion = `SELECT version FROM pam_requests WHERE id = $1`
	sqlInsertPolicy   = `INSERT INTO pam_policies (id, version, revision, deleted, data) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING`
	sqlUpdatePolicy   = `UPDATE pam_policies SET version = $1, revision = $2, deleted = $3, data = $4 WHERE id = $5 AND version = $6`

	// Each Tx of a group is written inside a savepoint (group.go).
	sqlSavepoint  = `SAVEPOINT pam_tx`
	sqlRollbackTo = `ROLLBACK TO pam_tx`
	sqlRelease    = `RELEASE pam_tx`
)

// prepare prepares Commit's statements. Statements prepared later would
// wait for the writer connection that Commit's transaction holds, so
// those that are not prepared here run unprepared.
func (s *Store) prepare(ctx context.Context) error {
	s.stmts = map[string]*sql.Stmt{}
	for _, q := range []string{sqlHead, sqlSavepoint, sqlRollbackTo, sqlRelease,
		sqlBumpRevision, sqlRequestVersion, sqlInsertPolicy, sqlUpdatePolicy,
		sqlstore.SQLInsertRequest, sqlstore.SQLUpdateRequest, sqlstore.SQLInsertMessage, sqlstore.SQLUpdateMessage,
		sqlstore.SQLInsertRun, sqlstore.SQLDeleteRun, eventInserts[1], eventInserts[2]} {
		st, err := s.w.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", q, err)
		}
		s.stmts[q] = st
	}
	return nil
}

func (s *Store) exec(ctx context.Context, t *sql.Tx, q string, args ...any) (sql.Result, error) {
	if st := s.stmts[q]; st != nil {
		return t.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return t.ExecContext(ctx, q, args...)
}

func (s *Store) queryRow(ctx context.Context, t *sql.Tx, q string, args ...any) *sql.Row {
	if st := s.stmts[q]; st != nil {
		return t.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return t.QueryRowContext(ctx, q, args...)
}

// writeTx writes c.Tx in t, chaining its events from head, and returns
// the trail's new head. The transaction begins IMMEDIATE on the one
// writer connection, so it holds the database's write lock from its
// first statement: sequence numbers continue from the last stored event
// without gaps, and every version check reads the latest state, that
// of the Txs written before this one in the same transaction included.
// The checks are compare-and-swap writes all the same (UPDATE ...
// WHERE version = $prev).
func (s *Store) writeTx(ctx context.Context, t *sql.Tx, c *groupcommit.Commit, head pam.ChainHead) (pam.ChainHead, error) {
	tx := c.Tx
	head, err := head.Chain(c.Events, c.Digests)
	if err != nil {
		return head, err
	}
	// The catalog and the policies take consecutive revisions from
	// pam_meta, the catalog first.
	revs := int64(len(tx.Policies))
	if tx.Catalog != nil {
		revs++
	}
	if tx.PolicyRevision > 0 {
		var rev int64
		if err := s.queryRow(ctx, t, `SELECT policy_revision FROM pam_meta WHERE id = 1`).Scan(&rev); err != nil {
			return head, err
		}
		if rev != tx.PolicyRevision {
			return head, fmt.Errorf("%w: the policy revision is %d, not %d", pam.ErrConflict, rev, tx.PolicyRevision)
		}
	}
	var firstRev int64
	if revs > 0 {
		var last int64
		if err := s.queryRow(ctx, t, sqlBumpRevision, revs).Scan(&last); err != nil {
			return head, err
		}
		firstRev = last - revs + 1
	}
	policyRev := firstRev
	if tx.Catalog != nil {
		policyRev++
	}
	c.CatalogRev, c.PolicyRev = firstRev, policyRev
	for _, u := range tx.Unchanged {
		var v int64
		err := s.queryRow(ctx, t, sqlRequestVersion, u.ID).Scan(&v)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return head, err
		}
		if v != u.Version {
			return head, fmt.Errorf("%w: request %s is at version %d, not %d", pam.ErrConflict, u.ID, v, u.Version)
		}
	}
	if tx.Catalog != nil {
		if err := s.putCatalog(ctx, t, tx.Catalog, firstRev); err != nil {
			return head, err
		}
	}
	for i := range tx.Policies {
		if err := s.putPolicy(ctx, t, &tx.Policies[i], policyRev+int64(i)); err != nil {
			return head, err
		}
	}
	for i := range tx.Requests {
		q, args, err := sqlstore.RequestWrite(&tx.Requests[i])
		if err != nil {
			return head, err
		}
		if err := s.write(ctx, t, q, args, "request", tx.Requests[i].ID, tx.Requests[i].Version); err != nil {
			return head, err
		}
	}
	if err := s.putMessages(ctx, t, tx.Messages); err != nil {
		return head, err
	}
	if err := s.putRuns(ctx, t, tx.Open, tx.Close); err != nil {
		return head, err
	}
	return head, s.insertEvents(ctx, t, c.Events)
}

// mapBusy wraps a retryable error (see retryable) in pam.ErrConflict.
func mapBusy(err error) error {
	if retryable(err) {
		return fmt.Errorf("%w: %w", pam.ErrConflict, err)
	}
	return err
}

// retryable reports whether err is a transient conflict between
// transactions: the database was busy or locked.
func retryable(err error) bool {
	var e *sqlite.Error
	return errors.As(err, &e) && (e.Code()&0xff == sqlite3.SQLITE_BUSY || e.Code()&0xff == sqlite3.SQLITE_LOCKED)
}

// write runs q, the write of one row, and turns "no row changed" into
// pam.ErrConflict.
func (s *Store) write(ctx context.Context, t *sql.Tx, q string, args []any, what, id string, version int64) error {
	res, err := s.exec(ctx, t, q, args...)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n != 1 {
		return fmt.Errorf("%w: %s %s is not at version %d", pam.ErrConflict, what, id, version-1)
	}
	return nil
}

// putPolicy writes p at revision rev.
func (s *Store) putPolicy(ctx context.Context, t *sql.Tx, p *pam.Policy, rev int64) error {
	stored := *p
	stored.Revision = rev
	data, err := json.Marshal(&stored)
	if err != nil {
		return err
	}
	q, args := sqlUpdatePolicy, []any{p.Version, rev, p.Deleted, string(data), p.ID, p.Version - 1}
	if p.Version == 1 {
		q, args = sqlInsertPolicy, []any{p.ID, p.Version, rev, p.Deleted, string(data)}
	}
	return s.write(ctx, t, q, args, "policy", p.ID, p.Version)
}

// The writes of the catalog, new (Version 1) or at its next version.
// They are rare, so they are not prepared.
const (
	sqlInsertCatalog = `INSERT INTO pam_catalog (id, version, revision, data) VALUES (1, $1, $2, $3) ON CONFLICT (id) DO NOTHING`
	sqlUpdateCatalog = `UPDATE pam_catalog SET version = $1, revision = $2, data = $3 WHERE id = 1 AND version = $4`
)

// putCatalog writes c at revision rev.
func (s *Store) putCatalog(ctx context.Context, t *sql.Tx, c *pam.Catalog, rev int64) error {
	data, err := sqlstore.CatalogData(c)
	if err != nil {
		return err
	}
	q, args := sqlUpdateCatalog, []any{c.Version, rev, data, c.Version - 1}
	if c.Version == 1 {
		q, args = sqlInsertCatalog, []any{c.Version, rev, data}
	}
	return s.write(ctx, t, q, args, "the", "catalog", c.Version)
}

// putMessages inserts the new messages with one statement and updates
// the settled ones one by one.
func (s *Store) putMessages(ctx context.Context, t *sql.Tx, msgs []pam.Message) error {
	var args []any
	var q strings.Builder
	n := 0
	for i := range msgs {
		m := &msgs[i]
		one, a, err := sqlstore.MessageWrite(m)
		if err != nil {
			return err
		}
		if m.Version != 1 {
			if err := s.write(ctx, t, one, a, "message", m.ID, m.Version); err != nil {
				return err
			}
			continue
		}
		if n == 0 {
			q.WriteString(`INSERT INTO pam_outbox (id, request_id, state, next_attempt, version, data) VALUES `)
		} else {
			q.WriteString(", ")
		}
		q.WriteString(placeholders(len(args), len(a)))
		args = append(args, a...)
		n++
	}
	if n == 0 {
		return nil
	}
	q.WriteString(" ON CONFLICT (id) DO NOTHING")
	res, err := s.exec(ctx, t, q.String(), args...)
	if err != nil {
		return err
	}
	if k, err := res.RowsAffected(); err != nil || k != int64(n) {
		return fmt.Errorf("%w: %d of %d new messages exist already (%v)", pam.ErrConflict, int64(n)-k, n, err)
	}
	return nil
}

// putRuns opens the runs of open and closes those named in closed, one
// statement each: Guard's commits open or close one.
func (s *Store) putRuns(ctx context.Context, t *sql.Tx, open []pam.OpenRun, closed []string) error {
	for i := range open {
		if _, err := s.exec(ctx, t, sqlstore.SQLInsertRun, sqlstore.RunArgs(&open[i])...); err != nil {
			if constraint(err) {
				return fmt.Errorf("%w: run %s is open already", pam.ErrConflict, open[i].ID)
			}
			return err
		}
	}
	for _, id := range closed {
		res, err := s.exec(ctx, t, sqlstore.SQLDeleteRun, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			return fmt.Errorf("%w: run %s is not open", pam.ErrNotFound, id)
		}
	}
	return nil
}

// constraint reports whether err is a constraint violation: a primary
// key taken.
func constraint(err error) bool {
	var e *sqlite.Error
	return errors.As(err, &e) && e.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
}

// placeholders returns "($from+1, ..., $from+n)".
func placeholders(from, n int) string {
	var b strings.Builder
	b.WriteString("(")
	for j := range n {
		if j > 0 {
			b.WriteString(", ")
		}
		b.WriteString("$" + strconv.Itoa(from+j+1))
	}
	b.WriteString(")")
	return b.String()
}

// eventColumns is the number of columns of an event row.
const eventColumns = 12

// eventsPerInsert bounds the rows of one INSERT.
const eventsPerInsert = 80

// eventInserts are the INSERTs of one and two events, the commits of
// Guard and of most transitions, built once.
var eventInserts = [...]string{1: buildEventInsert(1), 2: buildEventInsert(2)}

// eventInsert is the INSERT of n events.
func eventInsert(n int) string {
	if n > 0 && n < len(eventInserts) {
		return eventInserts[n]
	}
	return buildEventInsert(n)
}

func buildEventInsert(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO pam_events (seq, time, type, actor, request_id, policy_id, task, outcome, detail, run, prev_hash, hash) VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(placeholders(i*eventColumns, eventColumns))
	}
	return b.String()
}

// insertEvents appends chained events, many rows per statement. Only
// the committer calls it: its arguments go in the committer's buffer.
func (s *Store) insertEvents(ctx context.Context, t *sql.Tx, events []pam.Event) error {
	defer func() { clear(s.g.args) }()
	for start := 0; start < len(events); start += eventsPerInsert {
		batch := events[start:min(start+eventsPerInsert, len(events))]
		args := s.g.args[:0]
		for i := range batch {
			e := &batch[i]
			var err error
			if args, err = sqlstore.AppendEventContent(append(args, e.Seq), e); err != nil {
				return err
			}
			prev, _ := pam.ParseHash(e.PrevHash)
			hash, _ := pam.ParseHash(e.Hash)
			args = append(args, prev[:], hash[:])
		}
		s.g.args = args
		if _, err := s.exec(ctx, t, eventInsert(len(batch)), args...); err != nil {
			return err
		}
	}
	return nil
}
