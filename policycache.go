package pam

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"

	"github.com/zerostanding/pam/internal/rules"
)

// policyCache holds the live policies compiled, and the catalog, as one
// immutable snapshot that Guard reads without locks. It follows the
// store's policy revision: one cheap read per call, and a reload of only
// the changed policies when another writer got ahead.
type policyCache struct {
	store   Store
	env     *rules.Env
	onError func(error)
	// seed writes Options.Catalog to a store that has no catalog yet; nil
	// once done, or when there is nothing to seed. seedCat is that
	// catalog.
	seed    func(context.Context) error
	seedCat *Catalog

	snap      atomic.Pointer[snapshot]
	mu        sync.Mutex         // serialises reloads and catalog changes
	compiles  singleflight.Group // one compilation per policy version
	fresh     sync.Map           // compileKey → *compiled, policies this Manager just wrote
	folded    time.Time          // when the snapshot's overlays were last folded, under mu
	foldTimer *time.Timer        // a fold scheduled after a burst, under mu
	lastWrite time.Time          // when refresh last applied changes, under mu
	closed    bool               // the Manager was closed, under mu
}

// reportUnresolved tells OnError about policies the catalog of ns does not
// resolve that s resolved.
func (pc *policyCache) reportUnresolved(s, ns *snapshot) {
	for _, c := range ns.unresolved {
		if !slices.ContainsFunc(s.unresolved, func(o *compiled) bool { return o.ID == c.ID && o.Version == c.Version }) {
			pc.onError(fmt.Errorf("pam: policy %s fails closed on every task: %w", c.ID, c.broken))
		}
	}
}

// fold folds the snapshot's overlays into its bases, unless writes keep
// coming (then it waits for them to pause).
func (pc *policyCache) fold() {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.foldTimer = nil
	s := pc.snap.Load()
	if pc.closed || !s.layered() {
		return
	}
	if wait := foldAfter - time.Since(pc.lastWrite); wait > 0 {
		pc.foldTimer = time.AfterFunc(wait, pc.fold)
		return
	}
	pc.snap.Store(s.with(s.rev, nil, true))
	pc.folded = time.Now()
}

// foldAfter is the pause in policy writes after which the next write folds
// the snapshot's overlays (see layered): writes closer together than this
// are a burst, each copying only the small overlays.
const foldAfter = 100 * time.Millisecond

// DefaultConditionTimeout is Options.ConditionTimeout's default: enough
// for conditions over an operation's parameters and the catalog, which
// take microseconds, and short enough that no call of Guard or Check
// waits noticeably on a runaway one.
const DefaultConditionTimeout = 50 * time.Millisecond

func newPolicyCache(store Store, onError func(error), cat *Catalog, timeout time.Duration) (*policyCache, error) {
	switch {
	case timeout < 0:
		return nil, invalid("Options.ConditionTimeout", "must not be negative")
	case timeout == 0:
		timeout = DefaultConditionTimeout
	}
	pc := &policyCache{store: store, env: rules.NewEnv(timeout), onError: onError}
	if err := cat.Validate(); err != nil {
		return nil, err
	}
	if err := pc.env.SetData(context.Background(), catalogData(cat)); err != nil {
		return nil, invalid("Catalog.Data", "%v", err)
	}
	c := cat.Clone()
	pc.snap.Store(newSnapshot(-1, &c, indexCatalog(&c), nil))
	return pc, nil
}

// written makes a policy this Manager committed visible before the call
// that wrote it returns, reusing its compilation.
func (pc *policyCache) written(ctx context.Context, p *Policy, c *compiled) error {
	return pc.writtenAll(ctx, []Policy{*p}, map[string]*compiled{p.ID: c})
}

// writtenAll is written for the policies of one commit; built holds the
// compilations of the live ones, by ID.
func (pc *policyCache) writtenAll(ctx context.Context, ps []Policy, built map[string]*compiled) error {
	for i := range ps {
		if c := built[ps[i].ID]; c != nil {
			c.Policy.Revision = ps[i].Revision
			pc.fresh.Store(compileKey(&ps[i]), c)
		}
	}
	_, err := pc.refresh(ctx)
	// A reload that another call made first did not take them: no
	// compilation may stay behind.
	for i := range ps {
		pc.fresh.Delete(compileKey(&ps[i]))
	}
	return err
}

