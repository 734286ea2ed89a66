// Package memory is an in-process pam.Store: for tests, examples and hosts
// that keep nothing across restarts. It passes store/storetest.
package memory

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zerostanding/pam"
)

// Store keeps everything in maps under one lock. What Guard reads on
// every call, the policy revision and the actor's grants, is also kept
// where a read writes nothing shared (an atomic and a sync.Map of
// immutable slices), so that Guards on many cores do not contend on the
// lock's reader count. The zero value is not usable; call New.
type Store struct {
	mu       sync.RWMutex
	policies map[string]pam.Policy
	polLog   []string     // polLog[i] is the policy written at revision i+1, "" for the catalog
	rev      atomic.Int64 // len(polLog), for PolicyRevision
	catalog  pam.Catalog
	requests map[string]pam.Request
	ids      []string            // request IDs, sorted
	mine     map[string][]string // requester → request IDs, sorted
	grants   sync.Map            // requester → []pam.Grant of the requests recorded Approved, replaced, never changed
	events   eventLog
	head     pam.ChainHead // where the trail ends
	messages map[string]pam.Message
	pending  map[string]struct{} // IDs of messages in MessagePending
	runs     map[string]pam.OpenRun
}

// eventLog holds the audit trail in fixed-size chunks, so appending never
// copies what is already there.
type eventLog struct {
	chunks [][]pam.Event
	n      int64
}

const chunkSize = 4096

func (l *eventLog) append(e pam.Event) {
	if l.n%chunkSize == 0 {
		l.chunks = append(l.chunks, make([]pam.Event, 0, chunkSize))
	}
	last := &l.chunks[len(l.chunks)-1]
	*last = append(*last, e)
	l.n++
}

// at returns the event with sequence number seq (1-based).
func (l *eventLog) at(seq int64) *pam.Event {
	i := seq - 1
	return &l.chunks[i/chunkSize][i%chunkSize]
}

var _ pam.OutboxStore = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{
		policies: map[string]pam.Policy{},
		requests: map[string]pam.Request{},
		messages: map[string]pam.Message{},
		pending:  map[string]struct{}{},
		runs:     map[string]pam.OpenRun{},
		mine:     map[string][]string{},
	}
}

// Commit implements pam.Store.
func (s *Store) Commit(ctx context.Context, tx *pam.Tx) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := tx.Validate(); err != nil {
		return err
	}
	// Content digests do not depend on the trail: compute them before
	// taking the lock.
	var few [4][pam.HashSize]byte
	digests := few[:0]
	if len(tx.Events) > len(few) {
		digests = make([][pam.HashSize]byte, 0, len(tx.Events))
	}
	for i := range tx.Events {
		digests = append(digests, tx.Events[i].ContentDigest())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range tx.Policies {
		if p.Version != s.policies[p.ID].Version+1 {
			return fmt.Errorf("%w: policy %s is at version %d, write is for %d", pam.ErrConflict, p.ID, s.policies[p.ID].Version, p.Version-1)
		}
	}
	for _, r := range tx.Requests {
		if r.Version != s.requests[r.ID].Version+1 {
			return fmt.Errorf("%w: request %s is at version %d, write is for %d", pam.ErrConflict, r.ID, s.requests[r.ID].Version, r.Version-1)
		}
	}
	for _, msg := range tx.Messages {
		if msg.Version != s.messages[msg.ID].Version+1 {
			return fmt.Errorf("%w: message %s is at version %d, write is for %d", pam.ErrConflict, msg.ID, s.messages[msg.ID].Version, msg.Version-1)
		}
	}
	if tx.PolicyRevision > 0 && int64(len(s.polLog)) != tx.PolicyRevision {
		return fmt.Errorf("%w: the policy revision is %d, not %d", pam.ErrConflict, len(s.polLog), tx.PolicyRevision)
	}
	if c := tx.Catalog; c != nil && c.Version != s.catalog.Version+1 {
		return fmt.Errorf("%w: the catalog is at version %d, write is for %d", pam.ErrConflict, s.catalog.Version, c.Version-1)
	}
	for _, u := range tx.Unchanged {
		if s.requests[u.ID].Version != u.Version {
			return fmt.Errorf("%w: request %s is at version %d, not %d", pam.ErrConflict, u.ID, s.requests[u.ID].Version, u.Version)
		}
	}
	for i := range tx.Open {
		if _, ok := s.runs[tx.Open[i].ID]; ok {
			return fmt.Errorf("%w: run %s is open already", pam.ErrConflict, tx.Open[i].ID)
		}
	}
	for _, id := range tx.Close {
		if _, ok := s.runs[id]; !ok {
			return fmt.Errorf("%w: run %s is not open", pam.ErrNotFound, id)
		}
	}
	head, err := s.head.Chain(tx.Events, digests)
	if err != nil {
		return err
	}
	if tx.Catalog != nil {
		s.polLog = append(s.polLog, "") // the catalog's revision: no policy
		s.catalog = tx.Catalog.Clone()
		s.catalog.Revision = int64(len(s.polLog))
		tx.Catalog.Revision = s.catalog.Revision
	}
	for i := range tx.Policies {
		p := clonePolicy(tx.Policies[i])
		s.polLog = append(s.polLog, p.ID)
		p.Revision = int64(len(s.polLog))
		s.policies[p.ID] = p
		tx.Policies[i].Revision = p.Revision
	}
	for _, r := range tx.Requests {
		r = cloneRequest(r)
		if _, ok := s.requests[r.ID]; !ok {
			// IDs grow with time: an insert is mostly an append.
			i, _ := slices.BinarySearch(s.ids, r.ID)
			s.ids = slices.Insert(s.ids, i, r.ID)
			ids := s.mine[r.Requester]
			i, _ = slices.BinarySearch(ids, r.ID)
			s.mine[r.Requester] = slices.Insert(ids, i, r.ID)
		}
		s.requests[r.ID] = r
		s.setGrant(&r)
	}
	for _, msg := range tx.Messages {
		msg.Request = cloneRequest(msg.Request)
		msg.LeaseOwner, msg.LeaseUntil = "", time.Time{}
		s.messages[msg.ID] = msg
		if msg.State == pam.MessagePending {
			s.pending[msg.ID] = struct{}{}
		} else {
			delete(s.pending, msg.ID)
		}
	}
	for _, r := range tx.Open {
		s.runs[r.ID] = r
	}
	for _, id := range tx.Close {
		delete(s.runs, id)
	}
	s.head = head
	s.rev.Store(int64(len(s.polLog)))
	for _, e := range tx.Events {
		e.Detail = maps.Clone(e.Detail)
		s.events.append(e)
	}
	return nil
}

