package pam

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
)

// Config is the catalog and the policies as code: the desired state that
// Apply makes true. Keep it in a file under version control (pamctl apply
// reads YAML or JSON).
type Config struct {
	// Catalog replaces the catalog; nil leaves it as it is.
	Catalog *Catalog `json:"catalog,omitempty"`
	// Policies by stable name, which becomes the policy's ID. Every live
	// policy not named here is deleted.
	Policies map[string]Policy `json:"policies,omitempty"`
	// SameScope names policies that are meant to share their scope and
	// condition with another policy. Two policies that do, neither named
	// here, are refused (ErrExists): usually one is a copy made by
	// mistake, and every request for that scope would be ambiguous.
	SameScope []string `json:"same_scope,omitempty"`
}

// PlanAction is what Apply does to one policy.
type PlanAction string

const (
	PlanCreate PlanAction = "create"
	PlanUpdate PlanAction = "update"
	PlanDelete PlanAction = "delete"
)

// PolicyChange is one policy's part of a Plan.
type PolicyChange struct {
	Action   PlanAction `json:"action"`
	PolicyID string     `json:"policy_id"`
	// Changed lists the fields an update changes (their JSON names), and
	// "catalog" when the catalog change alone changes the policy's tasks.
	Changed []string `json:"changed,omitempty"`
	// CutsGrants: grants approved before the change stop satisfying
	// Guard (an update that raises MinGrantVersion, or a delete).
	CutsGrants bool `json:"cuts_grants,omitempty"`
	// ActiveGrants counts the grants active now that the change cuts.
	ActiveGrants int `json:"active_grants,omitempty"`
}

// Plan is what Apply does, or with DryRun would do.
type Plan struct {
	// Catalog is the catalog change as the catalog.set event records it;
	// nil when the catalog does not change.
	Catalog map[string]string `json:"catalog,omitempty"`
	// Policies are the policy changes, by policy ID.
	Policies []PolicyChange `json:"policies,omitempty"`
	// Applied is true once the plan was committed.
	Applied bool `json:"applied"`
}

// Empty reports whether the plan changes nothing.
func (p *Plan) Empty() bool { return p.Catalog == nil && len(p.Policies) == 0 }

// ApplyOptions tune Apply.
type ApplyOptions struct {
	// DryRun returns the plan without writing anything.
	DryRun bool
}

// Apply makes the stored catalog and policies what cfg says, in one
// commit, and returns the plan it carried out. Only admins may
// (ErrForbidden). It is idempotent: applying the same config again plans
// nothing, writes nothing and records nothing. Invalid input (a policy
// that does not validate or compile, a scope the catalog does not define,
// a catalog that removes a role a remaining policy uses) fails with
// ErrInvalid before anything is written; a name that a deleted policy had
// fails with ErrExists, since IDs are never reused. Updates follow
// UpdatePolicy: changing scope, condition, approval or approver groups
// raises MinGrantVersion, as does a catalog change that changes the
// policy's tasks.
func (m *Manager) Apply(ctx context.Context, cfg Config, opts ApplyOptions) (Plan, error) {
	actor, err := m.requireAdmin(ctx)
	if err != nil {
		return Plan{}, err
	}
	want, err := m.validateConfig(ctx, &cfg)
	if err != nil {
		return Plan{}, err
	}
	for range maxAttempts {
		s, err := m.cache.current(ctx)
		if err != nil {
			return Plan{}, err
		}
		now, err := m.now(ctx)
		if err != nil {
			return Plan{}, err
		}
		cat := s.cat
		if cfg.Catalog != nil {
			cat = cfg.Catalog
		}
		plan, tx, err := m.plan(ctx, s, cat, cfg.Catalog != nil, want, actor, now)
		if err != nil || plan.Empty() {
			return plan, err
		}
		// Compile what is new before writing, dry run or not: Rego
		// errors are the caller's, and Guard then finds the compilations
		// ready.
		built, err := m.compileAll(ctx, tx.Policies)
		if err != nil {
			return Plan{}, err
		}
		if opts.DryRun {
			return plan, nil
		}
		commit := func(tx *Tx) error { return m.commit(ctx, tx) }
		if cfg.Catalog != nil {
			// The new catalog and the policies written with it are
			// swapped in together.
			changed := make(map[string]*compiled, len(tx.Policies))
			for _, p := range tx.Policies {
				changed[p.ID] = built[p.ID] // nil for the deleted
			}
			err = m.cache.setCatalog(ctx, cat, func(*Catalog, *snapshot) (*Tx, map[string]*compiled, error) {
				return tx, changed, nil
			}, commit)
		} else {
			err = commit(tx)
		}
		if errors.Is(err, ErrConflict) {
			continue // another writer changed a policy: plan again
		}
		if err != nil {
			return Plan{}, err
		}
		if err := m.cache.writtenAll(ctx, tx.Policies, built); err != nil {
			m.onError(fmt.Errorf("pam: reload policies after Apply: %w", err))
		}
		m.published(tx.Events)
		plan.Applied = true
		return plan, nil
	}
	return Plan{}, fmt.Errorf("%w: the policies kept changing while Apply planned", ErrConflict)
}

