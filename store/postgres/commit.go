package postgres

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/internal/groupcommit"
	"github.com/zerostanding/pam/internal/sqlstore"
)

// maxGroup bounds the Txs written in one transaction.
const maxGroup = 128

// Commit implements pam.Store. Its Tx is written by the store's
// committer, in one transaction with the Txs of the other Commits
// queued at the time: see Group commit in the package documentation.
// A caller whose ctx ends while its Tx waits in the queue gets
// ctx.Err(), and the Tx is not written. Once the committer has taken
// it, the transaction is cut short (canceled on the server, with
// CancelOnServer) only when every caller in it has left; each gets
// ctx.Err(). As with any reply lost on the way, a Tx that PostgreSQL
// committed just before the cancel arrived is written all the same: an
// error from Commit says it may not be, never that it is not, and the
// engine reads it so.
func (s *Store) Commit(ctx context.Context, tx *pam.Tx) error {
	return s.g.Commit(ctx, tx)
}

// writeGroup writes group in one transaction of one round trip. When a
// Tx fails on its own (a version check, a run not open, a duplicate ID),
// the transaction is rolled back and sent again without it, so each Tx
// is still all-or-nothing and a conflicting one fails alone; any other
// error fails the group.
// GroupCommits implements pam.GroupCommitter.
func (s *Store) GroupCommits() (groups, commits int64) { return s.g.Stats() }

func (s *Store) writeGroup(group []*groupcommit.Commit) {
	// The transaction is not any one caller's: it is cut short only when
	// every caller in it has left.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var left atomic.Int64
	for i, c := range group {
		if !s.g.Take(c) {
			group[i] = nil
			continue
		}
		left.Add(1)
		defer context.AfterFunc(c.Ctx, func() {
			if left.Add(-1) == 0 {
				cancel()
			}
		})()
	}
	err := s.writeBatch(ctx, group)
	if err != nil && ctx.Err() != nil {
		for _, c := range group {
			if c != nil && c.Err == nil {
				c.Err = c.Ctx.Err()
			}
		}
	}
	s.g.Finish(group, err, mapError)
}

// span is where one Tx's statements are in a batch.
type span struct {
	c           *groupcommit.Commit
	first, next int // its statements are [first, next)
	bump        int // the statement that returns its last revision, or -1
}

// writeBatch sends the Txs of group not yet failed in one batch, which
// PostgreSQL runs as one implicit transaction, until one goes through or
// none is left. The first statement takes the counters row's lock, so
// commits are serialised across replicas, sequence numbers stay gapless
// and every check reads the latest state, that of the Txs before it in
// the same batch included.
func (s *Store) writeBatch(ctx context.Context, group []*groupcommit.Commit) error {
	spans := make([]span, 0, len(group))
	for {
		b := &pgx.Batch{}
		b.Queue(sqlLock)
		spans = spans[:0]
		notify := false
		for _, c := range group {
			if c == nil || c.Err != nil {
				continue
			}
			if err := c.Ctx.Err(); err != nil {
				c.Err = err
				continue
			}
			sp := span{c: c, first: b.Len()}
			var err error
			if sp.bump, err = queueTx(b, c); err != nil {
				c.Err = err
				b.QueuedQueries = b.QueuedQueries[:sp.first]
				continue
			}
			sp.next = b.Len()
			spans = append(spans, sp)
			notify = notify || notifies(c.Tx)
		}
		if len(spans) == 0 {
			return nil
		}
		if notify {
			b.Queue(sqlNotify)
		}
		head, failed, err := s.send(ctx, b, spans)
		if err == nil {
			s.txs.Add(1)
			// The database chained the events from the head it held;
			// the same chaining here gives the events their fields.
			for _, sp := range spans {
				if head, err = head.Chain(sp.c.Events, sp.c.Digests); err != nil {
					return fmt.Errorf("postgres: committed, but the head it was chained to is not a hash: %w", err)
				}
			}
			return nil
		}
		if failed < 0 || !ownFault(err) || ctx.Err() != nil {
			return err
		}
		spans[failed].c.Err = err
	}
}

