// Package sqlstore implements pam.Store over database/sql: the whole
// store for SQLite, and the reads and the migration runner for PostgreSQL
// (whose Commit is its own, one pgx batch). The SQL is written in the
// dialect both understand ($n placeholders, ON CONFLICT, RETURNING); what
// differs (the schema, how migrations lock, which errors are transient)
// comes from a Dialect.
//
// Commit relies on the write lock being taken when its transaction begins
// (SQLite's BEGIN IMMEDIATE on a single writer connection): sequence
// numbers continue from the last stored event without gaps, and every
// version check reads the latest committed state. The checks are still
// compare-and-swap writes (UPDATE ... WHERE version = $prev). Requests
// are stored as given, their decisions in the request's data.
package sqlstore

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zerostanding/pam"
)

// Dialect is what differs between databases.
type Dialect struct {
	// Retryable reports whether err is a transient conflict between
	// concurrent transactions (serialisation failure, deadlock); Commit
	// returns it as pam.ErrConflict.
	Retryable func(err error) bool
	// Prepare keeps prepared statements in the store. Without it the
	// driver is trusted to cache them (pgx does, per connection).
	Prepare bool
	// SkipLocked is appended to the row selection of ClaimMessages
	// (PostgreSQL: " FOR UPDATE SKIP LOCKED", so concurrent claimers
	// take different messages instead of waiting on each other).
	SkipLocked string
}

// Store is a pam.Store over a write pool and a read pool (the same pool
// for PostgreSQL; for SQLite one writer connection and several readers).
type Store struct {
	w, r   *sql.DB
	d      Dialect
	ws, rs stmtCache // prepared statements of w and r
}

// stmtCache keeps prepared statements by their text, so the statements of
// the hot paths are parsed once per connection rather than once per call.
type stmtCache struct {
	mu  sync.Mutex
	m   map[string]*sql.Stmt
	off bool
}

// maxStmts bounds each cache; statements past it run unprepared.
const maxStmts = 256

// get returns the prepared statement for q, preparing it when lazy is set.
// The write pool is never prepared lazily: a transaction holds its
// connection (SQLite's only one), and preparing would wait for another.
func (c *stmtCache) get(ctx context.Context, db *sql.DB, q string, lazy bool) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.off {
		return nil
	}
	if st, ok := c.m[q]; ok || !lazy {
		return st
	}
	if len(c.m) >= maxStmts {
		return nil
	}
	st, err := db.PrepareContext(ctx, q)
	if err != nil {
		return nil // run it unprepared; its error will show there
	}
	if c.m == nil {
		c.m = map[string]*sql.Stmt{}
	}
	c.m[q] = st
	return st
}