// close stops a scheduled fold; the cache schedules none after it.
func (pc *policyCache) close() {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.closed = true
	if pc.foldTimer != nil {
		pc.foldTimer.Stop()
		pc.foldTimer = nil
	}
}

// setCatalog replaces the catalog: plan computes, from the current
// catalog and snapshot, the write and the policies it changes (nil:
// deleted); commit writes it; the new snapshot is swapped in before
// setCatalog returns, so this Manager never decides on the new catalog
// with the old policies.
func (pc *policyCache) setCatalog(ctx context.Context, cat *Catalog,
	plan func(old *Catalog, s *snapshot) (*Tx, map[string]*compiled, error), commit func(*Tx) error) error {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	s := pc.snap.Load()
	tx, changed, err := plan(s.cat, s)
	if err != nil {
		return err
	}
	// The data must be JSON; it reaches conditions only once committed,
	// and together with the snapshot that goes with it.
	if _, err := json.Marshal(catalogData(cat)); err != nil {
		return invalid("Catalog.Data", "%v", err)
	}
	if err := commit(tx); err != nil {
		return err
	}
	if err := pc.env.SetData(context.WithoutCancel(ctx), catalogData(cat)); err != nil {
		pc.onError(fmt.Errorf("pam: the committed catalog's data: %w", err))
	}
	all := s.merged(changed)
	for i := range tx.Policies {
		if c := changed[tx.Policies[i].ID]; c != nil {
			pc.fresh.Store(compileKey(&tx.Policies[i]), c)
		}
	}
	if tx.Catalog != nil {
		cat = tx.Catalog // with the Revision the commit gave it
	}
	pc.snap.Store(newSnapshot(s.rev, cat, indexCatalog(cat), all))
	return nil
}

// compiled is a policy with its Rego prepared.
type compiled struct {
	Policy
	cond        *rules.Condition
	requestRule *rules.Module
	autoRule    *rules.Module
	// broken is set when a stored policy no longer compiles. Such a policy
	// covers every operation of its scope and accepts no submissions:
	// fail closed.
	broken error
	ids    []string // []string{ID}, for Store.Grants
}

// snapshot is an immutable view of the policies and the catalog, swapped
// whole when either changes. Guard reads it without locks.
type snapshot struct {
	rev      int64
	cat      *Catalog // as set; read-only
	catalog  *catalogIndex
	policies layered[*compiled]   // live policies by ID
	byTask   layered[[]*compiled] // task → policies whose scope includes it, by ID
	// unresolved are the live policies whose scope the catalog does not
	// define, marked broken: candidates of every task (fail closed).
	unresolved []*compiled
	// slow: candidates must look past byTask's base (an overlay, or
	// unresolved policies); false on Guard's common path.
	slow bool
}

// compileKey names a policy version and the Rego it carries: two writers
// racing to create the same ID with different Rego never share a
// compilation.
func compileKey(p *Policy) string {
	h := sha256.New()
	for _, src := range []string{p.Condition, p.RequestRule, p.AutoApproveRule} {
		fmt.Fprintf(h, "%d:%s", len(src), src)
	}
	return fmt.Sprintf("%s@%d#%x", p.ID, p.Version, h.Sum(nil))
}

// compile prepares a policy's Rego. Concurrent needs for the same policy
// version share one compilation.
func (pc *policyCache) compile(ctx context.Context, p *Policy) (*compiled, error) {
	v, err, _ := pc.compiles.Do(compileKey(p), func() (any, error) {
		c := &compiled{Policy: *p}
		var err error
		if p.Condition != "" {
			if c.cond, err = pc.env.CompileCondition(ctx, p.Condition); err != nil {
				return nil, regoError("Condition", err)
			}
		}
		if p.RequestRule != "" {
			if c.requestRule, err = pc.env.CompileModule(ctx, p.RequestRule, "deny"); err != nil {
				return nil, regoError("RequestRule", err)
			}
		}
		if p.AutoApproveRule != "" {
			if c.autoRule, err = pc.env.CompileModule(ctx, p.AutoApproveRule, "approve"); err != nil {
				return nil, regoError("AutoApproveRule", err)
			}
		}
		return c, nil
	})
	if err != nil {
		return nil, err
	}
	c := *v.(*compiled)
	c.Policy = *p
	return &c, nil
}

func regoError(field string, err error) error {
	var re *rules.Error
	if errors.As(err, &re) {
		return &RegoError{Field: field, Line: re.Line, Col: re.Col, Message: re.Msg}
	}
	return &RegoError{Field: field, Message: err.Error()}
}

