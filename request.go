package pam

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
)

// State is where a request is in its lifecycle.
//
//	          submit
//	            │
//	            ▼
//	 ┌────── Pending ───────┬──────────┬──────────┐
//	 │ quorum reached       │ any deny │ requester│ pending TTL
//	 │ (or Auto / rule)     │          │ cancels  │ passes
//	 ▼                      ▼          ▼          ▼
//	Approved ──revoke──▶ Revoked     Denied    Canceled   Expired
//	 │
//	 ├── holder ends it ──▶ Relinquished
//	 │
//	 └── window ends ──▶ Expired
//
// Denied, Canceled, Revoked, Relinquished and Expired are terminal: they
// never change.
type State string

const (
	Pending  State = "pending"
	Approved State = "approved"
	Denied   State = "denied"
	Canceled State = "canceled"
	Revoked  State = "revoked"
	Expired  State = "expired"
	// Relinquished: the holder ended their own grant early (Relinquish).
	// Revoked says someone ended it, or the requester through Revoke.
	Relinquished State = "relinquished"
)

// Terminal reports whether s never changes again.
func (s State) Terminal() bool {
	return s == Denied || s == Canceled || s == Revoked || s == Relinquished || s == Expired
}

// RequestInput is what a user submits to ask for access.
type RequestInput struct {
	// Scope asks for a task, a role or a role group. It may be left empty
	// when PolicyID is set; the policy's scope is then used.
	Scope Scope `json:"scope,omitzero"`
	// PolicyID binds the request to one policy. Needed only when several
	// policies cover Scope (Submit returns an *AmbiguousError).
	PolicyID string `json:"policy_id,omitempty"`
	// Reason is required, at most MaxReasonLen bytes.
	Reason string `json:"reason"`
	// Duration of the access window once approved; 0 means the policy's
	// DefaultDuration. Longer than the policy's MaxDuration is rejected.
	Duration time.Duration `json:"duration,omitempty"`
	// Ticket optionally names a change or incident ticket.
	Ticket string `json:"ticket,omitempty"`
	// Bind binds the grant to operations whose parameters equal these
	// values (strings, numbers or booleans): a grant for New-MoveRequest
	// with Bind {"identity": "ceo@contoso.com"} lets its holder move that
	// mailbox and no other. Names are identifiers (letters, digits, _, -
	// and .); numbers are those a float64 holds exactly within ±2^53.
	// Over a task the catalog declares, each name must be a declared
	// string, number or boolean parameter of the value's type; over a
	// scope of several tasks, every task must declare it so. A policy
	// may require some (RequireBind).
	Bind map[string]any `json:"bind,omitempty"`
	// MaxUses limits the grant to that many runs of Guard, each taken
	// when its start is stored. 0: the policy's MaxUses, or no limit.
	MaxUses int `json:"max_uses,omitempty"`
	// Start, when set, schedules the window: once approved, it opens at
	// Start, or at the approval when that comes later, and lasts
	// Duration. A Start at or before the submission is taken as now (no
	// schedule); one further ahead than the policy's MaxStartDelay is
	// refused (ErrInvalid, field Start). The pending TTL still counts
	// from the submission.
	Start time.Time `json:"start,omitzero"`
}

// Validate checks the fields on their own; Submit also checks them against
// the policy.
func (n *RequestInput) Validate() error {
	if n.Scope != (Scope{}) || n.PolicyID == "" {
		if err := n.Scope.Validate(); err != nil {
			return err
		}
	}
	if n.PolicyID != "" {
		if err := checkName("PolicyID", n.PolicyID); err != nil {
			return err
		}
	}
	if n.Reason == "" {
		return invalid("Reason", "must not be empty")
	}
	if err := checkText("Reason", n.Reason, MaxReasonLen); err != nil {
		return err
	}
	if n.Duration < 0 {
		return invalid("Duration", "must not be negative")
	}
	if n.Ticket != "" {
		if err := checkName("Ticket", n.Ticket); err != nil {
			return err
		}
	}
	if _, err := normalizeBind(n.Bind); err != nil {
		return err
	}
	if n.MaxUses < 0 || n.MaxUses > MaxGrantUses {
		return invalid("MaxUses", "must be between 0 and %d", MaxGrantUses)
	}
	return nil
}

