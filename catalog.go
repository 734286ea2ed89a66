package pam

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"
)

// Catalog defines the host's roles and role groups. Conditions and rules
// see it under data.pam: data.pam.roles, data.pam.role_groups, and every
// key of Data (data.pam.vip_mailboxes, say).
type Catalog struct {
	// Version counts the catalog's writes; stores compare it, as for
	// policies. 0: no catalog was ever stored.
	Version int64 `json:"version,omitempty"`
	// Revision is set by the store on every write, on the same counter
	// as Policy.Revision, so that every Manager sees the change on its
	// next call.
	Revision int64 `json:"revision,omitempty"`

	Roles      map[string][]string `json:"roles,omitempty"`       // role → tasks
	RoleGroups map[string][]string `json:"role_groups,omitempty"` // role group → roles
	// Tasks declare the parameters of a task's operations (see TaskSpec);
	// a task need not be declared.
	Tasks map[string]TaskSpec `json:"tasks,omitempty"`
	Data  map[string]any      `json:"data,omitempty"` // extra data for Rego
}

// Validate checks names and that every role a role group lists exists.
func (c *Catalog) Validate() error {
	for role, tasks := range c.Roles {
		if err := checkName("Catalog.Roles", role); err != nil {
			return err
		}
		for _, t := range tasks {
			if err := checkName("Catalog.Roles["+role+"]", t); err != nil {
				return err
			}
		}
	}
	for group, roles := range c.RoleGroups {
		if err := checkName("Catalog.RoleGroups", group); err != nil {
			return err
		}
		for _, r := range roles {
			if _, ok := c.Roles[r]; !ok {
				return invalid("Catalog.RoleGroups["+group+"]", "unknown role %q", r)
			}
		}
	}
	for task, spec := range c.Tasks {
		if err := checkName("Catalog.Tasks", task); err != nil {
			return err
		}
		if err := spec.Validate("Catalog.Tasks[" + task + "]"); err != nil {
			return err
		}
	}
	for k := range c.Data {
		if k == "roles" || k == "role_groups" || k == "tasks" {
			return invalid("Catalog.Data", "key %q is reserved", k)
		}
		if err := checkName("Catalog.Data", k); err != nil {
			return err
		}
	}
	return nil
}

// catalogIndex is the flattened, read-only form of a Catalog.
type catalogIndex struct {
	roleTasks  map[string]map[string]bool
	groupRoles map[string]map[string]bool
	groupTasks map[string]map[string]bool
	specs      map[string]*TaskSpec // declared tasks
}

func indexCatalog(c *Catalog) *catalogIndex {
	ix := &catalogIndex{
		roleTasks:  make(map[string]map[string]bool, len(c.Roles)),
		groupRoles: make(map[string]map[string]bool, len(c.RoleGroups)),
		groupTasks: make(map[string]map[string]bool, len(c.RoleGroups)),
		specs:      make(map[string]*TaskSpec, len(c.Tasks)),
	}
	for task, spec := range c.Tasks {
		ix.specs[task] = &TaskSpec{Params: slices.Clone(spec.Params)}
	}
	for role, tasks := range c.Roles {
		set := make(map[string]bool, len(tasks))
		for _, t := range tasks {
			set[t] = true
		}
		ix.roleTasks[role] = set
	}
	for group, roles := range c.RoleGroups {
		rs, ts := make(map[string]bool, len(roles)), make(map[string]bool)
		for _, r := range roles {
			rs[r] = true
			for t := range ix.roleTasks[r] {
				ts[t] = true
			}
		}
		ix.groupRoles[group], ix.groupTasks[group] = rs, ts
	}
	return ix
}

// known reports whether a scope names something the catalog defines (tasks
// need no definition).
func (ix *catalogIndex) known(s Scope) bool {
	switch s.Kind {
	case KindRole:
		_, ok := ix.roleTasks[s.Name]
		return ok
	case KindRoleGroup:
		_, ok := ix.groupRoles[s.Name]
		return ok
	}
	return true
}

