package pam

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits on what policies and requests may hold.
const (
	MaxNameLen   = 256      // task, role, group and policy names, IDs
	MaxReasonLen = 4096     // request reasons, comments
	MaxRegoLen   = 64 << 10 // each Rego field of a policy
	MaxGroups    = 32       // approver groups per policy
	MaxQuorum    = 32       // MinApprovals of one approver group
	MaxBind      = 16       // parameters a request binds, or a policy requires bound
	MaxGrantUses = 1 << 20  // runs one grant may allow (RequestInput.MaxUses, Policy.MaxUses)
	// MinNudgeInterval is the shortest Policy.RemindAfter and
	// EscalateAfter: no approver is notified more often than this.
	MinNudgeInterval = time.Minute
	maxDuration      = 366 * 24 * time.Hour
)

// Defaults applied to a policy's zero fields.
const (
	DefaultDuration   = 4 * time.Hour  // Purview's default for -DurationHours
	DefaultMaxWindow  = 24 * time.Hour // longest grant a policy allows unless set
	DefaultPendingTTL = 24 * time.Hour // Purview: pending requests expire after 24 h
	// DefaultMaxStartDelay is how far ahead a request may schedule its
	// window unless the policy says (RequestInput.Start).
	DefaultMaxStartDelay = 30 * 24 * time.Hour
)

// ScopeKind says what a Scope names.
type ScopeKind string

// Scope kinds: a single task, a role (a set of tasks) or a role group (a
// set of roles). Roles and role groups are defined by the Catalog.
const (
	KindTask      ScopeKind = "task"
	KindRole      ScopeKind = "role"
	KindRoleGroup ScopeKind = "role_group"
)

// Scope is what a policy guards and what a request asks for.
type Scope struct {
	Kind ScopeKind `json:"kind"`
	Name string    `json:"name"`
}

// TaskScope returns the scope of one task, e.g. "New-MoveRequest".
func TaskScope(task string) Scope { return Scope{Kind: KindTask, Name: task} }

// RoleScope returns the scope of a catalog role.
func RoleScope(role string) Scope { return Scope{Kind: KindRole, Name: role} }

// RoleGroupScope returns the scope of a catalog role group.
func RoleGroupScope(group string) Scope { return Scope{Kind: KindRoleGroup, Name: group} }

func (s Scope) String() string { return string(s.Kind) + ":" + s.Name }

// Validate checks the kind and the name.
func (s Scope) Validate() error {
	switch s.Kind {
	case KindTask, KindRole, KindRoleGroup:
	default:
		return invalid("Scope.Kind", "unknown scope kind %q", s.Kind)
	}
	return checkName("Scope.Name", s.Name)
}

// Approval says how a policy's requests get approved.
type Approval string

const (
	// Manual: approvers from the approver groups decide.
	Manual Approval = "manual"
	// Auto: requests are approved on submission (still recorded as a
	// decision, audited and time-bounded).
	Auto Approval = "auto"
)

// ApproverGroup is a directory group whose members may decide requests.
// MinApprovals distinct members must approve (0 means 1). With several
// groups on a policy, every group must reach its own minimum, and one
// person's approval counts toward one group only.
type ApproverGroup struct {
	Group        string `json:"group"`
	MinApprovals int    `json:"min_approvals,omitempty"`
}

func (g ApproverGroup) min() int {
	if g.MinApprovals <= 0 {
		return 1
	}
	return g.MinApprovals
}