func (s *Store) texec(ctx context.Context, t *sql.Tx, q string, args ...any) (sql.Result, error) {
	if st := s.ws.get(ctx, s.w, q, false); st != nil {
		return t.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return t.ExecContext(ctx, q, args...)
}

func (s *Store) tqueryRow(ctx context.Context, t *sql.Tx, q string, args ...any) *sql.Row {
	if st := s.ws.get(ctx, s.w, q, false); st != nil {
		return t.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return t.QueryRowContext(ctx, q, args...)
}

func (s *Store) rqueryRow(ctx context.Context, q string, args ...any) *sql.Row {
	if st := s.rs.get(ctx, s.r, q, true); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return s.r.QueryRowContext(ctx, q, args...)
}

func (s *Store) rquery(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if st := s.rs.get(ctx, s.r, q, true); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return s.r.QueryContext(ctx, q, args...)
}

var _ pam.OutboxStore = (*Store)(nil)

// New returns a store over migrated databases, with the statements of the
// write path prepared.
func New(ctx context.Context, w, r *sql.DB, d Dialect) (*Store, error) {
	s := &Store{w: w, r: r, d: d}
	if !d.Prepare {
		s.ws.off, s.rs.off = true, true
		return s, nil
	}
	for _, q := range append([]string{eventInsert(1), eventInsert(2)}, writeStatements...) {
		if s.ws.get(ctx, w, q, true) == nil {
			return nil, fmt.Errorf("sqlstore: prepare %q failed", q)
		}
	}
	return s, nil
}

// Close releases the prepared statements.
func (s *Store) Close() error {
	var errs []error
	for _, c := range []*stmtCache{&s.ws, &s.rs} {
		c.mu.Lock()
		for _, st := range c.m {
			errs = append(errs, st.Close())
		}
		c.m = nil
		c.mu.Unlock()
	}
	return errors.Join(errs...)
}

// The fixed statements of Commit.
const (
	sqlHead           = `SELECT seq, hash FROM pam_events ORDER BY seq DESC LIMIT 1`
	sqlBumpRevision   = `UPDATE pam_meta SET policy_revision = policy_revision + $1 WHERE id = 1 RETURNING policy_revision`
	sqlRequestVersion = `SELECT version FROM pam_requests WHERE id = $1`
	sqlInsertPolicy   = `INSERT INTO pam_policies (id, version, revision, deleted, data) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING`
	sqlUpdatePolicy   = `UPDATE pam_policies SET version = $1, revision = $2, deleted = $3, data = $4 WHERE id = $5 AND version = $6`
	sqlInsertRequest  = `INSERT INTO pam_requests (id, requester, policy_id, state, due, version, data) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING`
	sqlUpdateRequest  = `UPDATE pam_requests SET requester = $1, policy_id = $2, state = $3, due = $4, version = $5, data = $6 WHERE id = $7 AND version = $8`
	SQLInsertMessage  = `INSERT INTO pam_outbox (id, request_id, state, next_attempt, version, data) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING`
	SQLUpdateMessage  = `UPDATE pam_outbox SET state = $1, next_attempt = $2, lease_owner = '', lease_until = 0, version = $3, data = $4 WHERE id = $5 AND version = $6`
)

var writeStatements = []string{SQLInsertMessage, SQLUpdateMessage, sqlHead, sqlBumpRevision, sqlRequestVersion, sqlInsertPolicy, sqlUpdatePolicy, sqlInsertRequest, sqlUpdateRequest}

// eventInsert is the INSERT of n events.
func eventInsert(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO pam_events (seq, time, type, actor, request_id, policy_id, task, outcome, detail, prev_hash, hash) VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(")
		for j := range eventColumns {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("$" + strconv.Itoa(i*eventColumns+j+1))
		}
		b.WriteString(")")
	}
	return b.String()
}

// Commit implements pam.Store.
func (s *Store) Commit(ctx context.Context, tx *pam.Tx) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := CheckDuplicates(tx); err != nil {
		return err
	}
	t, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			t.Rollback()
			if s.d.Retryable != nil && s.d.Retryable(err) {
				err = fmt.Errorf("%w: %w", pam.ErrConflict, err)
			}
		}
	}()
	var lastSeq, lastRev int64
	var head []byte
	if err := s.tqueryRow(ctx, t, sqlHead).Scan(&lastSeq, &head); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	prev := pam.GenesisHash
	if lastSeq > 0 {
		if len(head) != pam.HashSize {
			return fmt.Errorf("sqlstore: event %d has no hash", lastSeq)
		}
		prev = hex.EncodeToString(head)
	}
	// Chain copies: tx.Events gets its fields only once the commit holds.
	events := make([]pam.Event, len(tx.Events))
	for i := range tx.Events {
		events[i] = tx.Events[i]
		if err := events[i].Chain(lastSeq+int64(i)+1, prev); err != nil {
			return err
		}
		prev = events[i].Hash
	}
	lastSeq += int64(len(tx.Events))
	if len(tx.Policies) > 0 {
		if err := s.tqueryRow(ctx, t, sqlBumpRevision, len(tx.Policies)).Scan(&lastRev); err != nil {
			return err
		}
	}
	for _, u := range tx.Unchanged {
		var v int64
		err := s.tqueryRow(ctx, t, sqlRequestVersion, u.ID).Scan(&v)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if v != u.Version {
			return fmt.Errorf("%w: request %s is at version %d, not %d", pam.ErrConflict, u.ID, v, u.Version)
		}
	}
	firstRev := lastRev - int64(len(tx.Policies)) + 1
	revs := make([]int64, len(tx.Policies))
	for i := range tx.Policies {
		p := tx.Policies[i]
		p.Revision = firstRev + int64(i)
		revs[i] = p.Revision
		if err := s.putPolicy(ctx, t, &p); err != nil {
			return err
		}
	}
	for i := range tx.Requests {
		if err := s.putRequest(ctx, t, &tx.Requests[i]); err != nil {
			return err
		}
	}
	if err := s.putMessages(ctx, t, tx.Messages); err != nil {
		return err
	}
	if err := s.insertEvents(ctx, t, events); err != nil {
		return err
	}
	if err := t.Commit(); err != nil {
		return err
	}
	for i := range tx.Policies {
		tx.Policies[i].Revision = revs[i]
	}
	for i := range tx.Events {
		e := &tx.Events[i]
		e.Seq, e.PrevHash, e.Hash = events[i].Seq, events[i].PrevHash, events[i].Hash
	}
	return nil
}

