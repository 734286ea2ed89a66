package sqlstore

import (
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/zerostanding/pam"
)

// How requests, policies, the catalog, outbox messages and events are
// kept in rows: both stores write with these and read with the Store's
// methods, so what one writes the other would read alike.

// The statements that write one request or one outbox message, new
// (Version 1) or at its next version. SQLite runs them as they are;
// PostgreSQL wraps each in a check that it wrote its row.
const (
	SQLInsertRequest = `INSERT INTO pam_requests (id, requester, policy_id, state, due, version, data, search, deciders) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING`
	SQLUpdateRequest = `UPDATE pam_requests SET requester = $1, policy_id = $2, state = $3, due = $4, version = $5, data = $6, search = $7, deciders = $8 WHERE id = $9 AND version = $10`
	SQLInsertMessage = `INSERT INTO pam_outbox (id, request_id, state, next_attempt, version, data) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING`
	SQLUpdateMessage = `UPDATE pam_outbox SET state = $1, next_attempt = $2, lease_owner = '', lease_until = 0, version = $3, data = $4 WHERE id = $5 AND version = $6`
)

// RequestWrite returns the statement that writes r, SQLInsertRequest or
// SQLUpdateRequest, and its arguments. The request is stored as given,
// as JSON; the columns beside it are what the reads select on: due
// (pam.Request.Due in Unix nanoseconds, NULL when zero), search
// (Request.SearchText) and deciders (Request.DecidersText).
func RequestWrite(r *pam.Request) (string, []any, error) {
	data, err := json.Marshal(r)
	if err != nil {
		return "", nil, err
	}
	var due any
	if d := r.Due(); !d.IsZero() {
		due = d.UnixNano()
	}
	if r.Version == 1 {
		return SQLInsertRequest, []any{r.ID, r.Requester, r.PolicyID, string(r.State), due, r.Version, string(data), r.SearchText(), r.DecidersText()}, nil
	}
	return SQLUpdateRequest, []any{r.Requester, r.PolicyID, string(r.State), due, r.Version, string(data), r.SearchText(), r.DecidersText(), r.ID, r.Version - 1}, nil
}

// DecodeRequest decodes a request stored by RequestWrite.
func DecodeRequest(data []byte) (pam.Request, error) {
	var r pam.Request
	if err := json.Unmarshal(data, &r); err != nil {
		return pam.Request{}, fmt.Errorf("sqlstore: decode request: %w", err)
	}
	return r, nil
}

