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