// eventColumns is the number of columns of an event row.
const eventColumns = 11

// eventsPerInsert bounds the rows of one INSERT.
const eventsPerInsert = 80

// insertEvents appends chained events, many rows per statement.
func (s *Store) insertEvents(ctx context.Context, t *sql.Tx, events []pam.Event) error {
	for start := 0; start < len(events); start += eventsPerInsert {
		batch := events[start:min(start+eventsPerInsert, len(events))]
		args := make([]any, 0, eventColumns*len(batch))
		for i := range batch {
			e := &batch[i]
			detail, err := encodeDetail(e.Detail)
			if err != nil {
				return err
			}
			prev, _ := pam.ParseHash(e.PrevHash)
			hash, _ := pam.ParseHash(e.Hash)
			args = append(args, e.Seq, e.Time.UnixNano(), string(e.Type), e.Actor, e.RequestID, e.PolicyID, e.Task, e.Outcome, detail, prev[:], hash[:])
		}
		if _, err := s.texec(ctx, t, eventInsert(len(batch)), args...); err != nil {
			return err
		}
	}
	return nil
}

// CheckDuplicates refuses a Tx that writes one policy or request twice.
func CheckDuplicates(tx *pam.Tx) error {
	seen := map[string]bool{}
	for _, p := range tx.Policies {
		if seen["p"+p.ID] {
			return fmt.Errorf("%w: policy %s twice in one commit", pam.ErrConflict, p.ID)
		}
		seen["p"+p.ID] = true
	}
	for _, r := range tx.Requests {
		if seen["r"+r.ID] {
			return fmt.Errorf("%w: request %s twice in one commit", pam.ErrConflict, r.ID)
		}
		seen["r"+r.ID] = true
	}
	for _, m := range tx.Messages {
		if seen["m"+m.ID] {
			return fmt.Errorf("%w: message %s twice in one commit", pam.ErrConflict, m.ID)
		}
		seen["m"+m.ID] = true
	}
	return nil
}

// MessageArgs are the arguments of SQLInsertMessage (new messages) or
// SQLUpdateMessage (settled ones).
func MessageArgs(m *pam.Message) ([]any, error) {
	data, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if m.Version == 1 {
		return []any{m.ID, m.Request.ID, string(m.State), m.NextAttempt.UnixNano(), m.Version, string(data)}, nil
	}
	return []any{string(m.State), m.NextAttempt.UnixNano(), m.Version, string(data), m.ID, m.Version - 1}, nil
}