// tasks returns the tasks a scope expands to, sorted.
func (ix *catalogIndex) tasks(s Scope) []string {
	var set map[string]bool
	switch s.Kind {
	case KindTask:
		return []string{s.Name}
	case KindRole:
		set = ix.roleTasks[s.Name]
	case KindRoleGroup:
		set = ix.groupTasks[s.Name]
	}
	out := make([]string, 0, len(set))
	for t := range set {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// coversTask reports whether scope s includes task.
func (ix *catalogIndex) coversTask(s Scope, task string) bool {
	switch s.Kind {
	case KindTask:
		return s.Name == task
	case KindRole:
		return ix.roleTasks[s.Name][task]
	case KindRoleGroup:
		return ix.groupTasks[s.Name][task]
	}
	return false
}

// coversScope reports whether a policy scope p includes a requested scope s.
func (ix *catalogIndex) coversScope(p, s Scope) bool {
	if p == s {
		return true
	}
	switch s.Kind {
	case KindTask:
		return ix.coversTask(p, s.Name)
	case KindRole:
		return p.Kind == KindRoleGroup && ix.groupRoles[p.Name][s.Name]
	}
	return false
}

// SetCatalog replaces the stored catalog of roles, role groups and task
// declarations; every Manager sharing the store decides on it from its
// next call. Only members of Options.AdminGroup may (ErrForbidden;
// ErrNoActor without an actor). It fails with ErrInvalid, changing
// nothing, when it would remove or empty a role or role group that a live
// policy is scoped to: that would silently unguard its tasks (the error
// names the policies). A task may move between roles: every policy whose
// effective set of tasks changes, narrowed or widened, has its
// MinGrantVersion raised in the same commit, so grants approved under the
// old meaning no longer satisfy Guard. The catalog.set event records the
// change itself (roles and role groups added and removed, tasks added to
// and removed from each role, roles added to and removed from each role
// group, task declarations changed), followed by a policy.updated event
// for each policy cut.
func (m *Manager) SetCatalog(ctx context.Context, cat Catalog) error {
	actor, err := m.requireAdmin(ctx)
	if err != nil {
		return err
	}
	if err := cat.Validate(); err != nil {
		return err
	}
	cat = cat.Clone()
	for range maxAttempts {
		if _, err := m.cache.current(ctx); err != nil {
			return err
		}
		now, err := m.now(ctx)
		if err != nil {
			return err
		}
		var tx *Tx
		err = m.cache.setCatalog(ctx, &cat, func(old *Catalog, s *snapshot) (*Tx, map[string]*compiled, error) {
			var changed map[string]*compiled
			tx, changed, err = catalogTx(old, &cat, s, actor, now)
			return tx, changed, err
		}, func(tx *Tx) error { return m.commit(ctx, tx) })
		if errors.Is(err, ErrConflict) {
			continue // a policy changed meanwhile: decide again on what is there now
		}
		if err != nil {
			return err
		}
		m.published(tx.Events)
		return nil
	}
	return fmt.Errorf("%w: the policies kept changing while the catalog was set", ErrConflict)
}

// Catalog returns the stored catalog, which every Manager sharing the
// store decides on, to anyone with an actor (ErrNoActor otherwise): roles
// and task declarations say what to request. Catalog.Data is readable by
// every signed-in user too; keep nothing secret in it.
func (m *Manager) Catalog(ctx context.Context) (Catalog, error) {
	if _, err := actorOf(ctx); err != nil {
		return Catalog{}, err
	}
	s, err := m.cache.current(ctx)
	if err != nil {
		return Catalog{}, err
	}
	return s.cat.Clone(), nil
}

// catalogTx is the write that replaces catalog old by next under the live
// policies of s: the catalog.set event, and a new version of each policy
// whose effective tasks change, with its MinGrantVersion raised. It also
// returns those policies as they will be once it commits.
func catalogTx(old, next *Catalog, s *snapshot, actor string, now time.Time) (*Tx, map[string]*compiled, error) {
	oldIx, nextIx := s.catalog, indexCatalog(next)
	var lost []string
	var cut []*compiled
	meaning := meaningChange(old, next, oldIx, nextIx)
	for _, c := range s.policies.all() {
		switch {
		case c.Scope.Kind != KindTask && (!nextIx.known(c.Scope) || len(nextIx.tasks(c.Scope)) == 0):
			lost = append(lost, fmt.Sprintf("%s (%s)", c.ID, c.Scope))
		case meaning(&c.Policy):
			cut = append(cut, c)
		}
	}
	if len(lost) > 0 {
		sort.Strings(lost)
		return nil, nil, invalid("Catalog", "live policies are scoped to roles or role groups it removes or empties: %s", strings.Join(lost, ", "))
	}
	sort.Slice(cut, func(i, j int) bool { return cut[i].ID < cut[j].ID })
	detail := catalogDiff(old, next)
	if len(cut) > 0 {
		ids := make([]string, len(cut))
		for i, c := range cut {
			ids[i] = c.ID
		}
		detail["policies_cut"] = strings.Join(ids, ",")
	}
	stored := next.Clone()
	stored.Version, stored.Revision = old.Version+1, 0
	// Judged against every live policy: a policy written since makes the
	// commit fail, and SetCatalog judge again.
	tx := &Tx{Catalog: &stored, PolicyRevision: s.rev, Events: []Event{{Time: now, Type: EventCatalogSet, Actor: actor, Detail: detail}}}
	changed := make(map[string]*compiled, len(cut))
	for _, c := range cut {
		p := c.Policy
		p.Version, p.MinGrantVersion, p.UpdatedAt, p.UpdatedBy = p.Version+1, p.Version+1, now, actor
		e := policyEvent(EventPolicyUpdated, &p, actor, now)
		e.Detail["min_grant_version"] = fmt.Sprint(p.MinGrantVersion)
		e.Detail["cause"] = "catalog"
		tx.Policies = append(tx.Policies, p)
		tx.Events = append(tx.Events, e)
		nc := *c
		nc.Policy = p
		changed[c.ID] = &nc
	}
	return tx, changed, nil
}

// meaningChange returns the test of whether replacing catalog old by next
// changes what a policy covers: the tasks of its role or role group, or,
// for a policy with a condition, the data the condition reads
// (data.pam) or the parameter declaration of one of its tasks (which
// decides whether the condition runs at all).
func meaningChange(old, next *Catalog, oldIx, nextIx *catalogIndex) func(p *Policy) bool {
	dataChanged := !reflect.DeepEqual(old.Data, next.Data)
	return func(p *Policy) bool {
		before, after := oldIx.tasks(p.Scope), nextIx.tasks(p.Scope)
		if !slices.Equal(before, after) {
			return true
		}
		if p.Condition == "" {
			return false
		}
		if dataChanged {
			return true
		}
		for _, t := range after {
			o, n := old.Tasks[t], next.Tasks[t]
			if !slices.Equal(o.Params, n.Params) {
				return true
			}
		}
		return false
	}
}

// catalogDiff describes the change from old to next as event detail.
func catalogDiff(old, next *Catalog) map[string]string {
	d := map[string]string{}
	setDiff(d, "roles", slices.Collect(maps.Keys(old.Roles)), slices.Collect(maps.Keys(next.Roles)))
	setDiff(d, "role_groups", slices.Collect(maps.Keys(old.RoleGroups)), slices.Collect(maps.Keys(next.RoleGroups)))
	for _, role := range union(old.Roles, next.Roles) {
		setDiff(d, "role:"+role+".tasks", old.Roles[role], next.Roles[role])
	}
	for _, g := range union(old.RoleGroups, next.RoleGroups) {
		setDiff(d, "role_group:"+g+".roles", old.RoleGroups[g], next.RoleGroups[g])
	}
	for _, task := range union(old.Tasks, next.Tasks) {
		o, ok1 := old.Tasks[task]
		n, ok2 := next.Tasks[task]
		switch {
		case !ok1:
			d["task:"+task+".params"] = "declared"
		case !ok2:
			d["task:"+task+".params"] = "undeclared"
		case !slices.Equal(o.Params, n.Params):
			d["task:"+task+".params"] = "changed"
		}
	}
	if !reflect.DeepEqual(old.Data, next.Data) {
		d["data"] = "changed"
	}
	if len(d) == 0 {
		d["unchanged"] = "true"
	}
	return d
}

// setDiff records in d what was added to and removed from a set of names.
func setDiff(d map[string]string, key string, old, next []string) {
	if add := minus(next, old); len(add) > 0 {
		d[key+"_added"] = strings.Join(add, ",")
	}
	if del := minus(old, next); len(del) > 0 {
		d[key+"_removed"] = strings.Join(del, ",")
	}
}

// minus returns the names in a and not in b, sorted.
func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) && !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	sort.Strings(out)
	return out
}