// MessageWrite returns the statement that writes m, SQLInsertMessage or
// SQLUpdateMessage (which clears the lease), and its arguments.
func MessageWrite(m *pam.Message) (string, []any, error) {
	data, err := json.Marshal(m)
	if err != nil {
		return "", nil, err
	}
	if m.Version == 1 {
		return SQLInsertMessage, []any{m.ID, m.Request.ID, string(m.State), m.NextAttempt.UnixNano(), m.Version, string(data)}, nil
	}
	return SQLUpdateMessage, []any{string(m.State), m.NextAttempt.UnixNano(), m.Version, string(data), m.ID, m.Version - 1}, nil
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

func decodePolicy(data string, rev int64) (pam.Policy, error) {
	var p pam.Policy
	if err := json.Unmarshal([]byte(data), &p); err != nil {
		return pam.Policy{}, fmt.Errorf("sqlstore: decode policy: %w", err)
	}
	p.Revision = rev
	return p, nil
}

// CatalogData encodes c for the data column of pam_catalog. Its Version
// and Revision are left out (written as 0): they are kept in their own
// columns, which DecodeCatalog puts back.
func CatalogData(c *pam.Catalog) (string, error) {
	stored := *c
	stored.Version, stored.Revision = 0, 0
	data, err := json.Marshal(&stored)
	if err != nil {
		return "", fmt.Errorf("sqlstore: encode catalog: %w", err)
	}
	return string(data), nil
}

// DecodeCatalog decodes a catalog stored by CatalogData at version and
// revision.
func DecodeCatalog(data string, version, rev int64) (pam.Catalog, error) {
	var c pam.Catalog
	if err := json.Unmarshal([]byte(data), &c); err != nil {
		return pam.Catalog{}, fmt.Errorf("sqlstore: decode catalog: %w", err)
	}
	c.Version, c.Revision = version, rev
	return c, nil
}

// SQLInsertRun opens a run (pam.Tx.Open) with RunArgs: an ID that is
// open already violates the primary key. SQLDeleteRun closes one
// (pam.Tx.Close) by its ID; the store checks that it deleted a row.
const (
	SQLInsertRun = `INSERT INTO pam_runs (id, actor, task, policy_id, request_id, started, due) VALUES ($1, $2, $3, $4, $5, $6, $7)`
	SQLDeleteRun = `DELETE FROM pam_runs WHERE id = $1`
)

// RunArgs returns the arguments of SQLInsertRun for r: its times in
// Unix nanoseconds, as the events' are (RunNanos).
func RunArgs(r *pam.OpenRun) []any {
	return []any{r.ID, r.Actor, r.Task, r.PolicyID, r.RequestID, RunNanos(r.Started), RunNanos(r.Due)}
}

// RunNanos is t in Unix nanoseconds, and the zero time the least
// int64, before every other, so that it reads back as zero and a zero
// Due is due by any time, as pam.OpenRun's are in memory.
func RunNanos(t time.Time) int64 {
	if t.IsZero() {
		return math.MinInt64
	}
	return t.UnixNano()
}

// runTime reverses RunNanos, in UTC.
func runTime(ns int64) time.Time {
	if ns == math.MinInt64 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

// runColumns are the columns scanRun reads, in order.
const runColumns = `id, actor, task, policy_id, request_id, started, due`

func scanRun(rows *sql.Rows) (pam.OpenRun, error) {
	var r pam.OpenRun
	var started, due int64
	if err := rows.Scan(&r.ID, &r.Actor, &r.Task, &r.PolicyID, &r.RequestID, &started, &due); err != nil {
		return r, err
	}
	r.Started, r.Due = runTime(started), runTime(due)
	return r, nil
}

// AppendEventContent appends to args the columns of e that its content
// digest covers, in this order: time, type, actor, request_id,
// policy_id, task, outcome, detail, run. The sequence number and the
// hashes are the committing store's to add.
func AppendEventContent(args []any, e *pam.Event) ([]any, error) {
	var detail any
	if len(e.Detail) > 0 {
		b, err := json.Marshal(e.Detail)
		if err != nil {
			return nil, err
		}
		detail = string(b)
	}
	return append(args, e.Time.UnixNano(), string(e.Type), e.Actor, e.RequestID, e.PolicyID, e.Task, string(e.Outcome), detail, e.Run), nil
}

// eventColumns are the columns scanEvent reads, in order.
const eventColumns = eventColumnsV1 + `, run`

// eventColumnsV1 are the columns of events before runs were stored
// (pam.Event.Run): the data migrations that run on schemas without the
// run column select them and an empty text in its place.
const eventColumnsV1 = `seq, time, type, actor, request_id, policy_id, task, outcome, detail, prev_hash, hash`

// scanEvent decodes a row of eventColumns. Every cell is read as it is
// stored and converted strictly (SQLite keeps whatever type a writer
// gave a cell), so that a row that does not decode strictly is returned
// with pam.Event.Malformed saying why, rather than failing the read:
// the trail stays readable and Verify reports the row as tampering.
// Events stored before the hash chain existed have no hashes until
// their migration chains them.
func scanEvent(rows *sql.Rows) (pam.Event, error) {
	var c [12]any
	if err := rows.Scan(&c[0], &c[1], &c[2], &c[3], &c[4], &c[5], &c[6], &c[7], &c[8], &c[9], &c[10], &c[11]); err != nil {
		return pam.Event{}, err
	}
	return decodeEvent(c), nil
}

// decodeEvent converts the cells of eventColumns. What does not convert
// is named in Malformed, and the field holds what could be read.
func decodeEvent(c [12]any) pam.Event {
	var e pam.Event
	var bad []string
	var ok bool
	if e.Seq, ok = c[0].(int64); !ok {
		bad = append(bad, "seq is "+kind(c[0]))
	} else if e.Seq < 1 {
		bad = append(bad, fmt.Sprintf("seq %d: sequence numbers start at 1", e.Seq))
	}
	if ns, ok := c[1].(int64); ok {
		e.Time = time.Unix(0, ns).UTC()
	} else {
		bad = append(bad, "time is "+kind(c[1]))
	}
	var typ, outcome string
	for _, f := range [...]struct {
		name string
		cell any
		to   *string
	}{{"type", c[2], &typ}, {"actor", c[3], &e.Actor}, {"request_id", c[4], &e.RequestID}, {"policy_id", c[5], &e.PolicyID},
		{"task", c[6], &e.Task}, {"outcome", c[7], &outcome}, {"run", c[11], &e.Run}} {
		switch v := f.cell.(type) {
		case string:
			*f.to = v
		case []byte:
			*f.to = string(v)
			bad = append(bad, f.name+" is a blob")
		default:
			bad = append(bad, f.name+" is "+kind(v))
		}
	}
	e.Type, e.Outcome = pam.EventType(typ), pam.Outcome(outcome)
	switch v := c[8].(type) {
	case nil:
	case string:
		var err error
		if e.Detail, err = pam.DecodeDetail([]byte(v)); err != nil {
			why := err.Error()
			if ve := (*pam.ValidationError)(nil); errors.As(err, &ve) {
				why = ve.Problem
			}
			bad = append(bad, fmt.Sprintf("detail %s: %s", quote(v), why))
		}
	default:
		bad = append(bad, "detail is "+kind(v))
	}
	for i, f := range [...]struct {
		name string
		to   *string
	}{{"prev_hash", &e.PrevHash}, {"hash", &e.Hash}} {
		switch v := c[9+i].(type) {
		case []byte:
			*f.to = hex.EncodeToString(v)
			if len(v) != pam.HashSize {
				bad = append(bad, fmt.Sprintf("%s is %d bytes, not %d", f.name, len(v), pam.HashSize))
			}
		default:
			bad = append(bad, f.name+" is "+kind(v))
		}
	}
	if len(bad) > 0 {
		e.Malformed = strings.Join(bad, "; ")
	}
	return e
}

// kind names the type of a cell as read through database/sql.
func kind(v any) string {
	switch v := v.(type) {
	case nil:
		return "NULL"
	case int64:
		return fmt.Sprintf("an integer (%d)", v)
	case float64:
		return fmt.Sprintf("a real (%g)", v)
	case string:
		return "a text " + quote(v)
	case []byte:
		return fmt.Sprintf("a blob of %d bytes", len(v))
	case bool:
		return fmt.Sprintf("a boolean (%t)", v)
	default:
		return fmt.Sprintf("a %T", v)
	}
}

// quote quotes s for a Malformed message, cut to 200 bytes.
func quote(s string) string {
	if len(s) > 200 {
		return strconv.Quote(s[:200]) + "…"
	}
	return strconv.Quote(s)
}
