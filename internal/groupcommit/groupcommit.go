// Package groupcommit is the group commit of the durable stores: Commit
// queues its Tx, and one goroutine hands whatever is queued, up to a
// bound, to the store's write function, which writes the group in one
// transaction — one durable flush for many commits — each Tx still
// all-or-nothing on its own. A lone Commit is written as soon as the
// writer is free: the queue never waits for more.
//
// The package holds what SQLite and PostgreSQL share: the queue, the
// hand-off between a caller and the writer (a caller whose context ends
// while its Tx is queued leaves, and the Tx is not written; once taken
// for writing, it waits for the outcome), the content digests computed
// by the callers rather than the writer, and setting on each Tx what its
// commit gave it. How a group is written is the store's.
package groupcommit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/zerostanding/pam"
)

// ErrClosed is Commit's error once Close was called, wrapped in the
// store's own (see Start).
var ErrClosed = errors.New("the store is closed")

// Commit is one Store.Commit's Tx on its way through the Queue.
type Commit struct {
	Ctx context.Context
	Tx  *pam.Tx
	// Events are copies of Tx's events for the writer to chain: Tx's own
	// get their fields only once the group committed. Digests are their
	// content digests, computed by the caller.
	Events  []pam.Event
	Digests [][pam.HashSize]byte
	// CatalogRev and PolicyRev are the revisions the write gave the
	// catalog and the first policy of Tx (the next policies take the
	// next ones).
	CatalogRev int64
	PolicyRev  int64
	// Err is the Tx's own outcome, set by the writer when it failed
	// alone.
	Err error

	state atomic.Int32 // queued, then writing (the writer's) or abandoned (the caller's)
	done  chan error   // the result, once the group's transaction ended
}

const (
	queued int32 = iota
	writing
	abandoned
)

// Queue is one store's group commit. Start it before the first Commit;
// Close stops it.
type Queue struct {
	// write writes group in one transaction: see Start.
	write  func(group []*Commit)
	max    int
	closed error // Commit's error after Close

	mu       sync.Mutex
	cond     sync.Cond // signalled when queue grows or stopping is set
	queue    []*Commit
	stopping bool
	stopped  chan struct{} // closed when the writer has returned

	taken  atomic.Int64 // Commits taken into groups
	groups atomic.Int64 // groups handed to write
	free   sync.Pool    // of *Commit

	group []*Commit // the writer's own
}

// Start starts the writer. It calls write with each group of at most max
// Commits, in queue order; write takes each with Take before writing
// it (skipping those it returns false for), sets Err on those that fail
// alone, and ends with Finish, which gives every caller its result.
//
// name names the store in Commit's errors of its own.
func (q *Queue) Start(name string, max int, write func(group []*Commit)) {
	q.write, q.max = write, max
	q.closed = fmt.Errorf("%s: %w", name, ErrClosed)
	q.cond.L = &q.mu
	q.stopped = make(chan struct{})
	q.free.New = func() any { return &Commit{done: make(chan error, 1)} }
	go q.loop()
}

// Close lets the writer write what is queued, refuses later Commits and
// waits for the writer to return.
func (q *Queue) Close() {
	q.mu.Lock()
	q.stopping = true
	q.cond.Signal()
	q.mu.Unlock()
	<-q.stopped
}

// Commit is a store's pam.Store.Commit: it checks tx (Tx.Validate),
// queues it and returns its outcome. A caller whose ctx ends while tx
// waits in the queue gets ctx.Err(), and tx is not written; once the
// writer has taken it, the caller waits for the outcome of the
// transaction it is in (which the store's write may cut short).
func (q *Queue) Commit(ctx context.Context, tx *pam.Tx) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := tx.Validate(); err != nil {
		return err
	}
	c := q.free.Get().(*Commit)
	c.Ctx, c.Tx = ctx, tx
	c.Events = append(c.Events[:0], tx.Events...)
	for i := range c.Events {
		c.Digests = append(c.Digests, c.Events[i].ContentDigest())
	}
	q.mu.Lock()
	if q.stopping {
		q.mu.Unlock()
		q.recycle(c)
		return q.closed
	}
	q.queue = append(q.queue, c)
	q.cond.Signal()
	q.mu.Unlock()
	select {
	case err := <-c.done:
		q.recycle(c)
		return err
	case <-ctx.Done():
		if c.state.CompareAndSwap(queued, abandoned) {
			return ctx.Err() // the writer recycles c
		}
		err := <-c.done
		q.recycle(c)
		return err
	}
}

// Take claims c for writing: false when its caller has left (c is then
// recycled, and the writer must forget it). Taking a Commit twice is
// true both times.
func (q *Queue) Take(c *Commit) bool {
	if c.state.CompareAndSwap(queued, writing) || c.state.Load() == writing {
		return true
	}
	q.recycle(c)
	return false
}

// Finish ends group's transaction for its callers: err, when not nil, is
// the error that ended it, and every Commit that did not fail on its own
// fails with it; mapErr (optional) maps each error returned. A Commit
// that succeeded gets its Tx's fields set first (Apply). Nil entries are
// skipped; Finish sets every entry to nil.
func (q *Queue) Finish(group []*Commit, err error, mapErr func(error) error) {
	for i, c := range group {
		group[i] = nil
		if c == nil || !q.Take(c) {
			continue
		}
		if err != nil && c.Err == nil {
			c.Err = err
		}
		if c.Err != nil {
			if mapErr != nil {
				c.Err = mapErr(c.Err)
			}
		} else {
			c.apply()
		}
		c.done <- c.Err
	}
}

// Taken returns the number of Commits taken into groups.
func (q *Queue) Taken() int64 { return q.taken.Load() }

// Stats returns the groups written so far and the Commits taken into
// them: their ratio is the mean group size.
func (q *Queue) Stats() (groups, commits int64) { return q.groups.Load(), q.taken.Load() }

// Queued returns the number of Commits waiting for the next group.
func (q *Queue) Queued() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.queue)
}

// recycle returns c to the pool.
func (q *Queue) recycle(c *Commit) {
	c.Ctx, c.Tx, c.Err = nil, nil, nil
	c.CatalogRev, c.PolicyRev = 0, 0
	c.state.Store(queued)
	clear(c.Events)
	c.Events, c.Digests = c.Events[:0], c.Digests[:0]
	if cap(c.Events) > 64 {
		c.Events, c.Digests = nil, nil
	}
	q.free.Put(c)
}

// loop hands the queue to write, group by group, until Close.
func (q *Queue) loop() {
	defer close(q.stopped)
	for {
		q.mu.Lock()
		for len(q.queue) == 0 {
			if q.stopping {
				q.mu.Unlock()
				return
			}
			q.cond.Wait()
		}
		n := min(len(q.queue), q.max)
		q.group = append(q.group[:0], q.queue[:n]...)
		rest := copy(q.queue, q.queue[n:])
		clear(q.queue[rest:])
		q.queue = q.queue[:rest]
		q.taken.Add(int64(n))
		q.groups.Add(1)
		q.mu.Unlock()
		q.write(q.group)
		clear(q.group)
	}
}

// apply sets on c.Tx what its commit gave it.
func (c *Commit) apply() {
	tx := c.Tx
	if tx.Catalog != nil {
		tx.Catalog.Revision = c.CatalogRev
	}
	for i := range tx.Policies {
		tx.Policies[i].Revision = c.PolicyRev + int64(i)
	}
	for i := range tx.Events {
		e, f := &tx.Events[i], &c.Events[i]
		e.Seq, e.PrevHash, e.Hash = f.Seq, f.PrevHash, f.Hash
	}
}