// validateConfig checks cfg on its own and returns its policies with
// their IDs set, by ID.
func (m *Manager) validateConfig(ctx context.Context, cfg *Config) (map[string]Policy, error) {
	if cfg.Catalog != nil {
		if err := cfg.Catalog.Validate(); err != nil {
			return nil, err
		}
		c := cfg.Catalog.Clone()
		cfg.Catalog = &c
	}
	want := make(map[string]Policy, len(cfg.Policies))
	for name, p := range cfg.Policies {
		field := "Policies[" + name + "]"
		if err := checkName(field, name); err != nil {
			return nil, err
		}
		if p.ID != "" && p.ID != name {
			return nil, invalid(field+".ID", "is %q; leave it empty or equal to the name", p.ID)
		}
		p.ID = name
		if err := p.Validate(); err != nil {
			var ve *ValidationError
			if errors.As(err, &ve) {
				return nil, invalid(field+"."+ve.Field, "%s", ve.Problem)
			}
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		if p.ParamAudit.uses(ParamHMAC) && len(m.params.key) == 0 {
			return nil, invalid(field+".ParamAudit", "ParamHMAC needs Options.ParamHMACKey")
		}
		p.ApproverGroups = slices.Clone(p.ApproverGroups)
		p.RequesterGroups = slices.Clone(p.RequesterGroups)
		p.RequireBind = slices.Clone(p.RequireBind)
		p.BreakGlass = p.BreakGlass.clone()
		want[name] = p
	}
	for _, name := range cfg.SameScope {
		if _, ok := want[name]; !ok {
			return nil, invalid("SameScope", "%q names no policy of the config", name)
		}
	}
	// Two policies with one scope and condition, neither meant to.
	type key struct {
		scope     Scope
		condition string
	}
	seen := map[key]string{}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		p := want[name]
		k := key{p.Scope, strings.TrimSpace(p.Condition)}
		if other, ok := seen[k]; ok && !slices.Contains(cfg.SameScope, name) && !slices.Contains(cfg.SameScope, other) {
			return nil, fmt.Errorf("%w: policies %s and %s have the same scope (%s) and condition; name one in SameScope if that is intended", ErrExists, other, name, p.Scope)
		}
		seen[k] = name
	}
	return want, nil
}