// current returns a snapshot at least as new as the store's policy
// revision: one cheap store read per call, and a reload of the changed
// policies when another writer got ahead.
func (pc *policyCache) current(ctx context.Context) (*snapshot, error) {
	rev, err := pc.store.PolicyRevision(ctx)
	if err != nil {
		return nil, err
	}
	if s := pc.snap.Load(); s.rev == rev {
		return s, nil
	}
	return pc.refresh(ctx)
}

// refresh loads the policies changed since the current snapshot, compiles
// only those, and swaps in a new snapshot.
func (pc *policyCache) refresh(ctx context.Context) (*snapshot, error) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	s := pc.snap.Load()
again:
	since := max(s.rev, 0)
	changes, rev, err := pc.store.PolicyChanges(ctx, since)
	if err != nil {
		return nil, err
	}
	stored, err := pc.store.Catalog(ctx)
	if err != nil {
		return nil, err
	}
	if stored.Version == 0 && pc.seed != nil {
		// An empty store takes Options.Catalog, once, before anyone
		// decides on it; a Manager that lost the race reads the winner's.
		seed := pc.seed
		pc.seed = nil
		if err := seed(ctx); err != nil && !errors.Is(err, ErrConflict) {
			pc.seed = seed
			return nil, fmt.Errorf("pam: store Options.Catalog: %w", err)
		}
		goto again
	}
	if pc.seed != nil && stored.Version > 0 {
		if d := catalogDiff(pc.seedCat, &stored); d["unchanged"] == "" {
			pc.onError(fmt.Errorf("pam: Options.Catalog is ignored: the store holds catalog version %d, which differs (change it with SetCatalog or Apply)", stored.Version))
		}
		pc.seed = nil
	}
	base := s
	if rev < s.rev {
		// The store went back (restored from a backup): load everything.
		if changes, rev, err = pc.store.PolicyChanges(ctx, 0); err != nil {
			return nil, err
		}
		base = newSnapshot(-1, s.cat, s.catalog, nil)
	} else if rev == s.rev && stored.Revision == s.cat.Revision {
		return s, nil
	}
	built := make([]*compiled, len(changes))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i := range changes {
		p := &changes[i]
		if p.Deleted {
			continue
		}
		if v, ok := pc.fresh.LoadAndDelete(compileKey(p)); ok {
			built[i] = v.(*compiled)
			built[i].Policy = *p
			continue
		}
		g.Go(func() error {
			c, err := pc.compile(gctx, p)
			if err != nil {
				if cerr := gctx.Err(); cerr != nil {
					return cerr
				}
				// Stored by another writer yet not compiling here (a
				// different OPA version, say): keep it, failing closed.
				pc.onError(fmt.Errorf("pam: stored policy %s version %d: %w", p.ID, p.Version, err))
				c = &compiled{Policy: *p, broken: err}
			}
			built[i] = c
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	changed := make(map[string]*compiled, len(changes))
	for i := range changes {
		if changes[i].Deleted {
			changed[changes[i].ID] = nil
		} else {
			built[i].ids = []string{changes[i].ID}
			changed[changes[i].ID] = built[i]
		}
	}
	// Fold the overlay unless writes come in a burst: one write after a
	// pause leaves Guard a single map to read. This paces work, like the
	// audit feed's polling, so it runs on real time, not Options.Clock.
	if stored.Revision != base.cat.Revision {
		// The catalog changed: every task list may have.
		if err := pc.env.SetData(ctx, catalogData(&stored)); err != nil {
			pc.onError(fmt.Errorf("pam: the stored catalog's data: %w", err))
		}
		ns := newSnapshot(rev, &stored, indexCatalog(&stored), base.merged(changed))
		pc.reportUnresolved(s, ns)
		pc.snap.Store(ns)
		return ns, nil
	}
	pc.lastWrite = time.Now()
	fold := pc.lastWrite.Sub(pc.folded) > foldAfter
	ns := base.with(rev, changed, fold)
	pc.reportUnresolved(s, ns)
	if ns.layered() {
		// The burst may be over: fold once it has paused.
		if pc.foldTimer == nil && !pc.closed {
			pc.foldTimer = time.AfterFunc(foldAfter, pc.fold)
		}
	} else {
		pc.folded = time.Now()
	}
	pc.snap.Store(ns)
	return ns, nil
}
