// Package fakes holds the hand-written test doubles the tests share.
package fakes

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zerostanding/pam"
)

var (
	_ pam.Notifier  = (*Notifier)(nil)
	_ pam.AuditSink = (*Sink)(nil)
	_ pam.Store     = (*Store)(nil)
	_ pam.Directory = (*Directory)(nil)
)

// Directory wraps a pam.Directory, counts the IsMember calls, and fails
// those for a group while Fail has set an error for it.
type Directory struct {
	pam.Directory
	fail  atomic.Pointer[map[string]error]
	calls atomic.Int64
}

// Fail makes IsMember of group fail with err (nil: answer again).
func (d *Directory) Fail(group string, err error) {
	for {
		old := d.fail.Load()
		next := map[string]error{}
		if old != nil {
			maps.Copy(next, *old)
		}
		if err == nil {
			delete(next, group)
		} else {
			next[group] = err
		}
		if d.fail.CompareAndSwap(old, &next) {
			return
		}
	}
}

// IsMember implements pam.Directory.
func (d *Directory) IsMember(ctx context.Context, group, user string) (bool, error) {
	d.calls.Add(1)
	if f := d.fail.Load(); f != nil && (*f)[group] != nil {
		return false, (*f)[group]
	}
	return d.Directory.IsMember(ctx, group, user)
}

// Calls returns how many times IsMember was called.
func (d *Directory) Calls() int64 { return d.calls.Load() }

// Notifier records notifications, and fails them while Err is set.
type Notifier struct {
	mu   sync.Mutex
	got  []pam.Notification
	fail error
}

// Notify implements pam.Notifier.
func (n *Notifier) Notify(_ context.Context, x pam.Notification) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fail != nil {
		return n.fail
	}
	n.got = append(n.got, x)
	return nil
}

// Fail makes later notifications fail with err (nil: succeed again).
func (n *Notifier) Fail(err error) {
	n.mu.Lock()
	n.fail = err
	n.mu.Unlock()
}

// Take returns the notifications so far and forgets them.
func (n *Notifier) Take() []pam.Notification {
	n.mu.Lock()
	defer n.mu.Unlock()
	got := n.got
	n.got = nil
	return got
}

// Sink records audit events; it fails while Fail has set an error, and
// hangs until the write's context ends while Hang is on.
type Sink struct {
	mu    sync.Mutex
	got   []pam.Event
	fail  error
	hang  bool
	calls int
}

// Write implements pam.AuditSink.
func (s *Sink) Write(ctx context.Context, events []pam.Event) error {
	s.mu.Lock()
	s.calls++
	if s.hang {
		s.mu.Unlock()
		<-ctx.Done()
		return ctx.Err()
	}
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.got = append(s.got, events...)
	return nil
}

// Hang makes later writes block until their context ends (false: work
// again).
func (s *Sink) Hang(on bool) {
	s.mu.Lock()
	s.hang = on
	s.mu.Unlock()
}

// Calls returns the number of writes attempted.
func (s *Sink) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// Checkpoints records checkpoints.
type Checkpoints struct {
	mu  sync.Mutex
	got []pam.Checkpoint
}

var _ pam.CheckpointSink = (*Checkpoints)(nil)

// WriteCheckpoint implements pam.CheckpointSink.
func (c *Checkpoints) WriteCheckpoint(_ context.Context, cp pam.Checkpoint) error {
	c.mu.Lock()
	c.got = append(c.got, cp)
	c.mu.Unlock()
	return nil
}

// All returns the checkpoints received so far.
func (c *Checkpoints) All() []pam.Checkpoint {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]pam.Checkpoint(nil), c.got...)
}

// Fail makes later writes fail with err (nil: succeed again).
func (s *Sink) Fail(err error) {
	s.mu.Lock()
	s.fail = err
	s.mu.Unlock()
}

// Events returns the events received so far.
func (s *Sink) Events() []pam.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]pam.Event(nil), s.got...)
}

// Store wraps a pam.Store, fails commits that FailCommit picks, fails
// reads of the trail while FailEvents has set an error and reads of
// requests while FailRequests has, and counts calls to Requests.
type Store struct {
	pam.OutboxStore
	mu          sync.Mutex
	pick        func(*pam.Tx) error
	lose        func(*pam.Tx) error
	eventsErr   error
	requestsErr error
	requests    int
	// hangRevision: PolicyRevision blocks until its context ends.
	hangRevision bool
}

