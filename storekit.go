package pam

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"time"
	"unicode/utf8"
)

// This file is for store authors: what every Store must do the same way,
// written once so that the stores cannot drift apart. store/storetest
// checks that they use it.

// Validate refuses a Tx that writes one policy, request or outbox message
// twice: which of the two writes would win is not defined, so no store
// may pick one. It returns an error wrapping ErrInvalid, as Commit does
// for it: the Tx is malformed, and no retry would help.
//
// For store authors: Commit calls it before writing anything.
func (tx *Tx) Validate() error {
	if id, ok := repeated(tx.Policies, func(p *Policy) string { return p.ID }); ok {
		return fmt.Errorf("%w: policy %s twice in one commit", ErrInvalid, id)
	}
	if id, ok := repeated(tx.Requests, func(r *Request) string { return r.ID }); ok {
		return fmt.Errorf("%w: request %s twice in one commit", ErrInvalid, id)
	}
	if id, ok := repeated(tx.Messages, func(m *Message) string { return m.ID }); ok {
		return fmt.Errorf("%w: message %s twice in one commit", ErrInvalid, id)
	}
	if id, ok := repeated(tx.Open, func(r *OpenRun) string { return r.ID }); ok {
		return fmt.Errorf("%w: run %s twice in one commit", ErrInvalid, id)
	}
	if id, ok := repeated(tx.Close, func(s *string) string { return *s }); ok {
		return fmt.Errorf("%w: run %s twice in one commit", ErrInvalid, id)
	}
	for i := range tx.Open {
		if slices.Contains(tx.Close, tx.Open[i].ID) {
			return fmt.Errorf("%w: run %s twice in one commit", ErrInvalid, tx.Open[i].ID)
		}
	}
	for i := range tx.Open {
		if tx.Open[i].ID == "" {
			return fmt.Errorf("%w: a run without an ID", ErrInvalid)
		}
	}
	return nil
}

// repeated returns the first ID that occurs twice in s. A commit writes a
// handful of items, mostly one: comparing pairs allocates nothing; a map
// takes over for the sweeper's large ones.
func repeated[T any](s []T, id func(*T) string) (string, bool) {
	if len(s) <= 16 {
		for i := range s {
			for j := range i {
				if id(&s[i]) == id(&s[j]) {
					return id(&s[i]), true
				}
			}
		}
		return "", false
	}
	seen := make(map[string]struct{}, len(s))
	for i := range s {
		k := id(&s[i])
		if _, ok := seen[k]; ok {
			return k, true
		}
		seen[k] = struct{}{}
	}
	return "", false
}

// ChainHead is where a stored audit trail ends: the sequence number and
// the hash (64 hexadecimal digits) of its last event. The zero value is
// the empty trail, whose hash is GenesisHash.
type ChainHead struct {
	Seq  int64
	Hash string
}

// Chain links events to the trail that ends at h, in order: event i gets
// Seq h.Seq+i+1, the hash before it as PrevHash, and Hash as specified
// in chain.go. digests, when not nil, holds the events' content digests
// (Event.ContentDigest), computed beforehand, outside the store's lock;
// nil computes them here. Chain returns the trail's new head, or an error
// wrapping ErrInvalid, with events untouched, when h.Hash is not a hash.
//
// For store authors: Commit calls it inside its serialised write, with
// the head of the stored trail, so that however many writers share the
// store the trail stays one chain. A store that chains in its database
// (store/postgres) calls it to fill in the fields of tx.Events.
func (h ChainHead) Chain(events []Event, digests [][HashSize]byte) (ChainHead, error) {
	if digests != nil && len(digests) != len(events) {
		return h, fmt.Errorf("%w: %d digests for %d events", ErrInvalid, len(digests), len(events))
	}
	if h.Seq == 0 && h.Hash == "" {
		h.Hash = GenesisHash
	}
	prev, err := ParseHash(h.Hash)
	if err != nil {
		return h, fmt.Errorf("the hash of event %d: %w", h.Seq, err)
	}
	for i := range events {
		e := &events[i]
		var d [HashSize]byte
		if digests != nil {
			d = digests[i]
		} else {
			d = e.ContentDigest()
		}
		seq := h.Seq + 1
		prev = ChainHash(seq, prev, d)
		e.Seq, e.PrevHash, e.Hash = seq, h.Hash, hexHash(&prev)
		h = ChainHead{Seq: seq, Hash: e.Hash}
	}
	return h, nil
}

// hexHash is hex.EncodeToString of a hash, with one allocation rather
// than two.
func hexHash(h *[HashSize]byte) string {
	var b [2 * HashSize]byte
	hex.Encode(b[:], h[:])
	return string(b[:])
}