// union returns the keys of a and b, sorted.
func union[V any](a, b map[string]V) []string {
	keys := slices.Collect(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// Clone returns a copy of the catalog that shares no map or slice with it
// (Data is copied one level deep: the engine never changes it).
func (c Catalog) Clone() Catalog {
	out := c
	out.Roles = make(map[string][]string, len(c.Roles))
	for k, v := range c.Roles {
		out.Roles[k] = slices.Clone(v)
	}
	out.RoleGroups = make(map[string][]string, len(c.RoleGroups))
	for k, v := range c.RoleGroups {
		out.RoleGroups[k] = slices.Clone(v)
	}
	out.Tasks = make(map[string]TaskSpec, len(c.Tasks))
	for k, v := range c.Tasks {
		out.Tasks[k] = TaskSpec{Params: slices.Clone(v.Params)}
	}
	out.Data = maps.Clone(c.Data)
	return out
}

func catalogData(c *Catalog) map[string]any {
	d := make(map[string]any, len(c.Data)+2)
	maps.Copy(d, c.Data)
	d["roles"] = c.Roles
	d["role_groups"] = c.RoleGroups
	d["tasks"] = c.Tasks
	return d
}

// empty reports whether the catalog defines nothing.
func (c *Catalog) empty() bool {
	return len(c.Roles) == 0 && len(c.RoleGroups) == 0 && len(c.Tasks) == 0 && len(c.Data) == 0
}

// seedCatalog returns the write of Options.Catalog to a store that holds
// no catalog (see policyCache.seed).
func (m *Manager) seedCatalog(cat Catalog) func(context.Context) error {
	return func(ctx context.Context) error {
		now, err := m.now(ctx)
		if err != nil {
			return err
		}
		c := cat.Clone()
		c.Version, c.Revision = 1, 0
		d := catalogDiff(&Catalog{}, &c)
		d["seeded_from"] = "Options.Catalog"
		tx := &Tx{Catalog: &c, Events: []Event{{Time: now, Type: EventCatalogSet, Detail: d}}}
		if err := m.commit(ctx, tx); err != nil {
			return err
		}
		m.published(tx.Events)
		return nil
	}
}