// Request is a user's ask for time-bounded access, bound to one policy.
// Once approved, it is the grant that Guard looks for.
type Request struct {
	ID        string        `json:"id"`
	Requester string        `json:"requester"` // canonical identity
	Scope     Scope         `json:"scope"`
	PolicyID  string        `json:"policy_id"`
	Reason    string        `json:"reason"`
	Ticket    string        `json:"ticket,omitempty"`
	Duration  time.Duration `json:"duration"`
	// Bind holds the operation parameters the grant is bound to
	// (RequestInput.Bind), numbers as float64.
	Bind map[string]any `json:"bind,omitempty"`
	// MaxUses is how many runs the grant allows (0: no limit); Uses how
	// many have started under it.
	MaxUses int `json:"max_uses,omitempty"`
	Uses    int `json:"uses,omitempty"`
	// Start is when the requester asked the window to open, the zero
	// time for as soon as approved (see RequestInput.Start).
	Start time.Time `json:"start,omitzero"`

	// State is the state as of the last read. Reads through the Manager
	// compute it from the clock, so a request past its deadline reads as
	// Expired before the expiry is recorded.
	State     State      `json:"state"`
	Decisions []Decision `json:"decisions,omitempty"`

	// PolicyVersion is the policy's version when the request was
	// submitted, and when approved, the version it was approved under.
	PolicyVersion int64 `json:"policy_version"`

	CreatedAt    time.Time `json:"created_at"`
	PendingUntil time.Time `json:"pending_until"` // a pending request expires here
	// RemindAt is when a pending request's approvers are next reminded
	// (Policy.RemindAfter); EscalateAt when it escalates
	// (Policy.EscalateAfter), EscalatedAt when it did. Zero: none.
	RemindAt    time.Time `json:"remind_at,omitzero"`
	EscalateAt  time.Time `json:"escalate_at,omitzero"`
	EscalatedAt time.Time `json:"escalated_at,omitzero"`
	// ApprovedAt is when the window opens: the approval, or Start when
	// that is later (the grant is then scheduled: approved, not active
	// before ApprovedAt). The approval's own time is its decisions'.
	ApprovedAt time.Time `json:"approved_at,omitzero"`
	// ExpiresAt is when the window closes: ApprovedAt plus Duration,
	// plus every extension granted.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	ClosedAt  time.Time `json:"closed_at,omitzero"` // when it became terminal
	ClosedBy  string    `json:"closed_by,omitempty"`

	// Extension is the latest extension of the window its holder asked
	// for (Manager.Extend), pending or decided; earlier ones are in the
	// audit trail.
	Extension *Extension `json:"extension,omitempty"`
	// BreakGlass marks a break-glass request (Manager.BreakGlass) and
	// holds its post-hoc review; nil for every other request.
	BreakGlass *BreakGlassReview `json:"break_glass,omitempty"`

	// Version counts the request's writes; stores compare it.
	Version int64 `json:"version"`
}

// Deciders returns the identities that recorded a decision on r as it
// stands: the approvers and deniers of the request and of its latest
// extension (automatic decisions included, as "auto:NAME"), its revoker,
// and its break-glass reviewer; each once, in that order. Decisions on
// earlier extensions are in the audit trail only.
func (r *Request) Deciders() []string {
	var out []string
	add := func(who string) {
		if who != "" && !contains(out, who) {
			out = append(out, who)
		}
	}
	for _, d := range r.Decisions {
		add(d.Approver)
	}
	if r.Extension != nil {
		for _, d := range r.Extension.Decisions {
			add(d.Approver)
		}
	}
	if r.State == Revoked {
		add(r.ClosedBy)
	}
	if r.BreakGlass != nil {
		add(r.BreakGlass.By)
	}
	return out
}

// searchable returns the fields RequestFilter.Search looks in.
func (r *Request) searchable() []string {
	return []string{r.Requester, r.Ticket, r.PolicyID, r.Scope.Name, r.ID}
}

// SearchText returns the text a store matches RequestFilter.Search
// against, for stores that keep it beside the request: the fields
// Search looks in, lower-cased, each between newlines. Search holds no
// newline, so a match never spans two fields.
func (r *Request) SearchText() string {
	return "\n" + strings.ToLower(strings.Join(r.searchable(), "\n")) + "\n"
}