// Policy guards a scope. Operations it covers run only inside a grant
// approved under it.
//
// Changing Scope, Condition, Approval or ApproverGroups raises
// MinGrantVersion to the new Version: grants approved under older versions
// no longer satisfy Guard and must be requested again. Other changes
// (durations, rules, requester groups) leave existing grants valid.
type Policy struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`

	Scope Scope `json:"scope"`

	// Condition narrows the scope with Rego over the operation. It is one
	// or more boolean expressions, one per line (or separated by ";"),
	// reading input.op.task, input.op.params, input.actor and input.now
	// (Unix nanoseconds), and data.pam (the catalog). The policy covers an
	// operation when every expression is true and does not when one is
	// false. Anything else counts as covered (fail closed): an error, a
	// non-boolean, or an undefined result because an input it reads is
	// missing. Each expression is evaluated as a value (x := expr), so
	// `input.op.params.mailbox in data.pam.vip` is false, not undefined,
	// for a mailbox outside the list. Empty: every operation of the scope.
	Condition string `json:"condition,omitempty"`

	Approval       Approval        `json:"approval"`
	ApproverGroups []ApproverGroup `json:"approver_groups,omitempty"`
	// RequesterGroups, when set, are the directory groups whose members
	// may request under the policy (Entra's eligible assignments): anyone
	// else's Submit is ErrForbidden, and Check and Guard tell them that
	// they cannot request rather than what to request. Membership is read
	// at submission; a directory error refuses the submission. Empty:
	// anyone may request. Changing it leaves existing grants valid.
	RequesterGroups []string `json:"requester_groups,omitempty"`
	// RequireBind names operation parameters that every request under
	// the policy must bind (RequestInput.Bind), so that a grant never
	// covers more than the one target it names: ["identity"] for
	// New-MoveRequest, say. Checked at submission (with the bound values
	// against the catalog's declarations); changing it leaves existing
	// grants valid.
	RequireBind []string `json:"require_bind,omitempty"`
	// MaxUses caps the runs one grant under the policy allows: a request
	// may ask for fewer (RequestInput.MaxUses), and one that names none
	// gets MaxUses, so 1 makes every grant good for one run. 0: no cap.
	// Checked at submission; changing it leaves existing grants valid.
	MaxUses int `json:"max_uses,omitempty"`

	// RemindAfter, when set, notifies a pending request's approvers who
	// have not decided again once it has waited this long, and again
	// every RemindAfter until it is decided or expires. At least
	// MinNudgeInterval and less than the pending TTL.
	RemindAfter time.Duration `json:"remind_after,omitempty"`
	// EscalateAfter and EscalationGroup, set together, escalate a
	// request still pending after EscalateAfter: the group's members are
	// notified and from then one of them may decide it alone (an
	// approval approves it; a deny denies it), never its requester.
	// EscalateAfter is at least MinNudgeInterval and less than the
	// pending TTL.
	EscalateAfter   time.Duration `json:"escalate_after,omitempty"`
	EscalationGroup string        `json:"escalation_group,omitempty"`
	// BreakGlass, when set, lets its Group act under the policy at once
	// in an emergency, without approval, under a short grant that the
	// approver groups review afterwards (Manager.BreakGlass). Changing it
	// leaves existing grants valid.
	BreakGlass *BreakGlass `json:"break_glass,omitempty"`

	DefaultDuration time.Duration `json:"default_duration,omitempty"` // 0: DefaultDuration, or MaxDuration when that is shorter
	MaxDuration     time.Duration `json:"max_duration,omitempty"`     // 0: DefaultMaxWindow
	PendingTTL      time.Duration `json:"pending_ttl,omitempty"`      // 0: DefaultPendingTTL
	// MaxStartDelay is how far ahead of its submission a request may
	// schedule its window to open (RequestInput.Start); 0:
	// DefaultMaxStartDelay.
	MaxStartDelay time.Duration `json:"max_start_delay,omitempty"`
	// MaxExtendedDuration caps a grant's whole window, from its opening
	// to its end, extensions included (Manager.Extend); 0: MaxDuration,
	// so that extensions fill the window up to MaxDuration and no
	// further. Set above MaxDuration, it allows renewals past it up to
	// the cap; it may not be below MaxDuration.
	MaxExtendedDuration time.Duration `json:"max_extended_duration,omitempty"`

	// RequestRule is Rego (rules without a package line) that may reject a
	// submission by defining `deny` as a set of messages, e.g.
	//
	//	deny contains "reason must name a ticket like INC-1234" if {
	//		not regex.match(`INC-[0-9]+`, input.request.reason)
	//	}
	//
	// Input: input.request (scope, reason, ticket, duration in
	// nanoseconds, requester), input.actor and input.now. An evaluation
	// error rejects the submission.
	RequestRule string `json:"request_rule,omitempty"`

	// AutoApproveRule is Rego (rules without a package line) defining
	// `approve`; when it is true for a submission the request is approved
	// at once, with the same input as RequestRule. Undefined, false or an
	// error leave the request to the approvers.
	AutoApproveRule string `json:"auto_approve_rule,omitempty"`
	// ParamAudit says how the parameters of the operations this policy
	// covers are recorded in the audit trail; what it leaves open comes
	// from Options.ParamAudit. When several policies cover an operation,
	// each parameter gets the strictest of their modes.
	ParamAudit ParamAudit `json:"param_audit,omitzero"`

	// Set by the engine.
	Version         int64     `json:"version"`
	MinGrantVersion int64     `json:"min_grant_version"`
	CreatedAt       time.Time `json:"created_at"`
	CreatedBy       string    `json:"created_by"`
	UpdatedAt       time.Time `json:"updated_at"`
	UpdatedBy       string    `json:"updated_by"`
	Deleted         bool      `json:"deleted,omitempty"`

	// Revision is set by the store on every write: a store-wide counter of
	// policy changes, which tells replicas what they have not seen yet.
	Revision int64 `json:"revision"`
}

// validateNudges checks RemindAfter, EscalateAfter and EscalationGroup.
func (p *Policy) validateNudges() error {
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"RemindAfter", p.RemindAfter}, {"EscalateAfter", p.EscalateAfter}} {
		switch {
		case d.v == 0:
		case d.v < MinNudgeInterval:
			return invalid(d.field, "must be 0 (none) or at least %v", MinNudgeInterval)
		case d.v >= p.pendingTTL():
			return invalid(d.field, "%v is not less than the pending TTL %v: it would never come", d.v, p.pendingTTL())
		}
	}
	switch {
	case (p.EscalateAfter == 0) != (p.EscalationGroup == ""):
		return invalid("EscalationGroup", "EscalateAfter and EscalationGroup are set together")
	case p.EscalationGroup != "":
		return checkName("EscalationGroup", p.EscalationGroup)
	}
	return nil
}

// Validate checks the fields a host sets. Zero durations mean the
// defaults.
func (p *Policy) Validate() error {
	if p.ID != "" {
		if err := checkName("ID", p.ID); err != nil {
			return err
		}
	}
	if p.Name != "" {
		if err := checkName("Name", p.Name); err != nil {
			return err
		}
	}
	if err := p.Scope.Validate(); err != nil {
		return err
	}
	switch p.Approval {
	case Manual, Auto:
	default:
		return invalid("Approval", "must be %q or %q, got %q", Manual, Auto, p.Approval)
	}
	if p.Approval == Manual && len(p.ApproverGroups) == 0 {
		return invalid("ApproverGroups", "a manual policy needs at least one approver group")
	}
	if len(p.ApproverGroups) > MaxGroups {
		return invalid("ApproverGroups", "more than %d groups", MaxGroups)
	}
	seen := make(map[string]bool, len(p.ApproverGroups))
	for i, g := range p.ApproverGroups {
		field := fmt.Sprintf("ApproverGroups[%d]", i)
		if err := checkName(field+".Group", g.Group); err != nil {
			return err
		}
		if seen[g.Group] {
			return invalid(field+".Group", "group %q listed twice", g.Group)
		}
		seen[g.Group] = true
		if g.MinApprovals < 0 || g.MinApprovals > MaxQuorum {
			return invalid(field+".MinApprovals", "must be between 0 and %d", MaxQuorum)
		}
	}
	if len(p.RequesterGroups) > MaxGroups {
		return invalid("RequesterGroups", "more than %d groups", MaxGroups)
	}
	for i, g := range p.RequesterGroups {
		field := fmt.Sprintf("RequesterGroups[%d]", i)
		if err := checkName(field, g); err != nil {
			return err
		}
		if slices.Contains(p.RequesterGroups[:i], g) {
			return invalid(field, "group %q listed twice", g)
		}
	}
	if len(p.RequireBind) > MaxBind {
		return invalid("RequireBind", "more than %d parameters", MaxBind)
	}
	for i, name := range p.RequireBind {
		field := fmt.Sprintf("RequireBind[%d]", i)
		if err := checkName(field, name); err != nil {
			return err
		}
		if slices.Contains(p.RequireBind[:i], name) {
			return invalid(field, "parameter %q listed twice", name)
		}
	}
	if p.MaxUses < 0 || p.MaxUses > MaxGrantUses {
		return invalid("MaxUses", "must be between 0 (no cap) and %d", MaxGrantUses)
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"DefaultDuration", p.DefaultDuration}, {"MaxDuration", p.MaxDuration}, {"PendingTTL", p.PendingTTL},
		{"MaxStartDelay", p.MaxStartDelay}, {"MaxExtendedDuration", p.MaxExtendedDuration}} {
		if d.v < 0 || d.v > maxDuration {
			return invalid(d.field, "must be between 0 (default) and %v", maxDuration)
		}
	}
	if err := p.validateNudges(); err != nil {
		return err
	}
	if p.BreakGlass != nil {
		if err := p.BreakGlass.validate(p); err != nil {
			return err
		}
	}
	if p.defaultDuration() > p.maxDuration() {
		return invalid("DefaultDuration", "%v exceeds MaxDuration %v", p.defaultDuration(), p.maxDuration())
	}
	if p.MaxExtendedDuration != 0 && p.MaxExtendedDuration < p.maxDuration() {
		return invalid("MaxExtendedDuration", "%v is below MaxDuration %v", p.MaxExtendedDuration, p.maxDuration())
	}
	for _, r := range []struct{ field, src string }{
		{"Condition", p.Condition}, {"RequestRule", p.RequestRule}, {"AutoApproveRule", p.AutoApproveRule},
	} {
		if err := checkText(r.field, r.src, MaxRegoLen); err != nil {
			return err
		}
	}
	return p.ParamAudit.Validate("ParamAudit")
}

// defaultDuration is the window of a request that names none. Unset, it
// is DefaultDuration cut to MaxDuration: a policy that sets only a
// shorter maximum is valid, and its requests get the maximum.
func (p *Policy) defaultDuration() time.Duration {
	if p.DefaultDuration == 0 {
		return min(DefaultDuration, p.maxDuration())
	}
	return p.DefaultDuration
}

func (p *Policy) maxDuration() time.Duration {
	if p.MaxDuration == 0 {
		return DefaultMaxWindow
	}
	return p.MaxDuration
}

func (p *Policy) maxStartDelay() time.Duration {
	if p.MaxStartDelay == 0 {
		return DefaultMaxStartDelay
	}
	return p.MaxStartDelay
}

func (p *Policy) maxExtendedDuration() time.Duration {
	if p.MaxExtendedDuration == 0 {
		return p.maxDuration()
	}
	return p.MaxExtendedDuration
}

func (p *Policy) pendingTTL() time.Duration {
	if p.PendingTTL == 0 {
		return DefaultPendingTTL
	}
	return p.PendingTTL
}

// accessChanged reports whether b differs from a in what decides who may
// do what: scope, condition, approval type or approvers.
func accessChanged(a, b *Policy) bool {
	if a.Scope != b.Scope || a.Condition != b.Condition || a.Approval != b.Approval || len(a.ApproverGroups) != len(b.ApproverGroups) {
		return true
	}
	for i := range a.ApproverGroups {
		if a.ApproverGroups[i].Group != b.ApproverGroups[i].Group || a.ApproverGroups[i].min() != b.ApproverGroups[i].min() {
			return true
		}
	}
	return false
}

// checkName validates identifiers: non-empty, at most MaxNameLen bytes,
// valid UTF-8, no control characters.
func checkName(field, s string) error {
	switch {
	case s == "":
		return invalid(field, "must not be empty")
	case len(s) > MaxNameLen:
		return invalid(field, "longer than %d bytes", MaxNameLen)
	case !utf8.ValidString(s):
		return invalid(field, "not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return invalid(field, "contains control character %U", r)
		}
	}
	return nil
}

// cleanText makes text from outside the engine's validation (error
// messages of fns, notifiers and sinks) safe for every store: valid UTF-8,
// no NUL, at most MaxReasonLen bytes.
func cleanText(s string) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
	if len(s) <= MaxReasonLen {
		return s
	}
	cut := MaxReasonLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// checkText validates free text: at most max bytes, valid UTF-8, no NUL or
// other control characters but tab and newline.
func checkText(field, s string, max int) error {
	switch {
	case len(s) > max:
		return invalid(field, "longer than %d bytes", max)
	case !utf8.ValidString(s):
		return invalid(field, "not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) && r != '\n' && r != '\t' && r != '\r' {
			return invalid(field, "contains control character %U", r)
		}
	}
	return nil
}

// CreatePolicy stores a new policy. Only members of Options.AdminGroup may.
// Rego errors come back as *RegoError with line and column. The policy
// covers operations from the next Guard on, in this Manager and in every
// other sharing the store. An ID may be given; otherwise one is made.
func (m *Manager) CreatePolicy(ctx context.Context, p Policy) (Policy, error) {
	actor, err := m.requireAdmin(ctx)
	if err != nil {
		return Policy{}, err
	}
	if err := m.validatePolicy(ctx, &p); err != nil {
		return Policy{}, err
	}
	if p.ID == "" {
		p.ID = m.newID("pol")
	} else if err := m.policyIDFree(ctx, p.ID); err != nil {
		return Policy{}, err
	}
	now, err := m.now(ctx)
	if err != nil {
		return Policy{}, err
	}
	p.ApproverGroups = append([]ApproverGroup(nil), p.ApproverGroups...)
	p.RequesterGroups = slices.Clone(p.RequesterGroups)
	p.BreakGlass = p.BreakGlass.clone()
	p.Version, p.MinGrantVersion, p.Revision, p.Deleted = 1, 1, 0, false
	p.CreatedAt, p.UpdatedAt, p.CreatedBy, p.UpdatedBy = now, now, actor, actor
	c, err := m.cache.compile(ctx, &p)
	if err != nil {
		return Policy{}, err
	}
	tx := &Tx{Policies: []Policy{p}, Events: []Event{policyEvent(EventPolicyCreated, &p, actor, now)}}
	if err := m.commit(ctx, tx); err != nil {
		if errors.Is(err, ErrConflict) {
			// Created by another writer since policyIDFree looked.
			if ferr := m.policyIDFree(ctx, p.ID); ferr != nil {
				return Policy{}, ferr
			}
		}
		return Policy{}, err
	}
	return m.policyWritten(ctx, tx, c), nil
}

// UpdatePolicy replaces the host-set fields of policy p.ID. p.Version must
// be the version the caller read, or ErrConflict. Changing the scope,
// condition, approval type or approver groups invalidates grants approved
// under earlier versions (see Policy).
func (m *Manager) UpdatePolicy(ctx context.Context, p Policy) (Policy, error) {
	actor, err := m.requireAdmin(ctx)
	if err != nil {
		return Policy{}, err
	}
	if err := checkName("ID", p.ID); err != nil {
		return Policy{}, err
	}
	if err := m.validatePolicy(ctx, &p); err != nil {
		return Policy{}, err
	}
	cur, err := m.store.Policy(ctx, p.ID)
	if err != nil {
		return Policy{}, err
	}
	if cur.Deleted {
		return Policy{}, fmt.Errorf("%w: policy %s was deleted", ErrNotFound, p.ID)
	}
	if p.Version != cur.Version {
		return Policy{}, fmt.Errorf("%w: policy %s is at version %d, not %d", ErrConflict, p.ID, cur.Version, p.Version)
	}
	now, err := m.now(ctx)
	if err != nil {
		return Policy{}, err
	}
	next := cur
	next.Name, next.Scope, next.Condition = p.Name, p.Scope, p.Condition
	next.Approval, next.ApproverGroups = p.Approval, append([]ApproverGroup(nil), p.ApproverGroups...)
	next.RequesterGroups = slices.Clone(p.RequesterGroups)
	next.RequireBind, next.MaxUses = slices.Clone(p.RequireBind), p.MaxUses
	next.RemindAfter, next.EscalateAfter, next.EscalationGroup = p.RemindAfter, p.EscalateAfter, p.EscalationGroup
	next.BreakGlass = p.BreakGlass.clone()
	next.DefaultDuration, next.MaxDuration, next.PendingTTL = p.DefaultDuration, p.MaxDuration, p.PendingTTL
	next.MaxStartDelay, next.MaxExtendedDuration = p.MaxStartDelay, p.MaxExtendedDuration
	next.RequestRule, next.AutoApproveRule, next.ParamAudit = p.RequestRule, p.AutoApproveRule, p.ParamAudit
	next.Version, next.UpdatedAt, next.UpdatedBy = cur.Version+1, now, actor
	if accessChanged(&cur, &next) {
		next.MinGrantVersion = next.Version
	}
	c, err := m.cache.compile(ctx, &next)
	if err != nil {
		return Policy{}, err
	}
	e := policyEvent(EventPolicyUpdated, &next, actor, now)
	e.Detail["min_grant_version"] = fmt.Sprint(next.MinGrantVersion)
	tx := &Tx{Policies: []Policy{next}, Events: []Event{e}}
	if err := m.commit(ctx, tx); err != nil {
		return Policy{}, err
	}
	return m.policyWritten(ctx, tx, c), nil
}

// policyIDFree returns ErrExists when a policy, live or deleted, has id.
func (m *Manager) policyIDFree(ctx context.Context, id string) error {
	cur, err := m.store.Policy(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil
	case err != nil:
		return err
	case cur.Deleted:
		return fmt.Errorf("%w: policy %s was deleted, and IDs are not reused", ErrExists, id)
	}
	return fmt.Errorf("%w: policy %s", ErrExists, id)
}

// validatePolicy checks p on its own and against the catalog.
func (m *Manager) validatePolicy(ctx context.Context, p *Policy) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if p.ParamAudit.uses(ParamHMAC) && len(m.params.key) == 0 {
		return invalid("ParamAudit", "ParamHMAC needs Options.ParamHMACKey")
	}
	s, err := m.cache.current(ctx)
	if err != nil {
		return err
	}
	if !s.catalog.known(p.Scope) {
		return invalid("Scope.Name", "the catalog has no %s %q", p.Scope.Kind, p.Scope.Name)
	}
	return nil
}

// DeletePolicy removes a policy. Its tasks are no longer covered by it;
// its pending requests can no longer be approved.
func (m *Manager) DeletePolicy(ctx context.Context, id string) error {
	actor, err := m.requireAdmin(ctx)
	if err != nil {
		return err
	}
	if err := checkName("ID", id); err != nil {
		return err
	}
	cur, err := m.store.Policy(ctx, id)
	if err != nil {
		return err
	}
	if cur.Deleted {
		return fmt.Errorf("%w: policy %s was deleted", ErrNotFound, id)
	}
	now, err := m.now(ctx)
	if err != nil {
		return err
	}
	next := cur
	next.Deleted, next.Version, next.UpdatedAt, next.UpdatedBy = true, cur.Version+1, now, actor
	tx := &Tx{Policies: []Policy{next}, Events: []Event{policyEvent(EventPolicyDeleted, &next, actor, now)}}
	if err := m.commit(ctx, tx); err != nil {
		return err
	}
	m.policyWritten(ctx, tx, &compiled{Policy: next})
	return nil
}

func policyEvent(t EventType, p *Policy, actor string, now time.Time) Event {
	return Event{Time: now, Type: t, Actor: actor, PolicyID: p.ID, Task: scopeTask(p.Scope), Detail: map[string]string{
		"version": fmt.Sprint(p.Version), "scope": p.Scope.String(), "approval": string(p.Approval),
	}}
}

// policyWritten makes a committed policy write visible to Guard before
// the call that wrote it returns, and publishes its events.
func (m *Manager) policyWritten(ctx context.Context, tx *Tx, c *compiled) Policy {
	p := tx.Policies[0]
	if err := m.cache.written(ctx, &p, c); err != nil {
		// The write is committed; the next call's freshness check loads it.
		m.onError(fmt.Errorf("pam: reload policies after writing %s: %w", p.ID, err))
	}
	m.published(tx.Events)
	return p
}

// Policy returns the live policy with id. Anyone with an actor may read
// policies (they say what to request); without one it is ErrNoActor.
func (m *Manager) Policy(ctx context.Context, id string) (Policy, error) {
	if _, err := actorOf(ctx); err != nil {
		return Policy{}, err
	}
	s, err := m.cache.current(ctx)
	if err != nil {
		return Policy{}, err
	}
	c := s.policy(id)
	if c == nil {
		return Policy{}, fmt.Errorf("%w: policy %q", ErrNotFound, id)
	}
	return c.Policy, nil
}

// Policies returns every live policy, ordered by ID, to anyone with an
// actor (ErrNoActor otherwise).
func (m *Manager) Policies(ctx context.Context) ([]Policy, error) {
	if _, err := actorOf(ctx); err != nil {
		return nil, err
	}
	s, err := m.cache.current(ctx)
	if err != nil {
		return nil, err
	}
	var out []Policy
	for _, c := range s.policies.all() {
		out = append(out, c.Policy)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
