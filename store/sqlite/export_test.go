package sqlite

import "context"

// Dialect is the store's dialect, for the plan tests.
var Dialect = dialect

// OpenUnpinned is OpenWith with reads that leave the index to SQLite's
// planner, as they did before they named it: the benchmarks' baseline.
func OpenUnpinned(ctx context.Context, path string, opts *Options) (*Store, error) {
	d := dialect
	d.IndexedBy = false
	return open(ctx, path, opts, d)
}

// Pragma returns the value of PRAGMA name on the writer connection.
func (s *Store) Pragma(ctx context.Context, name string) (string, error) {
	var v string
	err := s.w.QueryRowContext(ctx, "PRAGMA "+name).Scan(&v)
	return v, err
}

// Transactions returns the number of transactions the committer
// committed: one per group of Commits.
func (s *Store) Transactions() int64 { return s.g.txs.Load() }

// Taken returns the number of Commits the committer has taken into
// groups.
func (s *Store) Taken() int64 { return s.g.Taken() }

// Queued returns the number of Commits waiting for the next group.
func (s *Store) Queued() int { return s.g.Queued() }

// HoldWriter takes the writer connection until release is called: the
// committer's next transaction waits for it.
func (s *Store) HoldWriter(ctx context.Context) (release func(), err error) {
	c, err := s.w.Conn(ctx)
	if err != nil {
		return nil, err
	}
	return func() { c.Close() }, nil
}
