package sqlite

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/zerostanding/pam"
)

// maxGroup bounds the Txs written in one transaction.
const maxGroup = 128

// errClosed is Commit's error once Close was called.
var errClosed = errors.New("sqlite: the store is closed")

// committer is the group commit: Commit queues its Tx and one goroutine
// writes whatever is queued, up to maxGroup Txs, in one transaction,
// then takes what was queued meanwhile. It never waits for more: a
// lone Commit is written as soon as the committer is free.
type committer struct {
	mu      sync.Mutex
	cond    sync.Cond // signalled when queue grows or closed is set
	queue   []*commit
	closed  bool
	stopped chan struct{} // closed when the committer has returned

	txs   atomic.Int64 // transactions begun, for the tests
	taken atomic.Int64 // Commits taken into groups, for the tests
	free  sync.Pool    // of *commit

	// The committer's own.
	group []*commit
	args  []any
}

// commit is one Commit's Tx on its way through the committer.
type commit struct {
	ctx   context.Context
	tx    *pam.Tx
	state atomic.Int32 // queued, then writing (the committer's) or abandoned (the caller's)
	done  chan error   // the result, once the group's transaction ended

	// What Commit sets on tx once the group committed: the chained
	// events (their content digests computed by the caller, outside the
	// committer) and the catalog's and the first policy's revisions.
	events     []pam.Event
	digests    [][pam.HashSize]byte
	catalogRev int64
	policyRev  int64
	err        error
}

const (
	queued int32 = iota
	writing
	abandoned
)

// startCommitter starts the committer; Close stops it.
func (s *Store) startCommitter() {
	s.g.cond.L = &s.g.mu
	s.g.stopped = make(chan struct{})
	s.g.free.New = func() any { return &commit{done: make(chan error, 1)} }
	go s.commitLoop()
}

// stopCommitter lets the committer write what is queued, refuses later
// Commits and waits for the committer to return.
func (s *Store) stopCommitter() {
	s.g.mu.Lock()
	s.g.closed = true
	s.g.cond.Signal()
	s.g.mu.Unlock()
	<-s.g.stopped
}

// Commit implements pam.Store. Its Tx is written by the store's
// committer, in one transaction with the Txs of the other Commits
// queued at the time: see Group commit in the package documentation.
// A caller whose ctx ends while its Tx waits in the queue gets
// ctx.Err(), and the Tx is not written; once the committer has begun
// writing it, the caller waits for the transaction's outcome, which is
// a commit away.
func (s *Store) Commit(ctx context.Context, tx *pam.Tx) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := tx.Validate(); err != nil {
		return err
	}
	c := s.g.free.Get().(*commit)
	c.ctx, c.tx = ctx, tx
	// Chain works on copies: tx.Events gets its fields only once the
	// group committed.
	c.events = append(c.events[:0], tx.Events...)
	for i := range c.events {
		c.digests = append(c.digests, c.events[i].ContentDigest())
	}
	s.g.mu.Lock()
	if s.g.closed {
		s.g.mu.Unlock()
		s.recycle(c)
		return errClosed
	}
	s.g.queue = append(s.g.queue, c)
	s.g.cond.Signal()
	s.g.mu.Unlock()
	select {
	case err := <-c.done:
		s.recycle(c)
		return err
	case <-ctx.Done():
		if c.state.CompareAndSwap(queued, abandoned) {
			return ctx.Err() // the committer recycles c
		}
		err := <-c.done
		s.recycle(c)
		return err
	}
}

// recycle returns c to the pool.
func (s *Store) recycle(c *commit) {
	c.ctx, c.tx, c.err = nil, nil, nil
	c.state.Store(queued)
	clear(c.events)
	c.events, c.digests = c.events[:0], c.digests[:0]
	if cap(c.events) > 64 {
		c.events, c.digests = nil, nil
	}
	s.g.free.Put(c)
}