// Due returns when something must next happen to r: for a Pending
// request the earliest of PendingUntil, RemindAt and EscalateAt (those
// set); ExpiresAt for an Approved one; for a break-glass request whose
// review is pending, also its BreakGlass.NotifyAt, whatever its state
// (the review outlives the grant); the zero time for the others, which
// never time out.
//
// For store authors: RequestFilter.DueBy selects on it (a request is due
// by t when Due is not zero and not after t); a store that indexes due
// requests stores it when it writes the request.
func (r *Request) Due() time.Time {
	due := r.deadline()
	if r.State == Pending {
		for _, t := range []time.Time{r.RemindAt, r.EscalateAt} {
			if !t.IsZero() && t.Before(due) {
				due = t
			}
		}
	}
	if v := r.BreakGlass; v != nil && v.State == ReviewPending && !v.NotifyAt.IsZero() && (due.IsZero() || v.NotifyAt.Before(due)) {
		due = v.NotifyAt
	}
	return due
}

// deadline returns when r's recorded state times out: PendingUntil for
// a Pending request, ExpiresAt for an Approved one, the zero time for
// the others.
func (r *Request) deadline() time.Time {
	switch r.State {
	case Pending:
		return r.PendingUntil
	case Approved:
		return r.ExpiresAt
	}
	return time.Time{}
}

// ClaimableAt reports whether ClaimMessages may lease msg at now: it is
// MessagePending, its next attempt has come and no lease holds it.
//
// For store authors: the SQL stores select state = 'pending' AND
// next_attempt <= now AND lease_until <= now (0 when there is no lease).
func (msg *Message) ClaimableAt(now time.Time) bool {
	return msg.State == MessagePending && !msg.NextAttempt.After(now) && !msg.LeaseUntil.After(now)
}

// SortClaims puts msgs in the order ClaimMessages claims them: oldest
// NextAttempt first, then by ID in byte order.
//
// For store authors: a store sorts the claimable messages with it before
// taking the first limit of them. The SQL stores select them with ORDER
// BY next_attempt, id (next_attempt in Unix nanoseconds), the same order
// for the IDs the engine makes whatever the collation, and sort the rows
// the database returns with it.
func SortClaims(msgs []Message) {
	sort.Slice(msgs, func(i, j int) bool {
		a, b := &msgs[i], &msgs[j]
		if !a.NextAttempt.Equal(b.NextAttempt) {
			return a.NextAttempt.Before(b.NextAttempt)
		}
		return a.ID < b.ID
	})
}

// DecodeDetail decodes an event's Detail as a store keeps it: a JSON
// object whose values are strings, each key once, and nothing after it.
// Anything else is a *ValidationError (ErrInvalid): a stored Detail that
// does not decode strictly was not written by a store (which encodes it
// with encoding/json), and a lenient decoder would hide how: a repeated
// key, for one, that encoding/json reads as its last value while SQLite's
// json_extract reads the first.
//
// For store authors: an event whose Detail does not decode is still
// returned by Events, with Malformed saying why (see Event.Malformed).
func DecodeDetail(b []byte) (map[string]string, error) {
	// The common case costs one json.Unmarshal and one pass over b.
	// Outside its strings, an object of strings holds only braces,
	// commas, whitespace and one colon per member: counting the colons
	// finds a repeated key, and any other byte is a value that is not a
	// string (null, which json.Unmarshal would take as ""). Whatever is
	// left, decodeDetail judges token by token, and says why.
	if members, ok := detailOutline(b); ok && utf8.Valid(b) {
		var m map[string]string
		if json.Unmarshal(b, &m) == nil && m != nil && len(m) == members {
			return m, nil
		}
	}
	return decodeDetail(b)
}

// detailOutline counts the colons outside the strings of b, and reports
// whether every other byte there is a brace, a comma or whitespace.
func detailOutline(b []byte) (colons int, ok bool) {
	inString, escaped := false, false
	for _, c := range b {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == ':':
			colons++
		case c == '{' || c == '}' || c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r':
		default:
			return 0, false
		}
	}
	return colons, !inString
}

// decodeDetail is DecodeDetail token by token: slower, and it says what
// is wrong.
func decodeDetail(b []byte) (map[string]string, error) {
	bad := func(format string, args ...any) error { return invalid("Detail", format, args...) }
	if !utf8.Valid(b) {
		return nil, bad("not UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	syntax := func(err error) error {
		if errors.Is(err, io.EOF) {
			return bad("the JSON ends early")
		}
		return bad("%v", err)
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, syntax(err)
	}
	if tok != json.Delim('{') {
		return nil, bad("not an object")
	}
	m := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, syntax(err)
		}
		k := tok.(string) // inside an object, Token returns a key or fails
		if tok, err = dec.Token(); err != nil {
			return nil, syntax(err)
		}
		v, ok := tok.(string)
		if !ok {
			return nil, bad("the value of %q is not a string", k)
		}
		if _, dup := m[k]; dup {
			return nil, bad("key %q twice", k)
		}
		m[k] = v
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, syntax(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, bad("data after the object")
	}
	return m, nil
}
