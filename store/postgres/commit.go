package postgres

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/internal/sqlstore"
)

// Commit implements pam.Store in one round trip: every statement goes in
// one pgx batch, which PostgreSQL runs as one implicit transaction. The
// first statement bumps the counters row, taking its lock, so commits are
// serialised across replicas and sequence numbers stay gapless; each
// compare-and-swap, the catalog's included, is checked in the database by
// pam_check, which aborts the whole transaction on a mismatch.
func (s *Store) Commit(ctx context.Context, tx *pam.Tx) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := tx.Validate(); err != nil {
		return err
	}
	// The catalog and the policies take consecutive revisions from
	// pam_meta, the catalog first.
	revs := len(tx.Policies)
	if tx.Catalog != nil {
		revs++
	}
	b := &pgx.Batch{}
	b.Queue(`UPDATE pam_meta SET policy_revision = policy_revision + $1 WHERE id = 1 RETURNING last_seq, policy_revision, head_hash`, revs)
	if tx.PolicyRevision > 0 {
		// Under the row lock the UPDATE took: the revision before it.
		b.Queue(`SELECT pam_check((SELECT policy_revision FROM pam_meta WHERE id = 1) - $1 = $2, $3)`,
			revs, tx.PolicyRevision, fmt.Sprintf("the policy revision is not %d", tx.PolicyRevision))
	}
	for _, u := range tx.Unchanged {
		b.Queue(`SELECT pam_check(coalesce((SELECT version FROM pam_requests WHERE id = $1), 0) = $2, $3)`,
			u.ID, u.Version, fmt.Sprintf("request %s is not at version %d", u.ID, u.Version))
	}
	if c := tx.Catalog; c != nil {
		data, err := sqlstore.CatalogData(c)
		if err != nil {
			return err
		}
		back := len(tx.Policies) // its revision is the new counter minus back
		what := fmt.Sprintf("the catalog is not at version %d", c.Version-1)
		if c.Version == 1 {
			b.Queue(`WITH w AS (INSERT INTO pam_catalog (id, version, revision, data) VALUES (1, $1, (SELECT policy_revision FROM pam_meta WHERE id = 1) - $2, $3) ON CONFLICT (id) DO NOTHING RETURNING 1) SELECT pam_check(count(*) = 1, $4) FROM w`,
				c.Version, back, data, what)
		} else {
			b.Queue(`WITH w AS (UPDATE pam_catalog SET version = $1, revision = (SELECT policy_revision FROM pam_meta WHERE id = 1) - $2, data = $3 WHERE id = 1 AND version = $4 RETURNING 1) SELECT pam_check(count(*) = 1, $5) FROM w`,
				c.Version, back, data, c.Version-1, what)
		}
	}
	for i := range tx.Policies {
		p := &tx.Policies[i]
		data, err := json.Marshal(p)
		if err != nil {
			return err
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
			return err
		}
		b.Queue(checked[q], append(args, fmt.Sprintf("request %s is not at version %d", r.ID, r.Version-1))...)
	}
	for i := range tx.Messages {
		msg := &tx.Messages[i]
		q, args, err := sqlstore.MessageWrite(msg)
		if err != nil {
			return err
		}
		b.Queue(checked[q], append(args, fmt.Sprintf("message %s is not at version %d", msg.ID, msg.Version-1))...)
	}
	for i := range tx.Open {
		b.Queue(sqlstore.SQLInsertRun, sqlstore.RunArgs(&tx.Open[i])...)
	}
	for _, id := range tx.Close {
		b.Queue(sqlCloseRun, id, "run "+id)
	}
	if notifies(tx) {
		b.Queue(sqlNotify)
	}
	digests := make([][pam.HashSize]byte, len(tx.Events))
	for i := range tx.Events {
		e := &tx.Events[i]
		digests[i] = e.ContentDigest()
		args, err := sqlstore.AppendEventContent(append(make([]any, 0, 10), digests[i][:]), e)
		if err != nil {
			return err
		}
		b.Queue(sqlAppendEvent, args...)
	}

	br := s.pool.SendBatch(ctx, b)
	var lastSeq, lastRev int64
	var hash []byte
	err := br.QueryRow().Scan(&lastSeq, &lastRev, &hash)
	for i := 1; err == nil && i < b.Len(); i++ {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		switch pgCode(err) {
		case "PAM01", "23505", "40001", "40P01":
			return fmt.Errorf("%w: %w", pam.ErrConflict, err)
		case "PAM02":
			return fmt.Errorf("%w: %w", pam.ErrNotFound, err)
		}
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		return err
	}
	if tx.Catalog != nil {
		tx.Catalog.Revision = lastRev - int64(len(tx.Policies))
	}
	for i := range tx.Policies {
		tx.Policies[i].Revision = lastRev - int64(len(tx.Policies)-1-i)
	}
	// The database chained the events from the head it held; the same
	// chaining here gives tx.Events their fields.
	head := pam.ChainHead{Seq: lastSeq, Hash: hex.EncodeToString(hash)}
	if _, err := head.Chain(tx.Events, digests); err != nil {
		return fmt.Errorf("postgres: committed, but the head it was chained to is not a hash: %w", err)
	}
	return nil
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
