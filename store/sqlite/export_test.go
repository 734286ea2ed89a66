package sqlite

import "context"

// Dialect is the store's dialect, for the plan tests.
var Dialect = dialect

// OpenUnpinned opens the store with reads that leave the index to
// SQLite's planner, as they did before they named it: the benchmarks'
// baseline.
func OpenUnpinned(ctx context.Context, path string) (*Store, error) {
	d := dialect
	d.IndexedBy = false
	return open(ctx, path, d)
}