// setGrant puts r's grant among its requester's if r is Approved, and
// takes it out otherwise. The slice is replaced, not changed: readers
// hold the old one. Called with s.mu held.
func (s *Store) setGrant(r *pam.Request) {
	var old []pam.Grant
	if v, ok := s.grants.Load(r.Requester); ok {
		old = v.([]pam.Grant)
	}
	i := slices.IndexFunc(old, func(g pam.Grant) bool { return g.RequestID == r.ID })
	if i < 0 && r.State != pam.Approved {
		return
	}
	gs := make([]pam.Grant, 0, len(old)+1)
	gs = append(gs, old...)
	switch {
	case r.State == pam.Approved && i >= 0:
		gs[i] = r.Grant()
	case r.State == pam.Approved:
		gs = append(gs, r.Grant())
	default:
		gs = slices.Delete(gs, i, i+1)
	}
	s.grants.Store(r.Requester, gs)
}

// Policy implements pam.Store.
func (s *Store) Policy(ctx context.Context, id string) (pam.Policy, error) {
	if err := ctx.Err(); err != nil {
		return pam.Policy{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	p, ok := s.policies[id]
	if !ok {
		return pam.Policy{}, fmt.Errorf("%w: policy %q", pam.ErrNotFound, id)
	}
	return clonePolicy(p), nil
}

// PolicyChanges implements pam.Store.
func (s *Store) PolicyChanges(ctx context.Context, since int64) ([]pam.Policy, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	rev := int64(len(s.polLog))
	if since < 0 {
		since = 0
	}
	var out []pam.Policy
	seen := map[string]bool{}
	for i := rev - 1; i >= since; i-- {
		id := s.polLog[i]
		if seen[id] || id == "" {
			continue
		}
		seen[id] = true
		out = append(out, clonePolicy(s.policies[id]))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Revision < out[j].Revision })
	return out, rev, nil
}

// Catalog implements pam.Store.
func (s *Store) Catalog(ctx context.Context) (pam.Catalog, error) {
	if err := ctx.Err(); err != nil {
		return pam.Catalog{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.catalog.Clone(), nil
}

// PolicyRevision implements pam.Store.
func (s *Store) PolicyRevision(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return s.rev.Load(), nil
}

// Request implements pam.Store.
func (s *Store) Request(ctx context.Context, id string) (pam.Request, error) {
	if err := ctx.Err(); err != nil {
		return pam.Request{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.requests[id]
	if !ok {
		return pam.Request{}, fmt.Errorf("%w: request %q", pam.ErrNotFound, id)
	}
	return cloneRequest(r), nil
}

// Requests implements pam.Store.
func (s *Store) Requests(ctx context.Context, f pam.RequestFilter) ([]pam.Request, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	ids := s.ids
	if f.Requester != "" {
		// One requester's: MaxPending asks on every Submit, and there
		// may be many requests of others.
		ids = s.mine[f.Requester]
	}
	// The IDs past the cursor, read in f's order.
	lo, _ := slices.BinarySearch(ids, f.After)
	switch {
	case !f.Newest:
		ids = ids[lo:]
	case f.After != "":
		ids = ids[:lo]
	}
	var out []pam.Request
	for k := range ids {
		id := ids[k]
		if f.Newest {
			id = ids[len(ids)-1-k]
		}
		if f.Before(f.After, id) {
			continue
		}
		r := s.requests[id]
		if !f.Matches(&r) {
			continue
		}
		out = append(out, cloneRequest(r))
		if f.Limit > 0 && len(out) == f.Limit {
			break
		}
	}
	return out, nil
}

// Grants implements pam.Store.
func (s *Store) Grants(ctx context.Context, requester string, policyIDs []string) ([]pam.Grant, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	v, ok := s.grants.Load(requester)
	if !ok {
		return nil, nil
	}
	var out []pam.Grant
	for _, g := range v.([]pam.Grant) {
		if slices.Contains(policyIDs, g.PolicyID) {
			g.Bind = maps.Clone(g.Bind) // shared with the stored request
			out = append(out, g)
		}
	}
	return out, nil
}

// Events implements pam.Store.
func (s *Store) Events(ctx context.Context, f pam.EventFilter) ([]pam.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	// The Seq range, inclusive: events here are numbered from 1.
	lo, hi := int64(1), s.events.n
	if f.After >= hi || f.Before != 0 && f.Before <= lo {
		return nil, nil
	}
	if f.After >= lo {
		lo = f.After + 1
	}
	if f.Before != 0 && f.Before <= hi {
		hi = f.Before - 1
	}
	var out []pam.Event
	add := func(seq int64) bool {
		e := *s.events.at(seq)
		if f.Matches(&e) {
			e.Detail = maps.Clone(e.Detail)
			out = append(out, e)
		}
		return f.Limit > 0 && len(out) == f.Limit
	}
	if f.Descending {
		for seq := hi; seq >= lo && !add(seq); seq-- {
		}
	} else {
		for seq := lo; seq <= hi && !add(seq); seq++ {
		}
	}
	return out, nil
}

func clonePolicy(p pam.Policy) pam.Policy {
	p.ApproverGroups = slices.Clone(p.ApproverGroups)
	p.RequesterGroups = slices.Clone(p.RequesterGroups)
	p.RequireBind = slices.Clone(p.RequireBind)
	if p.BreakGlass != nil {
		bg := *p.BreakGlass
		p.BreakGlass = &bg
	}
	return p
}

// cloneRequest copies what r shares: its decisions, its bound values
// (strings, numbers and booleans: a shallow copy is whole) and its
// break-glass review.
func cloneRequest(r pam.Request) pam.Request {
	r.Decisions = slices.Clone(r.Decisions)
	r.Bind = maps.Clone(r.Bind)
	if r.Extension != nil {
		x := *r.Extension
		x.Decisions = slices.Clone(x.Decisions)
		r.Extension = &x
	}
	if r.BreakGlass != nil {
		v := *r.BreakGlass
		r.BreakGlass = &v
	}
	return r
}

// ClaimMessages implements pam.Store.
func (s *Store) ClaimMessages(ctx context.Context, owner string, now, until time.Time, limit int) ([]pam.Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var due []pam.Message
	for id := range s.pending {
		if m := s.messages[id]; m.ClaimableAt(now) {
			due = append(due, m)
		}
	}
	pam.SortClaims(due)
	if limit > 0 && len(due) > limit {
		due = due[:limit]
	}
	for i := range due {
		due[i].LeaseOwner, due[i].LeaseUntil, due[i].Version = owner, until, due[i].Version+1
		s.messages[due[i].ID] = due[i]
		due[i].Request = cloneRequest(due[i].Request)
	}
	return due, nil
}

// Messages implements pam.Store.
func (s *Store) Messages(ctx context.Context, f pam.MessageFilter) ([]pam.Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []pam.Message
	for _, m := range s.messages {
		if m.ID > f.After && f.Matches(&m) {
			m.Request = cloneRequest(m.Request)
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

// OpenRuns implements pam.Store.
func (s *Store) OpenRuns(ctx context.Context, dueBy time.Time, limit int) ([]pam.OpenRun, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	var out []pam.OpenRun
	for _, r := range s.runs {
		if !r.Due.After(dueBy) {
			out = append(out, r)
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b pam.OpenRun) int {
		if c := a.Due.Compare(b.Due); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Counts implements pam.Counter.
func (s *Store) Counts(ctx context.Context) (pam.Counts, error) {
	if err := ctx.Err(); err != nil {
		return pam.Counts{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := pam.Counts{PendingMessages: int64(len(s.pending))}
	for _, r := range s.requests {
		if r.State == pam.Pending {
			c.PendingRequests++
		}
	}
	for _, m := range s.messages {
		if m.State == pam.MessageFailed {
			c.ParkedMessages++
		}
	}
	return c, nil
}