// plan compares the desired policies and catalog with the snapshot and
// returns the plan and the write that carries it out.
func (m *Manager) plan(ctx context.Context, s *snapshot, cat *Catalog, catalogGiven bool, want map[string]Policy, actor string, now time.Time) (Plan, *Tx, error) {
	var plan Plan
	tx := &Tx{}
	nextIx := s.catalog
	if catalogGiven {
		nextIx = indexCatalog(cat)
		if d := catalogDiff(s.cat, cat); d["unchanged"] == "" {
			plan.Catalog = d
		}
	}
	meaning := meaningChange(s.cat, cat, s.catalog, nextIx)
	// Every desired policy must resolve under the catalog it will live
	// with, and keep at least one task.
	for _, id := range slices.Sorted(maps.Keys(want)) {
		p := want[id]
		if !nextIx.known(p.Scope) || p.Scope.Kind != KindTask && len(nextIx.tasks(p.Scope)) == 0 {
			return plan, nil, invalid("Policies["+id+"].Scope", "the catalog defines no tasks for %s", p.Scope)
		}
	}
	var cut []string
	for _, id := range slices.Sorted(maps.Keys(want)) {
		p := want[id]
		cur := s.policy(id)
		if cur == nil {
			if err := m.policyIDFree(ctx, id); err != nil {
				return plan, nil, err
			}
			p.Version, p.MinGrantVersion = 1, 1
			p.CreatedAt, p.UpdatedAt, p.CreatedBy, p.UpdatedBy = now, now, actor, actor
			tx.Policies = append(tx.Policies, p)
			tx.Events = append(tx.Events, policyEvent(EventPolicyCreated, &p, actor, now))
			plan.Policies = append(plan.Policies, PolicyChange{Action: PlanCreate, PolicyID: id})
			continue
		}
		changed := changedFields(&cur.Policy, &p)
		tasksChanged := catalogGiven && cur.Scope == p.Scope && cur.Condition == p.Condition && meaning(&cur.Policy)
		if tasksChanged {
			changed = append(changed, "catalog")
		}
		if len(changed) == 0 {
			continue
		}
		next := cur.Policy
		next.Name, next.Scope, next.Condition = p.Name, p.Scope, p.Condition
		next.Approval, next.ApproverGroups, next.RequesterGroups = p.Approval, p.ApproverGroups, p.RequesterGroups
		next.RequireBind, next.MaxUses = p.RequireBind, p.MaxUses
		next.RemindAfter, next.EscalateAfter, next.EscalationGroup = p.RemindAfter, p.EscalateAfter, p.EscalationGroup
		next.BreakGlass = p.BreakGlass.clone()
		next.DefaultDuration, next.MaxDuration, next.PendingTTL = p.DefaultDuration, p.MaxDuration, p.PendingTTL
		next.MaxStartDelay, next.MaxExtendedDuration = p.MaxStartDelay, p.MaxExtendedDuration
		next.RequestRule, next.AutoApproveRule, next.ParamAudit = p.RequestRule, p.AutoApproveRule, p.ParamAudit
		next.Version, next.UpdatedAt, next.UpdatedBy = cur.Version+1, now, actor
		pc := PolicyChange{Action: PlanUpdate, PolicyID: id, Changed: changed}
		if accessChanged(&cur.Policy, &next) || tasksChanged {
			next.MinGrantVersion, pc.CutsGrants = next.Version, true
			cut = append(cut, id)
		}
		e := policyEvent(EventPolicyUpdated, &next, actor, now)
		e.Detail["min_grant_version"] = fmt.Sprint(next.MinGrantVersion)
		e.Detail["changed"] = strings.Join(changed, ",")
		tx.Policies = append(tx.Policies, next)
		tx.Events = append(tx.Events, e)
		plan.Policies = append(plan.Policies, pc)
	}
	for _, id := range slices.Sorted(maps.Keys(maps.Collect(s.policies.all()))) {
		if _, ok := want[id]; ok {
			continue
		}
		next := s.policy(id).Policy
		next.Deleted, next.Version, next.UpdatedAt, next.UpdatedBy = true, next.Version+1, now, actor
		tx.Policies = append(tx.Policies, next)
		tx.Events = append(tx.Events, policyEvent(EventPolicyDeleted, &next, actor, now))
		plan.Policies = append(plan.Policies, PolicyChange{Action: PlanDelete, PolicyID: id, CutsGrants: true})
		cut = append(cut, id)
	}
	if len(cut) > 0 {
		active, err := m.activeGrants(ctx, s, cut, now)
		if err != nil {
			return plan, nil, err
		}
		for i := range plan.Policies {
			plan.Policies[i].ActiveGrants = active[plan.Policies[i].PolicyID]
		}
	}
	sortedChanges(plan.Policies)
	if plan.Catalog != nil {
		stored := cat.Clone()
		stored.Version, stored.Revision = s.cat.Version+1, 0
		tx.Catalog, tx.PolicyRevision = &stored, s.rev
		e := Event{Time: now, Type: EventCatalogSet, Actor: actor, Detail: maps.Clone(plan.Catalog)}
		if len(cut) > 0 {
			e.Detail["policies_cut"] = strings.Join(cut, ",")
		}
		tx.Events = append([]Event{e}, tx.Events...)
	}
	return plan, tx, nil
}