// DecidersText returns Deciders between newlines, for stores that keep
// it beside the request: DecidedBy matches where "\n"+DecidedBy+"\n"
// occurs. Canonical identities hold no newline.
func (r *Request) DecidersText() string {
	d := r.Deciders()
	if len(d) == 0 {
		return ""
	}
	return "\n" + strings.Join(d, "\n") + "\n"
}

// StateAt returns the state of r at now: a pending request whose
// PendingUntil has come, or an approved one whose ExpiresAt has come, is
// Expired, whether or not the expiry has been recorded yet.
func (r *Request) StateAt(now time.Time) State {
	switch {
	case r.State == Pending && !now.Before(r.PendingUntil):
		return Expired
	case r.State == Approved && !now.Before(r.ExpiresAt):
		return Expired
	}
	return r.State
}

func (r Request) clone() Request {
	r.Decisions = append([]Decision(nil), r.Decisions...)
	r.Bind = maps.Clone(r.Bind)
	if r.Extension != nil {
		x := *r.Extension
		x.Decisions = append([]Decision(nil), x.Decisions...)
		r.Extension = &x
	}
	if r.BreakGlass != nil {
		v := *r.BreakGlass
		r.BreakGlass = &v
	}
	return r
}

// Scheduled reports whether r is approved and its window opens after
// now.
func (r *Request) Scheduled(now time.Time) bool {
	return r.StateAt(now) == Approved && now.Before(r.ApprovedAt)
}

// ExtensionPending reports whether r is an active grant whose holder
// asked for an extension not decided yet: approvers decide it with
// Approve and Deny, as they decide requests.
func (r *Request) ExtensionPending(now time.Time) bool {
	return r.StateAt(now) == Approved && r.extensionPending()
}

// extensionPending: r's recorded state is Approved and its extension
// waits for a decision (whether the window is still open is StateAt's).
func (r *Request) extensionPending() bool {
	return r.State == Approved && r.Extension != nil && r.Extension.State == Pending
}

// pendingDecisions are the decisions on what is pending on r: its
// extension's when one is, otherwise the request's own.
func (r *Request) pendingDecisions() []Decision {
	if r.extensionPending() {
		return r.Extension.Decisions
	}
	return r.Decisions
}

// Submit asks for access on behalf of the context's actor. The request is
// bound to the policy that covers its scope (ErrNoPolicy when none does,
// ErrAmbiguous when several do). Under a policy with RequesterGroups only
// their members may submit (ErrForbidden, naming the groups; a directory
// error is returned as it is, and nothing is written). The policy's request rule may reject it
// (ErrRejected); Auto policies, the policy's auto-approval rule and the
// configured Approvers may settle it at once. The access window opens
// when the request is approved, not when it is submitted, or at
// n.Start when that is later (a start beyond the policy's MaxStartDelay
// is ErrInvalid).
func (m *Manager) Submit(ctx context.Context, n RequestInput) (Request, error) {
	ctx, span := m.tel.start(ctx, "pam.request.submit")
	r, err := m.submit(ctx, n)
	if err == nil && span.IsRecording() {
		span.SetAttributes(attrRequest.String(r.ID), attrState.String(string(r.State)))
	}
	end(span, err)
	return r, err
}