// putMessages inserts the new messages with one statement and updates
// the settled ones one by one.
func (s *Store) putMessages(ctx context.Context, t *sql.Tx, msgs []pam.Message) error {
	var args []any
	var q strings.Builder
	n := 0
	for i := range msgs {
		m := &msgs[i]
		if m.Version != 1 {
			if err := s.putMessage(ctx, t, m); err != nil {
				return err
			}
			continue
		}
		a, err := MessageArgs(m)
		if err != nil {
			return err
		}
		if n == 0 {
			q.WriteString(`INSERT INTO pam_outbox (id, request_id, state, next_attempt, version, data) VALUES `)
		} else {
			q.WriteString(", ")
		}
		q.WriteString("(")
		for j := range a {
			if j > 0 {
				q.WriteString(", ")
			}
			q.WriteString("$" + strconv.Itoa(len(args)+j+1))
		}
		q.WriteString(")")
		args = append(args, a...)
		n++
	}
	if n == 0 {
		return nil
	}
	q.WriteString(" ON CONFLICT (id) DO NOTHING")
	res, err := s.texec(ctx, t, q.String(), args...)
	if err != nil {
		return err
	}
	if k, err := res.RowsAffected(); err != nil || k != int64(n) {
		return fmt.Errorf("%w: %d of %d new messages exist already (%v)", pam.ErrConflict, int64(n)-k, n, err)
	}
	return nil
}

func (s *Store) putMessage(ctx context.Context, t *sql.Tx, m *pam.Message) error {
	args, err := MessageArgs(m)
	if err != nil {
		return err
	}
	q := SQLUpdateMessage
	if m.Version == 1 {
		q = SQLInsertMessage
	}
	res, err := s.texec(ctx, t, q, args...)
	if err != nil {
		return err
	}
	return conflict(res, "message", m.ID, m.Version)
}

// messageColumns are the columns scanMessage reads, in order.
const messageColumns = `lease_owner, lease_until, version, data`

func scanMessage(rows *sql.Rows) (pam.Message, error) {
	var m pam.Message
	var until int64
	var data string
	if err := rows.Scan(&m.LeaseOwner, &until, &m.Version, &data); err != nil {
		return m, err
	}
	owner, version := m.LeaseOwner, m.Version
	if err := json.Unmarshal([]byte(data), &m); err != nil {
		return m, fmt.Errorf("sqlstore: decode message: %w", err)
	}
	m.LeaseOwner, m.Version = owner, version
	if until != 0 {
		m.LeaseUntil = time.Unix(0, until).UTC()
	}
	return m, nil
}

// ClaimMessages implements pam.Store in one statement, on the writer.
func (s *Store) ClaimMessages(ctx context.Context, owner string, now, until time.Time, limit int) ([]pam.Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rows, err := s.w.QueryContext(ctx, `UPDATE pam_outbox SET lease_owner = $1, lease_until = $2, version = version + 1
		WHERE id IN (SELECT id FROM pam_outbox WHERE state = 'pending' AND next_attempt <= $3 AND lease_until <= $3
		ORDER BY next_attempt, id LIMIT $4`+s.d.SkipLocked+`) RETURNING `+messageColumns,
		owner, until.UnixNano(), now.UnixNano(), limit)
	out, err := collect(rows, err, scanMessage)
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].NextAttempt.Equal(out[j].NextAttempt) {
			return out[i].NextAttempt.Before(out[j].NextAttempt)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Messages implements pam.Store.
func (s *Store) Messages(ctx context.Context, f pam.MessageFilter) ([]pam.Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var q query
	q.sql.WriteString(`SELECT ` + messageColumns + ` FROM pam_outbox WHERE id > ` + q.arg(f.After))
	q.in("state", strs(f.States))
	q.eq("request_id", f.RequestID)
	q.sql.WriteString(" ORDER BY id")
	if f.Limit > 0 {
		q.sql.WriteString(" LIMIT " + q.arg(f.Limit))
	}
	rows, err := s.rquery(ctx, q.sql.String(), q.args...)
	return collect(rows, err, scanMessage)
}

// collect scans every row of a query with scan, and closes the rows.
func collect[T any](rows *sql.Rows, err error, scan func(*sql.Rows) (T, error)) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// conflict turns "no row changed" into pam.ErrConflict.
func conflict(res sql.Result, what, id string, version int64) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n != 1 {
		return fmt.Errorf("%w: %s %s is not at version %d", pam.ErrConflict, what, id, version-1)
	}
	return nil
}

