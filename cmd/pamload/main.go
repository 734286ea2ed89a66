// Command pamload measures Guard under load: covered Guards, each by a
// user with an active grant, from N goroutines at once over one Manager,
// for a fixed time; it prints Guards per second and the p50 and p99
// latency at each N, with baselines measured in the same run on the same
// disk: one bare Store.Commit of one event, with and without fsync, and
// the disk's own fsync rate.
//
//	go run ./cmd/pamload -store sqlite -n 1,8,64 -d 3s
//	go run ./cmd/pamload -store postgres -dsn postgres://postgres@127.0.0.1:5432/test -n 1,8,64
//
// Each measurement gets a fresh store: a new file in -dir for SQLite, a
// new schema (dropped afterwards) for PostgreSQL. "fsync off" runs the
// same code with SQLite's synchronous=NORMAL (in WAL mode a commit then
// waits for no fsync) and PostgreSQL's synchronous_commit=off.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/store/memory"
	"github.com/zerostanding/pam/store/postgres"
	"github.com/zerostanding/pam/store/sqlite"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "pamload:", err)
		os.Exit(1)
	}
}

type config struct {
	store string
	dsn   string
	dir   string
	ns    []int
	d     time.Duration
	what  string
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("pamload", flag.ContinueOnError)
	var c config
	var ns string
	fs.StringVar(&c.store, "store", "sqlite", "memory, sqlite or postgres")
	fs.StringVar(&c.dsn, "dsn", os.Getenv("PAM_POSTGRES_DSN"), "PostgreSQL URL (-store postgres)")
	fs.StringVar(&c.dir, "dir", os.TempDir(), "where SQLite files and the fsync probe go")
	fs.StringVar(&ns, "n", "1,8,64", "goroutines, comma-separated")
	fs.DurationVar(&c.d, "d", 3*time.Second, "how long each measurement runs")
	fs.StringVar(&c.what, "what", "all", "all, or guard: only Guard with fsync (to count fsyncs with strace, say)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, f := range strings.Split(ns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("-n: %q is not a count", f)
		}
		c.ns = append(c.ns, n)
	}
	if c.store == "postgres" && c.dsn == "" {
		return errors.New("-store postgres needs -dsn (or PAM_POSTGRES_DSN)")
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "STORE\tWHAT\tN\tOPS/S\tP50\tP99")
	defer w.Flush()
	print := func(what string, n int, r result) {
		fmt.Fprintf(w, "%s\t%s\t%d\t%.0f\t%v\t%v\n", c.store, what, n, r.rate, r.p50, r.p99)
	}
	durable := []bool{true}
	if c.store != "memory" && c.what == "all" {
		durable = append(durable, false)
	}
	for _, fsync := range durable {
		label := "Guard"
		if !fsync {
			label += " (fsync off)"
		}
		for _, n := range c.ns {
			r, err := measureGuard(ctx, &c, n, fsync)
			if err != nil {
				return err
			}
			print(label, n, r)
			if c.what == "guard" {
				fmt.Fprintf(w, "\t\t\t(%d Guards)\t\t\n", r.count)
			}
		}
	}
	if c.store != "memory" && c.what == "all" {
		for _, fsync := range durable {
			label := "bare commit"
			if !fsync {
				label += " (fsync off)"
			}
			for _, n := range c.ns {
				r, err := measureCommit(ctx, &c, n, fsync)
				if err != nil {
					return err
				}
				print(label, n, r)
			}
		}
		for _, n := range c.ns {
			r, err := measureFsync(c.dir, n, c.d)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "disk\tfsync of 4 KiB\t%d\t%.0f\t%v\t%v\n", n, r.rate, r.p50, r.p99)
		}
	}
	return nil
}

type result struct {
	rate     float64
	p50, p99 time.Duration
	count    int
}

