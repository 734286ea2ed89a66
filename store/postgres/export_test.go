package postgres

import (
	"context"
)

// Transactions returns the number of transactions the committer
// committed: one per group of Commits.
func (s *Store) Transactions() int64 { return s.txs.Load() }

// Taken returns the number of Commits the committer has taken into
// groups.
func (s *Store) Taken() int64 { return s.g.Taken() }

// Queued returns the number of Commits waiting for the next group.
func (s *Store) Queued() int { return s.g.Queued() }

// HoldWriter holds the counters row's lock, which every commit takes
// first, until release is called: the committer's next transaction
// waits for it.
func (s *Store) HoldWriter(ctx context.Context) (release func(), err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM pam_meta WHERE id = 1 FOR UPDATE`); err != nil {
		tx.Rollback(ctx)
		return nil, err
	}
	return func() { tx.Rollback(context.Background()) }, nil
}
