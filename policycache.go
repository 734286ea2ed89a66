package pam

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"

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

	snap     atomic.Pointer[snapshot]
	mu       sync.Mutex         // serialises reloads and catalog changes
	compiles singleflight.Group // one compilation per policy version
	fresh    sync.Map           // compileKey → *compiled, policies this Manager just wrote
}

func newPolicyCache(store Store, onError func(error), cat *Catalog) (*policyCache, error) {
	pc := &policyCache{store: store, env: rules.NewEnv(), onError: onError}
	if err := cat.Validate(); err != nil {
		return nil, err
	}
	if err := pc.env.SetData(context.Background(), catalogData(cat)); err != nil {
		return nil, invalid("Catalog.Data", "%v", err)
	}
	c := cat.clone()
	pc.snap.Store(&snapshot{rev: -1, cat: &c, catalog: indexCatalog(&c)})
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
	return err
}

// setCatalog replaces the catalog: plan computes, from the current
// catalog and live policies, the write and the live policies after it;
// commit writes it; the new snapshot is swapped in before setCatalog
// returns, so this Manager never decides on the new catalog with the old
// policies.
func (pc *policyCache) setCatalog(ctx context.Context, cat *Catalog,
	plan func(old *Catalog, policies map[string]*compiled) (*Tx, map[string]*compiled, error), commit func(*Tx) error) error {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	s := pc.snap.Load()
	tx, policies, err := plan(s.cat, s.policies)
	if err != nil {
		return err
	}
	if err := pc.env.SetData(ctx, catalogData(cat)); err != nil {
		return invalid("Catalog.Data", "%v", err)
	}
	if err := commit(tx); err != nil {
		// Put the data back: the catalog did not change.
		if derr := pc.env.SetData(context.WithoutCancel(ctx), catalogData(s.cat)); derr != nil {
			pc.onError(fmt.Errorf("pam: restore the catalog's data after a failed change: %w", derr))
		}
		return err
	}
	for i := range tx.Policies {
		if c := policies[tx.Policies[i].ID]; c != nil && !tx.Policies[i].Deleted {
			pc.fresh.Store(compileKey(&tx.Policies[i]), c)
		}
	}
	ix := indexCatalog(cat)
	pc.snap.Store(&snapshot{rev: s.rev, cat: cat, catalog: ix, policies: policies, byTask: buildIndex(policies, ix)})
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
	policies map[string]*compiled
	byTask   map[string][]*compiled // task → policies whose scope includes it, by ID
}

func buildIndex(policies map[string]*compiled, cat *catalogIndex) map[string][]*compiled {
	idx := make(map[string][]*compiled, len(policies))
	for _, c := range policies {
		for _, t := range cat.tasks(c.Scope) {
			idx[t] = append(idx[t], c)
		}
	}
	for _, cs := range idx {
		if len(cs) > 1 {
			sort.Slice(cs, func(i, j int) bool { return cs[i].ID < cs[j].ID })
		}
	}
	return idx
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
	since := max(s.rev, 0)
	changes, rev, err := pc.store.PolicyChanges(ctx, since)
	if err != nil {
		return nil, err
	}
	policies := s.policies
	if rev < s.rev {
		// The store went back (restored from a backup): load everything.
		if changes, rev, err = pc.store.PolicyChanges(ctx, 0); err != nil {
			return nil, err
		}
		policies = nil
	} else if rev == s.rev {
		return s, nil
	}
	policies = maps.Clone(policies)
	if policies == nil {
		policies = make(map[string]*compiled, len(changes))
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
	for i := range changes {
		if changes[i].Deleted {
			delete(policies, changes[i].ID)
		} else {
			built[i].ids = []string{changes[i].ID}
			policies[changes[i].ID] = built[i]
		}
	}
	ns := &snapshot{rev: rev, cat: s.cat, catalog: s.catalog, policies: policies, byTask: buildIndex(policies, s.catalog)}
	pc.snap.Store(ns)
	return ns, nil
}