// HangRevision makes PolicyRevision block until its context ends (false:
// answer again): a store that does not answer.
func (s *Store) HangRevision(on bool) {
	s.mu.Lock()
	s.hangRevision = on
	s.mu.Unlock()
}

// PolicyRevision implements pam.Store.
func (s *Store) PolicyRevision(ctx context.Context) (int64, error) {
	s.mu.Lock()
	hang := s.hangRevision
	s.mu.Unlock()
	if hang {
		<-ctx.Done()
		return 0, ctx.Err()
	}
	return s.OutboxStore.PolicyRevision(ctx)
}

// FailRequests makes Requests return err (nil: succeed again).
func (s *Store) FailRequests(err error) {
	s.mu.Lock()
	s.requestsErr = err
	s.mu.Unlock()
}

// FailEvents makes Events return err (nil: succeed again).
func (s *Store) FailEvents(err error) {
	s.mu.Lock()
	s.eventsErr = err
	s.mu.Unlock()
}

// Events implements pam.Store.
func (s *Store) Events(ctx context.Context, f pam.EventFilter) ([]pam.Event, error) {
	s.mu.Lock()
	err := s.eventsErr
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return s.OutboxStore.Events(ctx, f)
}

// Requests implements pam.Store.
func (s *Store) Requests(ctx context.Context, f pam.RequestFilter) ([]pam.Request, error) {
	s.mu.Lock()
	s.requests++
	err := s.requestsErr
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return s.OutboxStore.Requests(ctx, f)
}

// RequestsCalls returns how many times Requests was called.
func (s *Store) RequestsCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// FailCommit makes Commit return pick's error, without writing, whenever
// pick returns one. nil stops failing.
func (s *Store) FailCommit(pick func(*pam.Tx) error) {
	s.mu.Lock()
	s.pick = pick
	s.mu.Unlock()
}

// LoseReply makes Commit write, then return lose's error, whenever lose
// returns one: a commit whose reply was lost. nil stops it.
func (s *Store) LoseReply(lose func(*pam.Tx) error) {
	s.mu.Lock()
	s.lose = lose
	s.mu.Unlock()
}

// Commit implements pam.Store.
func (s *Store) Commit(ctx context.Context, tx *pam.Tx) error {
	s.mu.Lock()
	pick, lose := s.pick, s.lose
	s.mu.Unlock()
	if pick != nil {
		if err := pick(tx); err != nil {
			return err
		}
	}
	var lost error
	if lose != nil {
		lost = lose(tx)
	}
	if err := s.OutboxStore.Commit(ctx, tx); err != nil {
		return err
	}
	return lost
}

// Errors collects what a Manager reports through Options.OnError.
type Errors struct {
	mu   sync.Mutex
	errs []error
}

// Report is an Options.OnError.
func (e *Errors) Report(err error) {
	e.mu.Lock()
	e.errs = append(e.errs, err)
	e.mu.Unlock()
}

// Take returns the errors so far and forgets them.
func (e *Errors) Take() []error {
	e.mu.Lock()
	defer e.mu.Unlock()
	errs := e.errs
	e.errs = nil
	return errs
}

// TimedStore is a Store that is also a pam.TimeSource: its time comes from
// Clock, as a database server's would.
type TimedStore struct {
	pam.OutboxStore
	Clock interface{ Now() time.Time }
}

var _ pam.TimeSource = TimedStore{}

// Now implements pam.TimeSource.
func (s TimedStore) Now(ctx context.Context) (time.Time, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	return s.Clock.Now(), nil
}

// FaultyStore fails Commit at random while faults are on: either before
// writing (the commit is rejected) or after (the write is stored but
// reported failed, as when a connection drops before the reply).
type FaultyStore struct {
	pam.OutboxStore
	mu            sync.Mutex
	rng           *rand.Rand
	p             float64
	Before, After atomic.Int64 // faults injected
}

// NewFaultyStore wraps s; each Commit fails with probability p.
func NewFaultyStore(s pam.OutboxStore, p float64, seed uint64) *FaultyStore {
	return &FaultyStore{OutboxStore: s, rng: rand.New(rand.NewPCG(seed, seed+1)), p: p}
}