// send sends b and reads its results: the head the trail had, and the
// revisions each Tx took. On an error, failed is the index in spans of
// the Tx whose statement failed, or -1.
func (s *Store) send(ctx context.Context, b *pgx.Batch, spans []span) (head pam.ChainHead, failed int, err error) {
	br := s.pool.SendBatch(ctx, b)
	var hash []byte
	err = br.QueryRow().Scan(&head.Seq, &hash)
	failed = -1
	for i, sp := range spans {
		for q := sp.first; err == nil && q < sp.next; q++ {
			if q != sp.bump {
				_, err = br.Exec()
				continue
			}
			var last int64
			if err = br.QueryRow().Scan(&last); err == nil {
				// The catalog first, then the policies in order.
				sp.c.PolicyRev = last - int64(len(sp.c.Tx.Policies)) + 1
				if sp.c.Tx.Catalog != nil {
					sp.c.CatalogRev = sp.c.PolicyRev - 1
				}
			}
		}
		if err != nil {
			failed = i
			break
		}
	}
	for q := spans[len(spans)-1].next; err == nil && q < b.Len(); q++ {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	head.Hash = hex.EncodeToString(hash)
	return head, failed, err
}

// ownFault reports whether err, raised by one of a Tx's statements, is
// that Tx's own doing: a failed check, a run not open, a duplicate or
// invalid value. Anything else (a lost connection, a canceled query, a
// deadlock) fails the whole group.
func ownFault(err error) bool {
	code := pgCode(err)
	return code == "PAM01" || code == "PAM02" || strings.HasPrefix(code, "22") || strings.HasPrefix(code, "23")
}

// mapError maps a commit's error to the sentinels of pam.Store.
func mapError(err error) error {
	switch pgCode(err) {
	case "PAM01", "23505", "40001", "40P01":
		return fmt.Errorf("%w: %w", pam.ErrConflict, err)
	case "PAM02":
		return fmt.Errorf("%w: %w", pam.ErrNotFound, err)
	}
	return err
}

// sqlLock takes the counters row's lock for the transaction and reads
// the head of the trail.
const sqlLock = `SELECT last_seq, head_hash FROM pam_meta WHERE id = 1 FOR UPDATE`

// queueTx queues c's Tx's statements in b: each compare-and-swap, the
// catalog's included, is checked in the database by pam_check, which
// aborts the transaction on a mismatch. bump is the index of the
// statement that returns the last of the policy revisions tx takes, or
// -1 when it takes none.
func queueTx(b *pgx.Batch, c *groupcommit.Commit) (bump int, err error) {
	tx := c.Tx
	if tx.PolicyRevision > 0 {
		b.Queue(`SELECT pam_check((SELECT policy_revision FROM pam_meta WHERE id = 1) = $1, $2)`,
			tx.PolicyRevision, fmt.Sprintf("the policy revision is not %d", tx.PolicyRevision))
	}
	// The catalog and the policies take consecutive revisions from
	// pam_meta, the catalog first.
	revs := len(tx.Policies)
	if tx.Catalog != nil {
		revs++
	}
	bump = -1
	if revs > 0 {
		bump = b.Len()
		b.Queue(`UPDATE pam_meta SET policy_revision = policy_revision + $1 WHERE id = 1 RETURNING policy_revision`, revs)
	}
	for _, u := range tx.Unchanged {
		b.Queue(`SELECT pam_check(coalesce((SELECT version FROM pam_requests WHERE id = $1), 0) = $2, $3)`,
			u.ID, u.Version, fmt.Sprintf("request %s is not at version %d", u.ID, u.Version))
	}
	if cat := tx.Catalog; cat != nil {
		data, err := sqlstore.CatalogData(cat)
		if err != nil {
			return bump, err
		}
		back := len(tx.Policies) // its revision is the new counter minus back
		what := fmt.Sprintf("the catalog is not at version %d", cat.Version-1)
		if cat.Version == 1 {
			b.Queue(`WITH w AS (INSERT INTO pam_catalog (id, version, revision, data) VALUES (1, $1, (SELECT policy_revision FROM pam_meta WHERE id = 1) - $2, $3) ON CONFLICT (id) DO NOTHING RETURNING 1) SELECT pam_check(count(*) = 1, $4) FROM w`,
				cat.Version, back, data, what)
		} else {
			b.Queue(`WITH w AS (UPDATE pam_catalog SET version = $1, revision = (SELECT policy_revision FROM pam_meta WHERE id = 1) - $2, data = $3 WHERE id = 1 AND version = $4 RETURNING 1) SELECT pam_check(count(*) = 1, $5) FROM w`,
				cat.Version, back, data, cat.Version-1, what)
		}
	}
	for i := range tx.Policies {
		p := &tx.Policies[i]
		data, err := json.Marshal(p)
		if err != nil {
			return bump, err
		}
		back := len(tx.Policies) - 1 - i // its revision is the new counter minus back
		what := fmt.Sprintf("policy %s is not at version %d", p.ID, p.Version-1)
		if p.Version == 1 {
			b.Queue(`WITH w AS (INSERT INTO pam_policies (id, version, revision, deleted, data) VALUES ($1, $2, (SELECT policy_revision FROM pam_meta WHERE id = 1) - $3, $4, $5) ON CONFLICT (id) DO NOTHING RETURNING 1) SELECT pam_check(count(*) = 1, $6) FROM w`,
				p.ID, p.Version, back, p.Deleted, string(data), what)
		} else {
			b.Queue(`WITH w AS (UPDATE pam_policies SET version = $1, revision = (SELECT policy_revision FROM pam_meta WHERE id = 1) - $2, deleted = $3, data = $4 WHERE id = $5 AND version = $6 RETURNING 1) SELECT pam_check(count(*) = 1, $7) FROM w`,
				p.Version, back, p.Deleted, string(data), p.ID, p.Version-1, what)
		}
	}
	for i := range tx.Requests {
		r := &tx.Requests[i]
		q, args, err := sqlstore.RequestWrite(r)
		if err != nil {
			return bump, err
		}
		b.Queue(checked[q], append(args, fmt.Sprintf("request %s is not at version %d", r.ID, r.Version-1))...)
	}
	for i := range tx.Messages {
		msg := &tx.Messages[i]
		q, args, err := sqlstore.MessageWrite(msg)
		if err != nil {
			return bump, err
		}
		b.Queue(checked[q], append(args, fmt.Sprintf("message %s is not at version %d", msg.ID, msg.Version-1))...)
	}
	for i := range tx.Open {
		b.Queue(sqlstore.SQLInsertRun, sqlstore.RunArgs(&tx.Open[i])...)
	}
	for _, id := range tx.Close {
		b.Queue(sqlCloseRun, id, "run "+id)
	}
	for i := range tx.Events {
		args, err := sqlstore.AppendEventContent(append(make([]any, 0, 10), c.Digests[i][:]), &tx.Events[i])
		if err != nil {
			return bump, err
		}
		b.Queue(sqlAppendEvent, args...)
	}
	return bump, nil
}

// checked maps each of sqlstore's statements that write one row to the
// same write checked by pam_check, with the text that names the conflict
// as its last argument.
var checked = func() map[string]string {
	m := map[string]string{}
	for _, q := range []string{sqlstore.SQLInsertRequest, sqlstore.SQLUpdateRequest, sqlstore.SQLInsertMessage, sqlstore.SQLUpdateMessage} {
		m[q] = `WITH w AS (` + q + ` RETURNING 1) SELECT pam_check(count(*) = 1, $` + strconv.Itoa(strings.Count(q, "$")+1) + `) FROM w`
	}
	return m
}()

// sqlAppendEvent appends one event: it moves the head kept in pam_meta
// (whose row lock the commit holds) by H(n) = SHA-256("pam.chain.v1" ‖
// u64(n) ‖ H(n-1) ‖ D), with D, the content digest, from $1 (see
// pam.ChainHash), and stores the event with both hashes.
const sqlAppendEvent = `WITH m AS (
	UPDATE pam_meta SET last_seq = last_seq + 1, prev_hash = head_hash,
		head_hash = sha256('\x70616d2e636861696e2e7631'::bytea || int8send(last_seq + 1) || head_hash || $1::bytea)
	WHERE id = 1 RETURNING last_seq, prev_hash, head_hash)
INSERT INTO pam_events (seq, prev_hash, hash, time, type, actor, request_id, policy_id, task, outcome, detail, run)
SELECT last_seq, prev_hash, head_hash, $2, $3, $4, $5, $6, $7, $8, $9, $10 FROM m`

// sqlCloseRun closes the run $1 (pam.Tx.Close), checked by
// pam_check_open, which aborts the commit with PAM02 when it was not
// open; $2 names it.
const sqlCloseRun = `WITH w AS (` + sqlstore.SQLDeleteRun + ` RETURNING 1) SELECT pam_check_open(count(*) = 1, $2) FROM w`

// PolicyRevision implements pam.Store. Guard calls it on every operation,
// so it goes to the pool directly rather than through database/sql.
func (s *Store) PolicyRevision(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var rev int64
	err := s.pool.QueryRow(ctx, `SELECT policy_revision FROM pam_meta WHERE id = 1`).Scan(&rev)
	return rev, err
}

// Grants implements pam.Store, on the pool directly like PolicyRevision.
func (s *Store) Grants(ctx context.Context, requester string, policyIDs []string) ([]pam.Grant, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT data FROM pam_requests WHERE requester = $1 AND state = 'approved' AND policy_id = ANY($2)`, requester, policyIDs)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []pam.Grant
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			return nil, err
		}
		r, err := sqlstore.DecodeRequest(data)
		if err != nil {
			return nil, err
		}
		out = append(out, r.Grant())
	}
	return out, rows.Err()
}

// ReadGuard implements pam.GuardReader: the revision, the database's
// time and the grants in one statement, so one round trip and one
// snapshot.
func (s *Store) ReadGuard(ctx context.Context, requester string, policyIDs []string) (pam.GuardRead, error) {
	var r pam.GuardRead
	if err := ctx.Err(); err != nil {
		return r, err
	}
	rows, err := s.pool.Query(ctx, sqlReadGuard, requester, policyIDs)
	if err != nil {
		return r, err
	}
	defer rows.Close()
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&r.PolicyRevision, &r.Now, &data); err != nil {
			return r, err
		}
		if data == nil {
			continue // no grant: the one row of pam_meta
		}
		req, err := sqlstore.DecodeRequest(data)
		if err != nil {
			return r, err
		}
		r.Grants = append(r.Grants, req.Grant())
	}
	if err := rows.Err(); err != nil {
		return r, err
	}
	if s.clock != nil {
		r.Now = s.clock.Now()
	}
	return r, nil
}

// sqlReadGuard reads the revision and the time, with one row per grant
// of $1 under the policies $2 (their data), or one row with NULL data
// when there is none. The grants condition is Grants', so the same
// index serves it.
const sqlReadGuard = `SELECT m.policy_revision, now(), r.data FROM pam_meta m
	LEFT JOIN pam_requests r ON r.requester = $1 AND r.state = 'approved' AND r.policy_id = ANY($2)
	WHERE m.id = 1`
