// Package sqlstore is what the two SQL stores share: the migration
// runner, how rows are encoded (codec.go), and the reads, including the
// claim of outbox messages. Each store commits in its own way, beside its
// driver: store/sqlite in a database/sql transaction on its one writer
// connection, store/postgres in one pgx batch. The SQL is written in the
// dialect both understand ($n placeholders, ON CONFLICT, RETURNING); the
// schemas are each store's own, and what the shared reads do differently
// comes from a Dialect.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zerostanding/pam"
)

// Dialect is what the shared reads do differently on each database.
type Dialect struct {
	// Prepare keeps the reads' prepared statements in the store. Without
	// it the driver is trusted to cache them (pgx does, per connection).
	Prepare bool
	// SkipLocked is appended to the row selection of ClaimMessages
	// (PostgreSQL: " FOR UPDATE SKIP LOCKED", so concurrent claimers
	// take different messages instead of waiting on each other).
	SkipLocked string
	// IndexedBy makes the reads of requests name their index with
	// SQLite's INDEXED BY clause. SQLite keeps no table statistics unless
	// ANALYZE runs, and without them it serves Grants of one policy from
	// pam_requests_policy, walking every approved request of the policy,
	// and Sweep's due requests from the primary key, walking every
	// request ever made. A named index that cannot serve the query fails
	// the statement rather than falling back to a scan.
	IndexedBy bool
}

// from writes " FROM table", naming index when the dialect does.
func (d Dialect) from(b *strings.Builder, table, index string) {
	b.WriteString(" FROM ")
	b.WriteString(table)
	if d.IndexedBy && index != "" {
		b.WriteString(" INDEXED BY ")
		b.WriteString(index)
	}
}

// Store is the read side of a pam.Store, and the outbox claim, over a
// write pool and a read pool (the same pool for PostgreSQL; for SQLite
// one writer connection and several readers). The store that embeds it
// implements Commit.
type Store struct {
	w, r *sql.DB
	d    Dialect
	rs   stmtCache // prepared statements of r
}

// stmtCache keeps prepared statements by their text, so the statements of
// the hot paths are parsed once per connection rather than once per call.
type stmtCache struct {
	mu  sync.Mutex
	m   map[string]*sql.Stmt
	off bool
}

// maxStmts bounds the cache; statements past it run unprepared.
const maxStmts = 256