// load runs op from n goroutines for d and summarises the latencies.
func load(n int, d time.Duration, op func(g, i int) error) (result, error) {
	lat := make([][]time.Duration, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(d)
	for g := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				t0 := time.Now()
				if err := op(g, i); err != nil {
					errs[g] = err
					return
				}
				lat[g] = append(lat[g], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return result{}, err
	}
	all := slices.Concat(lat...)
	if len(all) == 0 {
		return result{}, errors.New("no operation completed")
	}
	slices.Sort(all)
	pct := func(p float64) time.Duration {
		return all[min(len(all)-1, int(float64(len(all))*p))].Round(time.Microsecond)
	}
	return result{rate: float64(len(all)) / elapsed.Seconds(), p50: pct(0.50), p99: pct(0.99), count: len(all)}, nil
}

// openStore returns a fresh store and its cleanup.
func openStore(ctx context.Context, c *config, fsync bool) (pam.Store, func(), error) {
	switch c.store {
	case "memory":
		return memory.New(), func() {}, nil
	case "sqlite":
		dir, err := os.MkdirTemp(c.dir, "pamload-")
		if err != nil {
			return nil, nil, err
		}
		o := &sqlite.Options{}
		if !fsync {
			o.Synchronous = sqlite.SyncNormal
		}
		s, err := sqlite.OpenWith(ctx, filepath.Join(dir, "pam.db"), o)
		if err != nil {
			os.RemoveAll(dir)
			return nil, nil, err
		}
		return s, func() { s.Close(); os.RemoveAll(dir) }, nil
	case "postgres":
		var b [6]byte
		rand.Read(b[:])
		schema := "pamload_" + hex.EncodeToString(b[:])
		dsn := c.dsn
		if !fsync {
			dsn = withParam(dsn, "options", "-c synchronous_commit=off")
		}
		s, err := postgres.Open(ctx, dsn, &postgres.Options{Schema: schema})
		if err != nil {
			return nil, nil, err
		}
		return s, func() {
			s.Close()
			if conn, err := pgx.Connect(ctx, c.dsn); err == nil {
				conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
				conn.Close(ctx)
			}
		}, nil
	}
	return nil, nil, fmt.Errorf("-store: %q is not memory, sqlite or postgres", c.store)
}

// withParam adds a query parameter to a URL-form DSN.
func withParam(dsn, k, v string) string {
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + k + "=" + strings.ReplaceAll(strings.ReplaceAll(v, " ", "%20"), "=", "%3D")
}

// measureGuard runs covered Guards by n users, each with an active grant.
func measureGuard(ctx context.Context, c *config, n int, fsync bool) (result, error) {
	s, done, err := openStore(ctx, c, fsync)
	if err != nil {
		return result{}, err
	}
	defer done()
	dir, err := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin"}, "approvers": {"approver"}})
	if err != nil {
		return result{}, err
	}
	m, err := pam.New(s, dir, &pam.Options{AdminGroup: "pam-admins", MaxPending: -1})
	if err != nil {
		return result{}, err
	}
	defer m.Close(ctx)
	as := func(who string) context.Context { return pam.WithActor(ctx, who) }
	if _, err := m.CreatePolicy(as("admin"), pam.Policy{ID: "load", Scope: pam.TaskScope("Rotate-Key"), Approval: pam.Manual,
		ApproverGroups: []pam.ApproverGroup{{Group: "approvers"}}, MaxDuration: 8 * time.Hour}); err != nil {
		return result{}, err
	}
	users := make([]context.Context, n)
	for g := range n {
		users[g] = as(fmt.Sprint("user", g))
		r, err := m.Submit(users[g], pam.RequestInput{Scope: pam.TaskScope("Rotate-Key"), Reason: "load", Duration: 8 * time.Hour})
		if err != nil {
			return result{}, err
		}
		if _, err := m.Approve(as("approver"), r.ID, ""); err != nil {
			return result{}, err
		}
	}
	op := pam.Op{Task: "Rotate-Key"}
	nop := func(context.Context) error { return nil }
	return load(n, c.d, func(g, _ int) error { return m.Guard(users[g], op, nop) })
}

// measureCommit runs bare Store.Commits of one event each.
func measureCommit(ctx context.Context, c *config, n int, fsync bool) (result, error) {
	s, done, err := openStore(ctx, c, fsync)
	if err != nil {
		return result{}, err
	}
	defer done()
	return load(n, c.d, func(g, _ int) error {
		return s.Commit(ctx, &pam.Tx{Events: []pam.Event{{Time: time.Now(), Type: pam.EventGuardAllowed, Actor: fmt.Sprint("user", g), Task: "Rotate-Key"}}})
	})
}

// measureFsync writes 4 KiB and fsyncs it, from n goroutines, each to
// its own file in dir.
func measureFsync(dir string, n int, d time.Duration) (result, error) {
	files := make([]*os.File, n)
	for g := range files {
		f, err := os.CreateTemp(dir, "pamload-fsync-")
		if err != nil {
			return result{}, err
		}
		defer os.Remove(f.Name())
		defer f.Close()
		files[g] = f
	}
	block := make([]byte, 4096)
	return load(n, d, func(g, i int) error {
		if _, err := files[g].WriteAt(block, int64(i%256)*4096); err != nil {
			return err
		}
		return files[g].Sync()
	})
}
