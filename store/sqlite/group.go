package sqlite

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/internal/groupcommit"
)

// maxGroup bounds the Txs written in one transaction.
const maxGroup = 128

// committer is the store's group commit (internal/groupcommit): one
// goroutine writes whatever Commits are queued in one transaction.
type committer struct {
	groupcommit.Queue
	txs  atomic.Int64 // transactions committed, for the tests
	args []any        // the writer's scratch
}

// GroupCommits implements pam.GroupCommitter.
func (s *Store) GroupCommits() (groups, commits int64) { return s.g.Stats() }

// startCommitter starts the committer; Close stops it.
func (s *Store) startCommitter() { s.g.Start("sqlite", maxGroup, s.writeGroup) }

// stopCommitter lets the committer write what is queued, refuses later
// Commits and waits for the committer to return.
func (s *Store) stopCommitter() { s.g.Close() }

// Commit implements pam.Store. Its Tx is written by the store's
// committer, in one transaction with the Txs of the other Commits
// queued at the time: see Group commit in the package documentation.
// A caller whose ctx ends while its Tx waits in the queue gets
// ctx.Err(), and the Tx is not written; once the committer has begun
// writing it, the caller waits for the transaction's outcome, which is
// a commit away.
func (s *Store) Commit(ctx context.Context, tx *pam.Tx) error {
	return s.g.Commit(ctx, tx)
}

// writeGroup writes group in one transaction, each Tx inside a
// savepoint of its own when there are several, so that one that fails
// is rolled back alone. Every caller gets its result once the
// transaction has ended.
func (s *Store) writeGroup(group []*groupcommit.Commit) {
	ctx := context.Background() // not a caller's: it would cut the others' writes short
	t, err := s.w.BeginTx(ctx, nil)
	if err == nil {
		var head pam.ChainHead
		if head, err = s.head(ctx, t); err != nil {
			t.Rollback()
		}
		if err == nil {
			err = s.writeTxs(ctx, t, group, head)
		}
	}
	s.g.Finish(group, err, mapBusy)
}

// writeTxs writes each Tx of group, and commits the transaction unless
// none of them was written. It returns the error that ended the
// transaction (nil when it committed): every Tx not already failed on
// its own is lost with it. A Tx whose caller has left is recycled, and
// its place in group set to nil.
func (s *Store) writeTxs(ctx context.Context, t *sql.Tx, group []*groupcommit.Commit, head pam.ChainHead) error {
	savepoints := len(group) > 1
	written := 0
	for i, c := range group {
		if !s.g.Take(c) {
			group[i] = nil
			continue
		}
		if err := c.Ctx.Err(); err != nil {
			c.Err = err
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
			c.Err = err
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
		if c.Err == nil {
			head = next
			written++
		}
	}
	if written == 0 {
		t.Rollback()
		return nil
	}
	if err := t.Commit(); err != nil {
		return err
	}
	s.g.txs.Add(1)
	return nil
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
