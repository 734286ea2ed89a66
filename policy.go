package pam

import (
	"fmt"
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
	maxDuration  = 366 * 24 * time.Hour
)

// Defaults applied to a policy's zero fields.
const (
	DefaultDuration   = 4 * time.Hour  // Purview's default for -DurationHours
	DefaultMaxWindow  = 24 * time.Hour // longest grant a policy allows unless set
	DefaultPendingTTL = 24 * time.Hour // Purview: pending requests expire after 24 h
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
// (durations, rules) leave existing grants valid.
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

	DefaultDuration time.Duration `json:"default_duration,omitempty"` // 0: DefaultDuration
	MaxDuration     time.Duration `json:"max_duration,omitempty"`     // 0: DefaultMaxWindow
	PendingTTL      time.Duration `json:"pending_ttl,omitempty"`      // 0: DefaultPendingTTL

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
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"DefaultDuration", p.DefaultDuration}, {"MaxDuration", p.MaxDuration}, {"PendingTTL", p.PendingTTL}} {
		if d.v < 0 || d.v > maxDuration {
			return invalid(d.field, "must be between 0 (default) and %v", maxDuration)
		}
	}
	if p.defaultDuration() > p.maxDuration() {
		return invalid("DefaultDuration", "%v exceeds MaxDuration %v", p.defaultDuration(), p.maxDuration())
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

func (p *Policy) defaultDuration() time.Duration {
	if p.DefaultDuration == 0 {
		return DefaultDuration
	}
	return p.DefaultDuration
}

func (p *Policy) maxDuration() time.Duration {
	if p.MaxDuration == 0 {
		return DefaultMaxWindow
	}
	return p.MaxDuration
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

// Catalog defines the host's roles and role groups. Conditions and rules
// see it under data.pam: data.pam.roles, data.pam.role_groups, and every
// key of Data (data.pam.vip_mailboxes, say).
type Catalog struct {
	Roles      map[string][]string `json:"roles,omitempty"`       // role → tasks
	RoleGroups map[string][]string `json:"role_groups,omitempty"` // role group → roles
	Data       map[string]any      `json:"data,omitempty"`        // extra data for Rego
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
	for k := range c.Data {
		if k == "roles" || k == "role_groups" {
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
}

func indexCatalog(c *Catalog) *catalogIndex {
	ix := &catalogIndex{
		roleTasks:  make(map[string]map[string]bool, len(c.Roles)),
		groupRoles: make(map[string]map[string]bool, len(c.RoleGroups)),
		groupTasks: make(map[string]map[string]bool, len(c.RoleGroups)),
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