// commitLoop writes the queue, group by group, until Close.
func (s *Store) commitLoop() {
	defer close(s.g.stopped)
	for {
		s.g.mu.Lock()
		for len(s.g.queue) == 0 {
			if s.g.closed {
				s.g.mu.Unlock()
				return
			}
			s.g.cond.Wait()
		}
		n := min(len(s.g.queue), maxGroup)
		s.g.group = append(s.g.group[:0], s.g.queue[:n]...)
		rest := copy(s.g.queue, s.g.queue[n:])
		clear(s.g.queue[rest:])
		s.g.queue = s.g.queue[:rest]
		s.g.taken.Add(int64(n))
		s.g.mu.Unlock()
		s.writeGroup(s.g.group)
		clear(s.g.group)
	}
}

// take claims c for writing: false (and c recycled) when its caller
// has left.
func (s *Store) take(c *commit) bool {
	if c.state.CompareAndSwap(queued, writing) {
		return true
	}
	s.recycle(c)
	return false
}

// writeGroup writes group in one transaction, each Tx inside a
// savepoint of its own when there are several, so that one that fails
// is rolled back alone. Every caller gets its result once the
// transaction has ended.
func (s *Store) writeGroup(group []*commit) {
	ctx := context.Background() // not a caller's: it would cut the others' writes short
	t, err := s.w.BeginTx(ctx, nil)
	if err == nil {
		s.g.txs.Add(1)
		var head pam.ChainHead
		if head, err = s.head(ctx, t); err != nil {
			t.Rollback()
		}
		if err == nil {
			err = s.writeTxs(ctx, t, group, head)
		}
	}
	for i, c := range group {
		if c == nil {
			continue
		}
		if c.state.Load() != writing && !s.take(c) {
			continue
		}
		if err != nil && c.err == nil {
			c.err = err
		}
		if c.err != nil {
			c.err = mapBusy(c.err)
		} else {
			c.apply()
		}
		c.done <- c.err
		group[i] = nil
	}
}

// writeTxs writes each Tx of group, and commits the transaction unless
// none of them was written. It returns the error that ended the
// transaction (nil when it committed): every Tx not already failed on
// its own is lost with it. A Tx whose caller has left is recycled, and
// its place in group set to nil.
func (s *Store) writeTxs(ctx context.Context, t *sql.Tx, group []*commit, head pam.ChainHead) error {
	savepoints := len(group) > 1
	written := 0
	for i, c := range group {
		if !s.take(c) {
			group[i] = nil
			continue
		}
		if err := c.ctx.Err(); err != nil {
			c.err = err
			continue
		}
		if savepoints {
			if _, err := s.exec(ctx, t, sqlSavepoint); err != nil {
				t.Rollback()
				return err
			}
		}
		next, err := s.writeTx(ctx, t, c, head)
		if err != nil {
			c.err = err
			if savepoints {
				if _, rerr := s.exec(ctx, t, sqlRollbackTo); rerr != nil {
					t.Rollback()
					return fmt.Errorf("sqlite: a commit in the same transaction failed (%v), and rolling it back failed: %w", err, rerr)
				}
			}
		}
		if savepoints {
			if _, err := s.exec(ctx, t, sqlRelease); err != nil {
				t.Rollback()
				return err
			}
		}
		if c.err == nil {
			head = next
			written++
		}
	}
	if written == 0 {
		t.Rollback()
		return nil
	}
	return t.Commit()
}

// head returns the head of the stored trail.
func (s *Store) head(ctx context.Context, t *sql.Tx) (pam.ChainHead, error) {
	var head pam.ChainHead
	var hash []byte
	if err := s.queryRow(ctx, t, sqlHead).Scan(&head.Seq, &hash); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return head, err
	}
	head.Hash = hex.EncodeToString(hash)
	return head, nil
}

// apply sets on c.tx what Commit sets once the Tx is stored.
func (c *commit) apply() {
	tx := c.tx
	if tx.Catalog != nil {
		tx.Catalog.Revision = c.catalogRev
	}
	for i := range tx.Policies {
		tx.Policies[i].Revision = c.policyRev + int64(i)
	}
	for i := range tx.Events {
		e, f := &tx.Events[i], &c.events[i]
		e.Seq, e.PrevHash, e.Hash = f.Seq, f.PrevHash, f.Hash
	}
}