// get returns the prepared statement for q, preparing it on first use.
func (c *stmtCache) get(ctx context.Context, db *sql.DB, q string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.off {
		return nil
	}
	if st, ok := c.m[q]; ok {
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

func (s *Store) rqueryRow(ctx context.Context, q string, args ...any) *sql.Row {
	if st := s.rs.get(ctx, s.r, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return s.r.QueryRowContext(ctx, q, args...)
}

func (s *Store) rquery(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if st := s.rs.get(ctx, s.r, q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return s.r.QueryContext(ctx, q, args...)
}

// New returns the read side of a store over migrated databases: w for
// the outbox claims, which write, and r for the rest.
func New(w, r *sql.DB, d Dialect) *Store {
	return &Store{w: w, r: r, d: d, rs: stmtCache{off: !d.Prepare}}
}

// Close releases the prepared statements.
func (s *Store) Close() error {
	var errs []error
	s.rs.mu.Lock()
	for _, st := range s.rs.m {
		errs = append(errs, st.Close())
	}
	s.rs.m = nil
	s.rs.mu.Unlock()
	return errors.Join(errs...)
}

// ClaimMessages implements pam.OutboxStore in one statement, on the
// writer. Its WHERE is pam.Message.ClaimableAt and its ORDER BY is
// pam.SortClaims's order, which also orders the rows RETURNING gives
// back in no particular order.
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
	pam.SortClaims(out)
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

// PolicyChanges implements pam.Store. One statement reads the changes and
// the revision, so they agree. The revision counts catalog writes too
// (they take theirs from the same counter), but the catalog is kept in
// pam_catalog, so none of its writes is among the changes.
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

// Catalog implements pam.Store: the one row of pam_catalog, or a zero
// Catalog when none was ever written.
func (s *Store) Catalog(ctx context.Context) (pam.Catalog, error) {
	if err := ctx.Err(); err != nil {
		return pam.Catalog{}, err
	}
	var data string
	var version, rev int64
	err := s.rqueryRow(ctx, `SELECT version, revision, data FROM pam_catalog WHERE id = 1`).Scan(&version, &rev, &data)
	if errors.Is(err, sql.ErrNoRows) {
		return pam.Catalog{}, nil
	}
	if err != nil {
		return pam.Catalog{}, err
	}
	return DecodeCatalog(data, version, rev)
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
	var out []pam.Request
	err := s.eachRequest(ctx, requestsQuery(s.d, f), func(r *pam.Request) { out = append(out, *r) })
	return out, err
}

// RequestsQuery returns the statement of Requests(f) in dialect d, and
// its arguments.
func RequestsQuery(d Dialect, f pam.RequestFilter) (string, []any) {
	q := requestsQuery(d, f)
	return q.sql.String(), q.args
}

// requestsQuery builds Requests' statement. Its index is the most
// selective one the filter can use, in this order: one requester's
// requests (a user's own, however many others there are; MaxPending's
// count of them), the due ones (Sweep's; terminal requests are not in
// the index), those of some policies.
func requestsQuery(d Dialect, f pam.RequestFilter) *query {
	var index string
	switch {
	case f.Requester != "":
		index = "pam_requests_requester"
	case !f.DueBy.IsZero():
		index = "pam_requests_due"
	case len(f.PolicyIDs) > 0:
		index = "pam_requests_policy"
	}
	q := &query{}
	q.sql.WriteString(`SELECT data`)
	d.from(&q.sql, "pam_requests", index)
	switch {
	case !f.Newest:
		q.sql.WriteString(` WHERE id > ` + q.arg(f.After))
	case f.After != "":
		q.sql.WriteString(` WHERE id < ` + q.arg(f.After))
	default:
		q.sql.WriteString(` WHERE TRUE`)
	}
	q.eq("requester", f.Requester)
	q.in("policy_id", f.PolicyIDs)
	q.in("state", strs(f.States))
	if !f.DueBy.IsZero() {
		// due is pam.Request.Due, NULL when zero (RequestWrite): the
		// filter's rule (RequestFilter.Matches), in Unix nanoseconds.
		// The comparison implies due IS NOT NULL, the condition of the
		// partial index pam_requests_due.
		q.sql.WriteString(" AND due <= " + q.arg(f.DueBy.UnixNano()))
	}
	if f.DecidedBy != "" {
		// Between newlines (Request.DecidersText): one whole identity.
		q.sql.WriteString(` AND deciders LIKE ` + q.arg("%"+likeEscape("\n"+f.DecidedBy+"\n")+"%") + ` ESCAPE '\'`)
	}
	if f.Search != "" {
		// Request.SearchText is lower-cased; Search holds no newline
		// (pam.ValidateRequestFilter), so a match stays in one field.
		q.sql.WriteString(` AND search LIKE ` + q.arg("%"+likeEscape(strings.ToLower(f.Search))+"%") + ` ESCAPE '\'`)
	}
	q.sql.WriteString(" ORDER BY id")
	if f.Newest {
		q.sql.WriteString(" DESC")
	}
	if f.Limit > 0 {
		q.sql.WriteString(" LIMIT " + q.arg(f.Limit))
	}
	return q
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
	var out []pam.Grant
	err := s.eachRequest(ctx, grantsQuery(s.d, requester, policyIDs), func(r *pam.Request) { out = append(out, r.Grant()) })
	return out, err
}

// GrantsQuery returns the statement of Grants(requester, policyIDs) in
// dialect d, and its arguments.
func GrantsQuery(d Dialect, requester string, policyIDs []string) (string, []any) {
	q := grantsQuery(d, requester, policyIDs)
	return q.sql.String(), q.args
}

// grantsQuery builds Grants' statement. It reads the requester's
// approved requests of those policies from the partial index
// pam_requests_grants, whatever else the policies have: the literal
// state = 'approved' is the index's condition, which a bound parameter
// would not show the planner.
func grantsQuery(d Dialect, requester string, policyIDs []string) *query {
	q := &query{}
	q.sql.Grow(128)
	q.sql.WriteString(`SELECT data`)
	d.from(&q.sql, "pam_requests", "pam_requests_grants")
	q.sql.WriteString(` WHERE requester = ` + q.arg(requester) + ` AND state = 'approved'`)
	q.in("policy_id", policyIDs)
	return q
}

// Events implements pam.Store.
func (s *Store) Events(ctx context.Context, f pam.EventFilter) ([]pam.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	q := eventsQuery(f)
	rows, err := s.rquery(ctx, q.sql.String(), q.args...)
	return collect(rows, err, scanEvent)
}

// EventsQuery returns the statement of Events(f) and its arguments.
func EventsQuery(f pam.EventFilter) (string, []any) {
	q := eventsQuery(f)
	return q.sql.String(), q.args
}

// eventsQuery builds Events' statement. Each selective filter has an
// index on (column, seq), which serves the order too: SQLite picks it
// over the primary key with or without statistics.
func eventsQuery(f pam.EventFilter) *query {
	q := &query{}
	q.sql.WriteString(`SELECT ` + eventColumns + ` FROM pam_events WHERE seq > ` + q.arg(f.After))
	if f.Before != 0 {
		q.sql.WriteString(" AND seq < " + q.arg(f.Before))
	}
	q.eq("actor", f.Actor)
	q.eq("task", f.Task)
	// The request, policy and run indexes are partial (WHERE … <> ''); a
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
	if f.Run != "" {
		q.eq("run", f.Run)
		q.sql.WriteString(" AND run <> ''")
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
	return q
}

// OpenRuns implements pam.Store: the open runs due by dueBy, by due and
// ID, from pam_runs, whose index on (due, id) serves the order.
func (s *Store) OpenRuns(ctx context.Context, dueBy time.Time, limit int) ([]pam.OpenRun, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var q query
	q.sql.WriteString(`SELECT ` + runColumns + ` FROM pam_runs WHERE due <= ` + q.arg(RunNanos(dueBy)) + ` ORDER BY due, id`)
	if limit > 0 {
		q.sql.WriteString(" LIMIT " + q.arg(limit))
	}
	rows, err := s.rquery(ctx, q.sql.String(), q.args...)
	return collect(rows, err, scanRun)
}

// likeEscape escapes LIKE's wildcards in s, for ESCAPE '\'.
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// Counts implements pam.Counter: three counts in one statement.
func (s *Store) Counts(ctx context.Context) (pam.Counts, error) {
	var c pam.Counts
	err := s.rqueryRow(ctx, `SELECT (SELECT count(*) FROM pam_requests WHERE state = 'pending'),
		(SELECT count(*) FROM pam_outbox WHERE state = 'pending'), (SELECT count(*) FROM pam_outbox WHERE state = 'failed')`).
		Scan(&c.PendingRequests, &c.PendingMessages, &c.ParkedMessages)
	return c, err
}
