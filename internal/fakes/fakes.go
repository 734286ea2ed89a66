// Package fakes holds the hand-written test doubles the tests share.
package fakes

import (
	"context"
	"sync"
	"time"

	"github.com/zerostanding/pam"
)

var (
	_ pam.Notifier  = (*Notifier)(nil)
	_ pam.AuditSink = (*Sink)(nil)
	_ pam.Store     = (*Store)(nil)
)

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

// Store wraps a pam.Store, fails commits that FailCommit picks and counts
// calls to Requests.
type Store struct {
	pam.Store
	mu       sync.Mutex
	pick     func(*pam.Tx) error
	requests int
}

// Requests implements pam.Store.
func (s *Store) Requests(ctx context.Context, f pam.RequestFilter) ([]pam.Request, error) {
	s.mu.Lock()
	s.requests++
	s.mu.Unlock()
	return s.Store.Requests(ctx, f)
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

// Commit implements pam.Store.
func (s *Store) Commit(ctx context.Context, tx *pam.Tx) error {
	s.mu.Lock()
	pick := s.pick
	s.mu.Unlock()
	if pick != nil {
		if err := pick(tx); err != nil {
			return err
		}
	}
	return s.Store.Commit(ctx, tx)
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
	pam.Store
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
