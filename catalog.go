package pam

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
)

// Catalog defines the host's roles and role groups. Conditions and rules
// see it under data.pam: data.pam.roles, data.pam.role_groups, and every
// key of Data (data.pam.vip_mailboxes, say).
type Catalog struct {
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

// SetCatalog replaces the catalog of roles and role groups. It fails with
// ErrInvalid, changing nothing, if a live policy is scoped to a role or
// role group the new catalog lacks: removing it would silently unguard its
// tasks. The change is audited and seen by the next Guard.
func (m *Manager) SetCatalog(ctx context.Context, cat Catalog) error {
	if err := cat.Validate(); err != nil {
		return err
	}
	actor, _ := ActorFrom(ctx)
	now, err := m.now(ctx)
	if err != nil {
		return err
	}
	tx := &Tx{Events: []Event{{Time: now, Type: EventCatalogSet, Actor: actor, Detail: map[string]string{
		"roles": fmt.Sprint(len(cat.Roles)), "role_groups": fmt.Sprint(len(cat.RoleGroups)),
	}}}}
	if err := m.cache.setCatalog(ctx, &cat, func() error { return m.commit(ctx, tx) }); err != nil {
		return err
	}
	m.feed.published(tx.Events)
	return nil
}

func catalogData(c *Catalog) map[string]any {
	d := make(map[string]any, len(c.Data)+2)
	maps.Copy(d, c.Data)
	d["roles"] = c.Roles
	d["role_groups"] = c.RoleGroups
	d["tasks"] = c.Tasks
	return d
}