func (s *Store) putPolicy(ctx context.Context, t *sql.Tx, p *pam.Policy) error {
	data, err := json.Marshal(p)
	if err != nil {
		return err
	}
	var res sql.Result
	if p.Version == 1 {
		res, err = s.texec(ctx, t, sqlInsertPolicy,
			p.ID, p.Version, p.Revision, p.Deleted, string(data))
	} else {
		res, err = s.texec(ctx, t, sqlUpdatePolicy,
			p.Version, p.Revision, p.Deleted, string(data), p.ID, p.Version-1)
	}
	if err != nil {
		return err
	}
	return conflict(res, "policy", p.ID, p.Version)
}

func (s *Store) putRequest(ctx context.Context, t *sql.Tx, r *pam.Request) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	var res sql.Result
	due := Due(r)
	if r.Version == 1 {
		res, err = s.texec(ctx, t, sqlInsertRequest,
			r.ID, r.Requester, r.PolicyID, string(r.State), due, r.Version, string(data))
	} else {
		res, err = s.texec(ctx, t, sqlUpdateRequest,
			r.Requester, r.PolicyID, string(r.State), due, r.Version, string(data), r.ID, r.Version-1)
	}
	if err != nil {
		return err
	}
	return conflict(res, "request", r.ID, r.Version)
}

// Due is when the recorded state of r times out, in Unix nanoseconds; nil
// for terminal states. It fills the due column the sweeper reads.
func Due(r *pam.Request) any {
	switch r.State {
	case pam.Pending:
		return r.PendingUntil.UnixNano()
	case pam.Approved:
		return r.ExpiresAt.UnixNano()
	}
	return nil
}

func encodeDetail(d map[string]string) (any, error) {
	if len(d) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

// Policy implements pam.Store.
func (s *Store) Policy(ctx context.Context, id string) (pam.Policy, error) {
	if err := ctx.Err(); err != nil {
		return pam.Policy{}, err
	}
	var data string
	var rev int64
	err := s.rqueryRow(ctx, `SELECT data, revision FROM pam_policies WHERE id = $1`, id).Scan(&data, &rev)
	if errors.Is(err, sql.ErrNoRows) {
		return pam.Policy{}, fmt.Errorf("%w: policy %q", pam.ErrNotFound, id)
	}
	if err != nil {
		return pam.Policy{}, err
	}
	return decodePolicy(data, rev)
}

func decodePolicy(data string, rev int64) (pam.Policy, error) {
	var p pam.Policy
	if err := json.Unmarshal([]byte(data), &p); err != nil {
		return pam.Policy{}, fmt.Errorf("sqlstore: decode policy: %w", err)
	}
	p.Revision = rev
	return p, nil
}

// PolicyChanges implements pam.Store. One statement reads the changes and
// the revision, so they agree.
func (s *Store) PolicyChanges(ctx context.Context, since int64) ([]pam.Policy, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	rows, err := s.rquery(ctx, `SELECT m.policy_revision, p.data, p.revision FROM pam_meta m LEFT JOIN pam_policies p ON p.revision > $1 WHERE m.id = 1 ORDER BY p.revision`, since)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var out []pam.Policy
	var rev int64
	for rows.Next() {
		var data sql.NullString
		var prev sql.NullInt64
		if err := rows.Scan(&rev, &data, &prev); err != nil {
			return nil, 0, err
		}
		if !data.Valid {
			continue
		}
		p, err := decodePolicy(data.String, prev.Int64)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, p)
	}
	return out, rev, rows.Err()
}

// PolicyRevision implements pam.Store.
func (s *Store) PolicyRevision(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var rev int64
	err := s.rqueryRow(ctx, `SELECT policy_revision FROM pam_meta WHERE id = 1`).Scan(&rev)
	return rev, err
}

// Request implements pam.Store.
func (s *Store) Request(ctx context.Context, id string) (pam.Request, error) {
	if err := ctx.Err(); err != nil {
		return pam.Request{}, err
	}
	var data string
	err := s.rqueryRow(ctx, `SELECT data FROM pam_requests WHERE id = $1`, id).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return pam.Request{}, fmt.Errorf("%w: request %q", pam.ErrNotFound, id)
	}
	if err != nil {
		return pam.Request{}, err
	}
	return DecodeRequest([]byte(data))
}