func (m *Manager) submit(ctx context.Context, n RequestInput) (Request, error) {
	actor, s, p, err := m.input(ctx, &n)
	if err != nil {
		return Request{}, err
	}
	eligible, err := m.eligible(ctx, &p.Policy, actor)
	if err != nil {
		return Request{}, err // fail closed: no submission the directory cannot vouch for
	}
	if err := mayRequest(&p.Policy, facts{Actor: actor, Eligible: eligible}); err != nil {
		return Request{}, err
	}
	// Fail closed: a policy that does not compile here, or whose scope
	// the catalog cannot resolve, accepts no submissions.
	if err := s.usable(p); err != nil {
		return Request{}, err
	}
	bind, uses, err := s.bounds(&p.Policy, &n)
	if err != nil {
		return Request{}, err
	}
	d := n.Duration
	if d == 0 {
		d = p.defaultDuration()
	}
	if d > p.maxDuration() {
		return Request{}, fmt.Errorf("%w: %v requested, policy %s allows %v", ErrDurationTooLong, d, p.ID, p.maxDuration())
	}
	now, err := m.now(ctx)
	if err != nil {
		return Request{}, err
	}
	start, err := scheduleStart(&p.Policy, n.Start, now)
	if err != nil {
		return Request{}, err
	}
	if err := m.checkPending(ctx, actor, now); err != nil {
		return Request{}, err
	}
	r := Request{
		ID: m.newID("req"), Requester: actor, Scope: n.Scope, PolicyID: p.ID, Reason: n.Reason, Ticket: n.Ticket,
		Duration: d, Start: start, Bind: bind, MaxUses: uses, State: Pending, PolicyVersion: p.Version, CreatedAt: now, PendingUntil: now.Add(p.pendingTTL()), Version: 1,
	}
	r.RemindAt, r.EscalateAt = nudgeAt(&r, now, p.RemindAfter), nudgeAt(&r, now, p.EscalateAfter)
	input := ruleInput(&r, now)
	if err := m.checkRequestRule(ctx, p, input, now); err != nil {
		return Request{}, err
	}
	detail := map[string]string{"reason": r.Reason, "duration": r.Duration.String(), "ticket": r.Ticket}
	if !start.IsZero() {
		detail["start"] = start.UTC().Format(time.RFC3339Nano)
	}
	r.boundsDetail(detail)
	events := []Event{requestEvent(EventRequestSubmitted, &r, actor, now, detail)}
	if v, ok := m.automatic(ctx, p, &r, input, now); ok {
		var more []Event
		if r, more, err = apply(r, ActionSettle, facts{Now: now, Policy: &p.Policy, Verdict: v}); err != nil {
			return Request{}, err
		}
		events = append(events, more...)
	}
	tx := &Tx{Requests: []Request{r}, Events: events, Messages: m.notifications(ctx, events, r, p, now)}
	if err := m.commit(ctx, tx); err != nil {
		return Request{}, err
	}
	m.after(tx)
	return r, nil
}

// scheduleStart is the rule of a submission's start under p at now: the
// zero time (open when approved) for none, or one at or before now; the
// start itself when it is within p's MaxStartDelay of now; otherwise
// ErrInvalid naming the field.
func scheduleStart(p *Policy, start, now time.Time) (time.Time, error) {
	if !start.After(now) {
		return time.Time{}, nil
	}
	if delay := start.Sub(now); delay > p.maxStartDelay() {
		return time.Time{}, invalid("Start", "%s is %v ahead; policy %s schedules at most %v ahead (MaxStartDelay)",
			start.UTC().Format(time.RFC3339), delay, p.ID, p.maxStartDelay())
	}
	return start, nil
}

// input is what Submit and BreakGlass begin with: the actor, the
// policies of now, and the policy n is under (n checked on its own
// first).
func (m *Manager) input(ctx context.Context, n *RequestInput) (string, *snapshot, *compiled, error) {
	actor, err := actorOf(ctx)
	if err != nil {
		return "", nil, nil, err
	}
	if err := n.Validate(); err != nil {
		return "", nil, nil, err
	}
	s, err := m.cache.current(ctx)
	if err != nil {
		return "", nil, nil, err
	}
	p, err := s.bind(n)
	if err != nil {
		return "", nil, nil, err
	}
	return actor, s, p, nil
}

// usable refuses requests under p when it does not compile here or the
// catalog cannot resolve its scope: fail closed.
func (s *snapshot) usable(p *compiled) error {
	switch {
	case p.broken != nil:
		return &RejectedError{PolicyID: p.ID, Messages: []string{"the policy cannot be evaluated: " + p.broken.Error()}}
	case !s.catalog.known(p.Scope):
		return &RejectedError{PolicyID: p.ID, Messages: []string{fmt.Sprintf("the policy's scope %s is not in the catalog", p.Scope)}}
	}
	return nil
}