// SetP changes the fault probability (0: no more faults).
func (s *FaultyStore) SetP(p float64) {
	s.mu.Lock()
	s.p = p
	s.mu.Unlock()
}

// Commit implements pam.Store.
func (s *FaultyStore) Commit(ctx context.Context, tx *pam.Tx) error {
	s.mu.Lock()
	fail, after := s.rng.Float64() < s.p, s.rng.IntN(2) == 0
	s.mu.Unlock()
	if !fail {
		return s.OutboxStore.Commit(ctx, tx)
	}
	if !after {
		s.Before.Add(1)
		return errors.New("injected fault: commit rejected")
	}
	if err := s.OutboxStore.Commit(ctx, tx); err != nil {
		return err
	}
	s.After.Add(1)
	return errors.New("injected fault: committed, but the reply was lost")
}

// FaultySink records events like Sink, and fails writes at random while
// faults are on: with an error, or by hanging until the write's context
// ends.
type FaultySink struct {
	mu     sync.Mutex
	rng    *rand.Rand
	p      float64
	bySeq  map[int64]pam.Event
	byRun  map[string]int64 // the "param.run" detail → Seq
	Faults atomic.Int64
}

// NewFaultySink returns a sink failing each write with probability p.
func NewFaultySink(p float64, seed uint64) *FaultySink {
	return &FaultySink{rng: rand.New(rand.NewPCG(seed, seed+1)), p: p, bySeq: map[int64]pam.Event{}, byRun: map[string]int64{}}
}

// SetP changes the fault probability.
func (s *FaultySink) SetP(p float64) {
	s.mu.Lock()
	s.p = p
	s.mu.Unlock()
}

// Write implements pam.AuditSink.
func (s *FaultySink) Write(ctx context.Context, events []pam.Event) error {
	s.mu.Lock()
	fail, hang := s.rng.Float64() < s.p, s.rng.IntN(4) == 0
	if !fail {
		for _, e := range events {
			s.bySeq[e.Seq] = e
			if run := e.Detail["param.run"]; run != "" && (e.Type == pam.EventGuardAllowed || e.Type == pam.EventGuardExempt) {
				s.byRun[run] = e.Seq
			}
		}
	}
	s.mu.Unlock()
	if !fail {
		return nil
	}
	s.Faults.Add(1)
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return errors.New("injected fault: sink write failed")
}

// Has reports whether the sink holds the start (guard.allowed or
// guard.exempt) of the run whose "run" parameter is run.
func (s *FaultySink) Has(run string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.byRun[run]
	return ok
}

// Events returns the events held, by Seq.
func (s *FaultySink) Events() map[int64]pam.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.bySeq)
}

// Rewritten shows the trail as someone who can write the database would
// leave it: event 2 altered (its actor is "mallory"), and every hash from
// there recomputed, so that the chain holds on its own. Only a checkpoint
// or a copy kept elsewhere tells.
type Rewritten struct{ pam.OutboxStore }

// Events implements pam.Store.
func (s Rewritten) Events(ctx context.Context, f pam.EventFilter) ([]pam.Event, error) {
	all, err := s.OutboxStore.Events(ctx, pam.EventFilter{})
	if err != nil {
		return nil, err
	}
	if len(all) > 1 {
		all[1].Actor = "mallory"
	}
	if _, err := (pam.ChainHead{}).Chain(all, nil); err != nil {
		return nil, err
	}
	var out []pam.Event
	for _, e := range all {
		if e.Seq > f.After && (f.Before == 0 || e.Seq < f.Before) {
			out = append(out, e)
		}
	}
	if f.Descending {
		slices.Reverse(out)
	}
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

// Counts passes pam.Counter through to the wrapped store, when it
// counts.
func (s *Store) Counts(ctx context.Context) (pam.Counts, error) {
	if c, ok := s.OutboxStore.(pam.Counter); ok {
		return c.Counts(ctx)
	}
	return pam.Counts{}, errors.New("fakes: the wrapped store does not count")
}

// SyncBuffer is a bytes.Buffer safe for a writer and a reader at once:
// a process's or a logger's output, read while it is written.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