// DecodeRequest decodes a request stored as JSON.
func DecodeRequest(data []byte) (pam.Request, error) {
	var r pam.Request
	if err := json.Unmarshal(data, &r); err != nil {
		return pam.Request{}, fmt.Errorf("sqlstore: decode request: %w", err)
	}
	return r, nil
}

// query builds WHERE clauses with $n placeholders.
type query struct {
	sql  strings.Builder
	args []any
}

func (q *query) arg(v any) string {
	q.args = append(q.args, v)
	return "$" + strconv.Itoa(len(q.args))
}

func (q *query) in(column string, vals []string) {
	if len(vals) == 0 {
		return
	}
	q.sql.WriteString(" AND " + column + " IN (")
	for i, v := range vals {
		if i > 0 {
			q.sql.WriteString(", ")
		}
		q.sql.WriteString(q.arg(v))
	}
	q.sql.WriteString(")")
}

func (q *query) eq(column string, v string) {
	if v != "" {
		q.sql.WriteString(" AND " + column + " = " + q.arg(v))
	}
}

func strs[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

// Requests implements pam.Store.
func (s *Store) Requests(ctx context.Context, f pam.RequestFilter) ([]pam.Request, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var q query
	q.sql.WriteString(`SELECT data FROM pam_requests WHERE id > ` + q.arg(f.After))
	q.eq("requester", f.Requester)
	q.in("policy_id", f.PolicyIDs)
	q.in("state", strs(f.States))
	if !f.DueBy.IsZero() {
		q.sql.WriteString(" AND due <= " + q.arg(f.DueBy.UnixNano()))
	}
	q.sql.WriteString(" ORDER BY id")
	if f.Limit > 0 {
		q.sql.WriteString(" LIMIT " + q.arg(f.Limit))
	}
	var out []pam.Request
	err := s.eachRequest(ctx, &q, func(r *pam.Request) { out = append(out, *r) })
	return out, err
}

// eachRequest runs q, a query of request data, and calls f for each.
func (s *Store) eachRequest(ctx context.Context, q *query, f func(*pam.Request)) error {
	rows, err := s.rquery(ctx, q.sql.String(), q.args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var data string
		if err := rows.Scan(&data); err != nil {
			return err
		}
		r, err := DecodeRequest([]byte(data))
		if err != nil {
			return err
		}
		f(&r)
	}
	return rows.Err()
}

// Grants implements pam.Store.
func (s *Store) Grants(ctx context.Context, requester string, policyIDs []string) ([]pam.Grant, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(policyIDs) == 0 {
		return nil, nil
	}
	var q query
	q.sql.WriteString(`SELECT data FROM pam_requests WHERE requester = ` + q.arg(requester) + ` AND state = 'approved'`)
	q.in("policy_id", policyIDs)
	var out []pam.Grant
	err := s.eachRequest(ctx, &q, func(r *pam.Request) { out = append(out, r.Grant()) })
	return out, err
}

// Events implements pam.Store.
func (s *Store) Events(ctx context.Context, f pam.EventFilter) ([]pam.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var q query
	q.sql.WriteString(`SELECT ` + EventColumns + ` FROM pam_events WHERE seq > ` + q.arg(f.After))
	if f.Before > 0 {
		q.sql.WriteString(" AND seq < " + q.arg(f.Before))
	}
	q.eq("actor", f.Actor)
	q.eq("task", f.Task)
	// The request and policy indexes are partial (WHERE … <> ''); a
	// bound parameter does not tell the planner the filter implies that,
	// the literal condition does.
	if f.RequestID != "" {
		q.eq("request_id", f.RequestID)
		q.sql.WriteString(" AND request_id <> ''")
	}
	if f.PolicyID != "" {
		q.eq("policy_id", f.PolicyID)
		q.sql.WriteString(" AND policy_id <> ''")
	}
	q.eq("outcome", string(f.Outcome))
	q.in("type", strs(f.Types))
	if !f.Since.IsZero() {
		q.sql.WriteString(" AND time >= " + q.arg(f.Since.UnixNano()))
	}
	if !f.Until.IsZero() {
		q.sql.WriteString(" AND time < " + q.arg(f.Until.UnixNano()))
	}
	if f.Descending {
		q.sql.WriteString(" ORDER BY seq DESC")
	} else {
		q.sql.WriteString(" ORDER BY seq")
	}
	if f.Limit > 0 {
		q.sql.WriteString(" LIMIT " + q.arg(f.Limit))
	}
	rows, err := s.rquery(ctx, q.sql.String(), q.args...)
	return collect(rows, err, scanEvent)
}

// EventColumns are the columns scanEvent reads, in order.
const EventColumns = `seq, time, type, actor, request_id, policy_id, task, outcome, detail, prev_hash, hash`

// scanEvent decodes a row of EventColumns. Events stored before the hash
// chain existed have no hashes until their migration chains them.
func scanEvent(rows *sql.Rows) (pam.Event, error) {
	var e pam.Event
	var ns int64
	var typ string
	var detail sql.NullString
	var prev, hash []byte
	if err := rows.Scan(&e.Seq, &ns, &typ, &e.Actor, &e.RequestID, &e.PolicyID, &e.Task, &e.Outcome, &detail, &prev, &hash); err != nil {
		return e, err
	}
	e.Time, e.Type = time.Unix(0, ns).UTC(), pam.EventType(typ)
	if detail.Valid {
		if err := json.Unmarshal([]byte(detail.String), &e.Detail); err != nil {
			return e, fmt.Errorf("sqlstore: decode event %d: %w", e.Seq, err)
		}
	}
	e.PrevHash, e.Hash = hex.EncodeToString(prev), hex.EncodeToString(hash)
	return e, nil
}

// ChainExisting returns the data migration that chains the events stored
// before the hash chain existed (hash IS NULL), in sequence order,
// continuing from the last chained event. setHead, when not empty, is then
// run with the head's previous hash and hash as $1 and $2 (PostgreSQL
// keeps the head in pam_meta).
//
// The hashes it writes protect those events from the migration on; they
// cannot vouch for what happened to them before.
func ChainExisting(setHead string) func(context.Context, *sql.Tx) error {
	return func(ctx context.Context, t *sql.Tx) error {
		prev, head := make([]byte, pam.HashSize), make([]byte, pam.HashSize)
		for {
			rows, err := t.QueryContext(ctx, `SELECT `+EventColumns+` FROM pam_events WHERE hash IS NULL ORDER BY seq LIMIT 10000`)
			events, err := collect(rows, err, scanEvent)
			if err != nil {
				return err
			}
			if len(events) == 0 {
				break
			}
			var last []byte
			err = t.QueryRowContext(ctx, `SELECT hash FROM pam_events WHERE seq = $1`, events[0].Seq-1).Scan(&last)
			switch {
			case errors.Is(err, sql.ErrNoRows) && events[0].Seq == 1:
				last = make([]byte, pam.HashSize)
			case err != nil:
				return fmt.Errorf("the event before %d: %w", events[0].Seq, err)
			}
			p := hex.EncodeToString(last)
			for i := range events {
				e := &events[i]
				if err := e.Chain(e.Seq, p); err != nil {
					return err
				}
				prev, _ = hex.DecodeString(e.PrevHash)
				head, _ = hex.DecodeString(e.Hash)
				if _, err := t.ExecContext(ctx, `UPDATE pam_events SET prev_hash = $1, hash = $2 WHERE seq = $3`, prev, head, e.Seq); err != nil {
					return err
				}
				p = e.Hash
			}
		}
		if setHead == "" {
			return nil
		}
		// The head is the last event, chained now or before.
		err := t.QueryRowContext(ctx, `SELECT prev_hash, hash FROM pam_events ORDER BY seq DESC LIMIT 1`).Scan(&prev, &head)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		_, err = t.ExecContext(ctx, setHead, prev, head)
		return err
	}
}