// changedFields lists the host-set fields of a that b changes, by their
// JSON names.
func changedFields(a, b *Policy) []string {
	var out []string
	for _, f := range []struct {
		name string
		same bool
	}{
		{"name", a.Name == b.Name},
		{"scope", a.Scope == b.Scope},
		{"condition", a.Condition == b.Condition},
		{"approval", a.Approval == b.Approval},
		{"approver_groups", slices.EqualFunc(a.ApproverGroups, b.ApproverGroups, func(x, y ApproverGroup) bool {
			return x.Group == y.Group && x.min() == y.min()
		})},
		{"requester_groups", slices.Equal(a.RequesterGroups, b.RequesterGroups)},
		{"require_bind", slices.Equal(a.RequireBind, b.RequireBind)},
		{"max_uses", a.MaxUses == b.MaxUses},
		{"remind_after", a.RemindAfter == b.RemindAfter},
		{"escalate_after", a.EscalateAfter == b.EscalateAfter},
		{"escalation_group", a.EscalationGroup == b.EscalationGroup},
		{"break_glass", a.BreakGlass == nil && b.BreakGlass == nil || a.BreakGlass != nil && b.BreakGlass != nil && *a.BreakGlass == *b.BreakGlass},
		{"default_duration", a.DefaultDuration == b.DefaultDuration},
		{"max_duration", a.MaxDuration == b.MaxDuration},
		{"pending_ttl", a.PendingTTL == b.PendingTTL},
		{"max_start_delay", a.MaxStartDelay == b.MaxStartDelay},
		{"max_extended_duration", a.MaxExtendedDuration == b.MaxExtendedDuration},
		{"request_rule", a.RequestRule == b.RequestRule},
		{"auto_approve_rule", a.AutoApproveRule == b.AutoApproveRule},
		{"param_audit", a.ParamAudit.Default == b.ParamAudit.Default && (len(a.ParamAudit.Params) == 0 && len(b.ParamAudit.Params) == 0 || reflect.DeepEqual(a.ParamAudit.Params, b.ParamAudit.Params))},
	} {
		if !f.same {
			out = append(out, f.name)
		}
	}
	return out
}

// activeGrants counts, by policy, the grants that satisfy Guard at now
// under the given live policies.
func (m *Manager) activeGrants(ctx context.Context, s *snapshot, policyIDs []string, now time.Time) (map[string]int, error) {
	rs, err := m.store.Requests(ctx, RequestFilter{PolicyIDs: policyIDs, States: []State{Approved}})
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for i := range rs {
		if g, p := rs[i].Grant(), s.policy(rs[i].PolicyID); p != nil && g.ActiveAt(now) && g.PolicyVersion >= p.MinGrantVersion {
			out[rs[i].PolicyID]++
		}
	}
	return out, nil
}

// compileAll compiles the live policies among ps, in parallel, and returns
// them by ID.
func (m *Manager) compileAll(ctx context.Context, ps []Policy) (map[string]*compiled, error) {
	built := make([]*compiled, len(ps))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i := range ps {
		if ps[i].Deleted {
			continue
		}
		g.Go(func() error {
			c, err := m.cache.compile(gctx, &ps[i])
			if err != nil {
				var re *RegoError
				if errors.As(err, &re) {
					named := *re // shared by every caller of the compilation
					named.Field = "Policies[" + ps[i].ID + "]." + re.Field
					return &named
				}
				return err
			}
			built[i] = c
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out := make(map[string]*compiled, len(ps))
	for i, c := range built {
		if c != nil {
			out[ps[i].ID] = c
		}
	}
	return out, nil
}

// sortedChanges orders a plan's changes for people: creates, updates,
// deletes, each by ID.
func sortedChanges(cs []PolicyChange) {
	rank := map[PlanAction]int{PlanCreate: 0, PlanUpdate: 1, PlanDelete: 2}
	sort.SliceStable(cs, func(i, j int) bool {
		if rank[cs[i].Action] != rank[cs[j].Action] {
			return rank[cs[i].Action] < rank[cs[j].Action]
		}
		return cs[i].PolicyID < cs[j].PolicyID
	})
}
