package pam

import (
	"fmt"
	"iter"
	"maps"
	"math"
	"slices"
	"sort"
)

// layered is an immutable map made of a base, built at the last
// compaction, and a small overlay of the entries changed since; an
// overlay entry that is not live (a nil policy, an empty list) hides the
// base's. A write copies only the overlay, and the overlay is folded into
// a new base once it outgrows overlayLimit: loading n policies one by one
// costs O(n·√n) map work, not the O(n²) of copying everything on every
// write. Reads look at the overlay only while it holds something, and the
// policy cache folds it as soon as writes pause (see policyCache.fold), so
// Guard pays for the overlay only during a burst of writes.
type layered[V any] struct {
	base, over map[string]V
	live       func(V) bool
}

func (l *layered[V]) get(k string) V {
	if len(l.over) != 0 {
		if v, ok := l.over[k]; ok {
			return v
		}
	}
	return l.base[k]
}

// all yields every live entry, in no order.
func (l *layered[V]) all() iter.Seq2[string, V] {
	return func(yield func(string, V) bool) {
		for k, v := range l.base {
			if _, hidden := l.over[k]; !hidden && !yield(k, v) {
				return
			}
		}
		for k, v := range l.over {
			if l.live(v) && !yield(k, v) {
				return
			}
		}
	}
}

// overlayLimit is the largest overlay kept over a base of n entries.
func overlayLimit(n int) int { return 32 + 4*int(math.Sqrt(float64(n))) }

// with returns l with changes applied, folding the overlay into a new
// base when fold is set or the overlay would outgrow overlayLimit.
func (l *layered[V]) with(changes map[string]V, fold bool) layered[V] {
	if fold || len(l.over)+len(changes) > overlayLimit(len(l.base)) {
		base := make(map[string]V, len(l.base)+len(changes))
		for k, v := range l.all() {
			base[k] = v
		}
		for k, v := range changes {
			if l.live(v) {
				base[k] = v
			} else {
				delete(base, k)
			}
		}
		return layered[V]{base: base, live: l.live}
	}
	over := make(map[string]V, len(l.over)+len(changes))
	maps.Copy(over, l.over)
	maps.Copy(over, changes)
	return layered[V]{base: l.base, over: over, live: l.live}
}

func livePolicy(c *compiled) bool  { return c != nil }
func liveList(cs []*compiled) bool { return len(cs) > 0 }
func byID(cs []*compiled)          { sort.Slice(cs, func(i, j int) bool { return cs[i].ID < cs[j].ID }) }
func newPolicies(m map[string]*compiled) layered[*compiled] {
	return layered[*compiled]{base: m, live: livePolicy}
}

// newSnapshot indexes policies under the catalog. A policy whose scope
// the catalog does not define (the store was written around the engine)
// cannot be indexed by task: it is kept aside, failing closed, as a
// candidate of every task.
func newSnapshot(rev int64, cat *Catalog, ix *catalogIndex, policies map[string]*compiled) *snapshot {
	idx := make(map[string][]*compiled, len(policies))
	var unresolved []*compiled
	for _, c := range policies {
		if !ix.known(c.Scope) {
			u := *c
			u.broken = fmt.Errorf("its scope %s is not in the catalog", c.Scope)
			unresolved = append(unresolved, &u)
			continue
		}
		for _, t := range ix.tasks(c.Scope) {
			idx[t] = append(idx[t], c)
		}
	}
	for _, cs := range idx {
		if len(cs) > 1 {
			byID(cs)
		}
	}
	byID(unresolved)
	return &snapshot{rev: rev, cat: cat, catalog: ix, policies: newPolicies(policies),
		byTask: layered[[]*compiled]{base: idx, live: liveList}, unresolved: unresolved, slow: len(unresolved) > 0}
}

// with returns s at revision rev with the changed policies (nil: deleted)
// applied, under the same catalog. Unless fold is set (or the change is
// large), only the lists of the tasks the changed policies had or have
// are rebuilt, into the overlays.
func (s *snapshot) with(rev int64, changed map[string]*compiled, fold bool) *snapshot {
	for _, c := range changed {
		fold = fold || c != nil && !s.catalog.known(c.Scope)
	}
	if fold || len(s.unresolved) > 0 || len(changed) > overlayLimit(len(s.policies.base)) {
		return newSnapshot(rev, s.cat, s.catalog, s.merged(changed))
	}
	lists := map[string][]*compiled{}
	touch := func(c *compiled) {
		for _, t := range s.catalog.tasks(c.Scope) {
			if _, ok := lists[t]; !ok {
				lists[t] = nil
			}
		}
	}
	for id, c := range changed {
		if old := s.policies.get(id); old != nil {
			touch(old)
		}
		if c != nil {
			touch(c)
		}
	}
	for t := range lists {
		var l []*compiled
		for _, c := range s.byTask.get(t) {
			if _, ch := changed[c.ID]; !ch {
				l = append(l, c)
			}
		}
		for _, c := range changed {
			if c != nil && s.catalog.coversTask(c.Scope, t) {
				l = append(l, c)
			}
		}
		byID(l)
		lists[t] = l
	}
	ns := &snapshot{rev: rev, cat: s.cat, catalog: s.catalog, policies: s.policies.with(changed, false), byTask: s.byTask.with(lists, false)}
	ns.slow = len(ns.byTask.over) > 0
	return ns
}

// policy returns the live policy id, nil when there is none.
func (s *snapshot) policy(id string) *compiled { return s.policies.get(id) }

// candidates returns the policies whose scope includes task, by ID.
// Guard's hot path: written out rather than through the generic get.
func (s *snapshot) candidates(task string) []*compiled {
	if s.slow {
		if len(s.unresolved) != 0 {
			return append(slices.Clone(s.byTask.get(task)), s.unresolved...)
		}
		return s.byTask.get(task)
	}
	return s.byTask.base[task]
}

// layered reports whether s has overlays to fold.
func (s *snapshot) layered() bool { return len(s.policies.over) > 0 || len(s.byTask.over) > 0 }

// merged returns the live policies of s with changed (nil: deleted)
// applied, as one new map.
func (s *snapshot) merged(changed map[string]*compiled) map[string]*compiled {
	all := make(map[string]*compiled, len(s.policies.base)+len(changed))
	for id, c := range s.policies.all() {
		all[id] = c
	}
	for id, c := range changed {
		if c == nil {
			delete(all, id)
		} else {
			all[id] = c
		}
	}
	return all
}