// eligible gathers the fact mayRequest reads: whether actor is in one
// of p's RequesterGroups (true when it names none). A directory error is
// returned, for the caller to fail closed on.
func (m *Manager) eligible(ctx context.Context, p *Policy, actor string) (bool, error) {
	if len(p.RequesterGroups) == 0 {
		return true, nil
	}
	for _, g := range p.RequesterGroups {
		ok, err := m.isMember(ctx, g, actor)
		if err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}

// checkPending returns ErrLimit when actor has Options.MaxPending pending
// requests at now.
func (m *Manager) checkPending(ctx context.Context, actor string, now time.Time) error {
	if m.maxPend == 0 {
		return nil
	}
	rs, err := m.store.Requests(ctx, RequestFilter{Requester: actor, States: []State{Pending}})
	if err != nil {
		return err
	}
	n := 0
	for i := range rs {
		if rs[i].StateAt(now) == Pending {
			n++
		}
	}
	if n >= m.maxPend {
		return fmt.Errorf("%w: %s has %d pending requests, the most allowed", ErrLimit, actor, n)
	}
	return nil
}

// bind finds the policy a new request is for, filling n.Scope from it when
// empty.
func (s *snapshot) bind(n *RequestInput) (*compiled, error) {
	if n.PolicyID != "" {
		c := s.policy(n.PolicyID)
		switch {
		case c == nil:
			return nil, fmt.Errorf("%w: policy %q does not exist", ErrNoPolicy, n.PolicyID)
		case n.Scope == Scope{}:
			n.Scope = c.Scope
		case !s.catalog.coversScope(c.Scope, n.Scope):
			return nil, fmt.Errorf("%w: policy %s (%s) does not cover %s", ErrNoPolicy, c.ID, c.Scope, n.Scope)
		}
		return c, nil
	}
	var found []*compiled
	if n.Scope.Kind == KindTask {
		// The index, not candidates: a policy the catalog cannot resolve
		// is a candidate of every task for Guard, never a policy to
		// request under.
		found = s.byTask.get(n.Scope.Name)
	} else {
		for _, c := range s.policies.all() {
			if s.catalog.coversScope(c.Scope, n.Scope) {
				found = append(found, c)
			}
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("%w: %s", ErrNoPolicy, n.Scope)
	case 1:
		return found[0], nil
	}
	ids := make([]string, len(found))
	for i, c := range found {
		ids[i] = c.ID
	}
	sort.Strings(ids)
	return nil, &AmbiguousError{PolicyIDs: ids}
}

func ruleInput(r *Request, now time.Time) map[string]any {
	return map[string]any{
		"actor": r.Requester,
		"now":   now.UnixNano(),
		"request": map[string]any{
			"scope":     map[string]any{"kind": string(r.Scope.Kind), "name": r.Scope.Name},
			"policy_id": r.PolicyID,
			"reason":    r.Reason,
			"ticket":    r.Ticket,
			"duration":  int64(r.Duration),
			"requester": r.Requester,
			"bind":      bindInput(r.Bind),
			"max_uses":  r.MaxUses,
			"start":     unixNanos(r.Start),
		},
	}
}

// unixNanos is t in Unix nanoseconds, 0 for the zero time.
func unixNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func (m *Manager) checkRequestRule(ctx context.Context, p *compiled, input map[string]any, now time.Time) error {
	if p.RequestRule == "" {
		return nil
	}
	if p.broken != nil {
		return &RejectedError{PolicyID: p.ID, Messages: []string{"the policy's rules do not compile: " + p.broken.Error()}}
	}
	v, err := p.requestRule.Eval(ctx, input, now)
	if err != nil {
		return &RejectedError{PolicyID: p.ID, Messages: []string{"the request rule failed: " + err.Error()}}
	}
	set, _ := v.([]any)
	if len(set) == 0 {
		return nil
	}
	msgs := make([]string, len(set))
	for i, x := range set {
		if s, ok := x.(string); ok {
			msgs[i] = s
		} else {
			msgs[i] = fmt.Sprint(x)
		}
	}
	sort.Strings(msgs)
	return &RejectedError{PolicyID: p.ID, Messages: msgs}
}

// automatic returns the automatic decision on a new request, if any: Auto
// policies approve; otherwise the auto-approval rule, then each Approver.
func (m *Manager) automatic(ctx context.Context, p *compiled, r *Request, input map[string]any, now time.Time) (Decision, bool) {
	d := Decision{At: now, PolicyVersion: p.Version, Verdict: Approve}
	if p.Approval == Auto {
		d.Approver, d.Comment = "auto:policy", "policy approval is auto"
		return d, true
	}
	if p.autoRule != nil && p.broken == nil {
		v, err := p.autoRule.Eval(ctx, input, now)
		if err != nil {
			m.onError(fmt.Errorf("pam: auto-approval rule of policy %s: %w", p.ID, err))
		} else if v == true {
			d.Approver, d.Comment = "auto:rule", "auto-approval rule"
			return d, true
		}
	}
	for i, a := range m.approvers {
		rv, err := a.Review(ctx, r.clone(), p.Policy)
		if err == nil && rv.Verdict != "" && rv.Verdict != Approve && rv.Verdict != Deny {
			err = fmt.Errorf("unknown verdict %q", rv.Verdict)
		}
		if err == nil && rv.Comment != "" {
			err = checkText("Review.Comment", rv.Comment, MaxReasonLen)
		}
		if err == nil && rv.By != "" {
			err = checkName("Review.By", rv.By)
		}
		if err != nil {
			m.onError(fmt.Errorf("pam: approver %d on request %s: %w", i, r.ID, err))
			continue
		}
		if rv.Verdict == "" {
			continue
		}
		by := rv.By
		if by == "" {
			by = fmt.Sprintf("approver%d", i)
		}
		d.Approver, d.Verdict, d.Comment = "auto:"+by, rv.Verdict, rv.Comment
		return d, true
	}
	return Decision{}, false
}

// Request returns request id with its state as of now. Its requester,
// admins and members of its policy's approver groups may read it; to
// anyone else it does not exist (ErrNotFound), so IDs cannot be probed.
func (m *Manager) Request(ctx context.Context, id string) (Request, error) {
	actor, err := actorOf(ctx)
	if err != nil {
		return Request{}, err
	}
	if err := checkName("ID", id); err != nil {
		return Request{}, err
	}
	r, err := m.store.Request(ctx, id)
	if err != nil {
		return Request{}, err
	}
	f, err := m.viewFacts(ctx, actor, &r)
	if err != nil {
		return Request{}, err
	}
	if !mayView(&r, f) {
		return Request{}, fmt.Errorf("%w: request %q", ErrNotFound, id)
	}
	now, err := m.now(ctx)
	if err != nil {
		return Request{}, err
	}
	r.State = r.StateAt(now)
	return r, nil
}

// viewFacts gathers the facts of the read rule (mayView) for actor and r.
func (m *Manager) viewFacts(ctx context.Context, actor string, r *Request) (facts, error) {
	f := facts{Actor: actor}
	if actor == r.Requester {
		return f, nil
	}
	var err error
	if f.Admin, err = m.isAdmin(ctx, actor); err != nil || f.Admin {
		return f, err
	}
	s, err := m.cache.current(ctx)
	if err != nil {
		return f, err
	}
	if p := s.policy(r.PolicyID); p != nil {
		if f.MemberOf, err = m.memberships(ctx, &p.Policy, []string{actor}); err == nil && len(f.MemberOf[actor]) == 0 {
			f.Escalator, err = m.escalator(ctx, r, &p.Policy, actor)
		}
	}
	return f, err
}

// approverOfAll reports whether actor is in an approver group of every
// one of the policies: they may then see those policies' requests (the
// read rule, mayView), so they may list them.
func (m *Manager) approverOfAll(ctx context.Context, actor string, policyIDs []string) (bool, error) {
	s, err := m.cache.current(ctx)
	if err != nil {
		return false, err
	}
	for _, id := range policyIDs {
		p := s.policy(id)
		if p == nil {
			return false, nil
		}
		in := false
		for _, g := range p.ApproverGroups {
			if in, err = m.isMember(ctx, g.Group, actor); err != nil {
				return false, err
			}
			if in {
				break
			}
		}
		if !in {
			return false, nil
		}
	}
	return true, nil
}

// requireAdminOr returns nil when ok, and otherwise what requireAdmin
// returns: the rule for reads that are the actor's own unless they are an
// admin's.
func (m *Manager) requireAdminOr(ctx context.Context, ok bool) error {
	if ok {
		return nil
	}
	_, err := m.requireAdmin(ctx)
	return err
}

// Requests lists requests matching f, their states as of now, one page at
// a time: pass next as f.After for the following page ("" at the end).
// f.States match the state as of now, so a page may hold fewer than
// f.Limit requests when some have expired unrecorded.
//
// Anyone may list their own requests (f.Requester set to themselves),
// those they decided (f.DecidedBy set to themselves: an approver's
// history), and those under policies whose approver groups they are in
// (f.PolicyIDs all such: a requester's history under a policy, for its
// approvers); other lists are for admins (ErrForbidden). Approvers find
// what waits for them with Reviewable and ReviewableRequests.
func (m *Manager) Requests(ctx context.Context, f RequestFilter) (rs []Request, next string, err error) {
	actor, err := actorOf(ctx)
	if err != nil {
		return nil, "", err
	}
	if f.Limit < 0 || f.Limit > MaxPageSize {
		return nil, "", invalid("Limit", "must be between 0 and %d", MaxPageSize)
	}
	if f.Limit == 0 {
		f.Limit = DefaultPageSize
	}
	if f.Requester != "" {
		if f.Requester, err = CanonicalIdentity(f.Requester); err != nil {
			return nil, "", err
		}
	}
	if f.DecidedBy != "" {
		if f.DecidedBy, err = CanonicalIdentity(f.DecidedBy); err != nil {
			return nil, "", err
		}
	}
	if err := ValidateRequestFilter(&f); err != nil {
		return nil, "", err
	}
	own := f.Requester == actor || f.DecidedBy == actor
	if !own && len(f.PolicyIDs) > 0 {
		if own, err = m.approverOfAll(ctx, actor, f.PolicyIDs); err != nil {
			return nil, "", err
		}
	}
	if err := m.requireAdminOr(ctx, own); err != nil {
		return nil, "", err
	}
	want := f.States
	if contains(want, Expired) {
		f.States = append(append([]State(nil), want...), Pending, Approved)
	}
	raw, err := m.store.Requests(ctx, f)
	if err != nil {
		return nil, "", err
	}
	now, err := m.now(ctx)
	if err != nil {
		return nil, "", err
	}
	for _, r := range raw {
		r.State = r.StateAt(now)
		if len(want) == 0 || contains(want, r.State) {
			rs = append(rs, r)
		}
	}
	if len(raw) == f.Limit {
		next = raw[len(raw)-1].ID
	}
	return rs, next, nil
}

// Sweep records the expiry of every request whose pending time or access
// window has passed, with audit events and notifications, the reminders
// and escalations of pending requests that are due (Policy.RemindAfter,
// EscalateAfter), the overdue notices of break-glass reviews
// (BreakGlass.ReviewWithin), and the end of
// every guarded run whose end was never recorded within
// Options.RunEndGrace (OutcomeEndedUnknown; see Guard), and returns how
// many of these it recorded. State reads do not depend on it
// (they compute expiry from the clock); Sweep makes the trail and the
// notifications complete.
func (m *Manager) Sweep(ctx context.Context) (int, error) {
	ctx, span := m.tel.start(ctx, "pam.Sweep")
	n, err := m.sweepOnce(ctx)
	m.tel.sweeps.Add(ctx, 1, result(err))
	m.tel.log.Debug("pam: sweep", "recorded", n, "error", err)
	if span.IsRecording() {
		span.SetAttributes(attribute.Int("pam.sweep.recorded", n))
	}
	end(span, err)
	return n, err
}

func (m *Manager) sweepOnce(ctx context.Context) (int, error) {
	now, err := m.now(ctx)
	if err != nil {
		return 0, err
	}
	// Every state: a request that ended may still have a break-glass
	// review due (Request.Due).
	list, err := m.store.Requests(ctx, RequestFilter{DueBy: now})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range list {
		// What is due: the expiry, or else an escalation and a reminder,
		// and an overdue review (each at most once per instant it is
		// due, across Managers: the request's version decides who
		// records it).
		var actions []Action
		switch phase(&r, now) {
		case due, dueGrant:
			actions = append(actions, ActionExpire)
		case Pending:
			if !r.EscalateAt.IsZero() && !r.EscalateAt.After(now) {
				actions = append(actions, ActionEscalate)
			}
			if !r.RemindAt.IsZero() && !r.RemindAt.After(now) {
				actions = append(actions, ActionRemind)
			}
		}
		if v := r.BreakGlass; v != nil && v.State == ReviewPending && !v.NotifyAt.IsZero() && !v.NotifyAt.After(now) {
			actions = append(actions, ActionReviewOverdue)
		}
		for _, a := range actions {
			_, err := m.change(ctx, r.ID, a, facts{})
			switch {
			case err == nil:
				n++
			case errors.Is(err, ErrWrongState):
				// Another Manager recorded it, or the request was
				// decided, revoked or reviewed meanwhile.
			default:
				return n, err
			}
		}
	}
	ended, err := m.endAbandoned(ctx, now)
	return n + ended, err
}
