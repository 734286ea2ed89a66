package pam

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
	"golang.org/x/sync/singleflight"

	"github.com/zerostanding/pam/internal/ident"
	"github.com/zerostanding/pam/internal/rules"
)

// DefaultAdminGroup is the admin group when Options.AdminGroup is empty.
const DefaultAdminGroup = "pam-admins"

// Options configure a Manager. Every field is optional; the zero value,
// and a nil *Options, mean the documented defaults.
type Options struct {
	// Clock is the only time source of the engine. Default: the wall
	// clock. Tests pass clock.NewMock().
	Clock clock.Clock
	// Catalog defines roles and role groups. Change it at run time with
	// SetCatalog.
	Catalog Catalog
	// Notifier, when set, is told about new requests and decisions: it is
	// the notifier named "default". Notifiers adds others; each gets its
	// own outbox messages, delivered by Run (see Deliver).
	Notifier  Notifier
	Notifiers []NotifierConfig
	// AuditSinks receive every committed audit event, each through its
	// own delivery worker (see SinkConfig). Call Close to stop them.
	AuditSinks []SinkConfig
	// AuditTimeout bounds each write to an audit sink or checkpoint sink,
	// and how long Guard waits for a required sink to take an operation's
	// start event before it denies. Default: 5 seconds.
	AuditTimeout time.Duration
	// AuditPollInterval is how often sink workers look for events, and
	// Run for outbox messages, that other Managers sharing the store
	// committed (and for retries that came due); this Manager's own
	// commits wake them at once. Default: 1 second. Like the timeouts
	// and the sinks' retry backoff, it runs on real time, not on Clock.
	AuditPollInterval time.Duration
	// CheckpointKey, when set, signs checkpoints (see Checkpoint).
	CheckpointKey ed25519.PrivateKey
	// CheckpointSinks keep checkpoints outside the store. With any, Run
	// makes a checkpoint every CheckpointInterval when the trail has
	// grown since the last one.
	CheckpointSinks []CheckpointSink
	// CheckpointInterval defaults to 1 hour.
	CheckpointInterval time.Duration
	// Approvers are automatic reviewers consulted on submission to a
	// Manual policy.
	Approvers []Approver
	// AdminGroup is the directory group whose members may create, change
	// and delete policies and read every request and event. Default:
	// DefaultAdminGroup.
	AdminGroup string
	// SystemAccounts are exempt from grants (each pass is audited), like
	// Purview's -SystemAccounts.
	SystemAccounts []string
	// DenyUncovered makes Guard deny operations no policy covers, instead
	// of running them.
	DenyUncovered bool
	// SweepInterval is how often Run records expiries. Default: 1 minute.
	SweepInterval time.Duration
	// NotifyTimeout bounds each call to a Notifier. Default: 30 seconds.
	NotifyTimeout time.Duration
	// OutboxLease is how long a message being delivered is reserved for
	// this Manager: if it dies mid-delivery, another Manager (or this one
	// restarted) takes the message over once the lease ends. Default:
	// NotifyTimeout plus 30 seconds; it must exceed NotifyTimeout.
	OutboxLease time.Duration
	// ParamAudit says how operation parameters are recorded in the audit
	// trail where a policy does not say; by default they are redacted.
	ParamAudit ParamAudit
	// ParamHMACKey is the key of ParamHMAC. Required when any mode is
	// ParamHMAC; keep it out of the database.
	ParamHMACKey []byte
	// OnError receives errors that do not fail the operation that caused
	// them: a notifier or audit sink that failed, an automatic approver
	// that failed, a stored policy that no longer compiles.
	OnError func(error)
}

// Manager is the engine: policies, requests, approvals and Guard. It is
// safe for concurrent use. Several Managers (in several processes) may
// share one Store; each sees the others' policy changes and revocations on
// its next call.
type Manager struct {
	store         Store
	outboxStore   OutboxStore // store, when it keeps an outbox
	clock         clock.Clock
	dir           Directory
	notifiers     map[string]*notifier
	notifierNames []string
	owner         string        // this Manager's name in outbox leases
	outboxWake    chan struct{} // a commit wrote messages
	approvers     []Approver
	admins        string
	system        map[string]bool
	denyUncov     bool
	sweep         time.Duration
	timeout       time.Duration
	lease         time.Duration
	onError       func(error)

	times TimeSource // the store, when it supplies the time

	sinks        []*sinkWorker
	required     []*sinkWorker
	auditTimeout time.Duration
	auditPoll    time.Duration
	startSeq     int64         // the head when the Manager started
	sinksReady   chan struct{} // closed once startSeq is read
	killSinks    context.CancelFunc
	sinkWG       sync.WaitGroup
	closeOnce    sync.Once

	params   ParamAudit
	paramKey []byte

	ckptKey   ed25519.PrivateKey
	ckptSinks []CheckpointSink
	ckptEvery time.Duration
	lastCkpt  atomic.Int64 // the Seq of the last checkpoint made

	env       *rules.Env
	snap      atomic.Pointer[snapshot]
	refreshMu sync.Mutex
	compiles  singleflight.Group
	fresh     sync.Map // "id@version" → *compiled, policies this Manager just wrote
}

// New returns a Manager over store, resolving group membership (admins,
// approvers) through dir. opts may be nil. New does not touch the store:
// policies are loaded on first use.
func New(store Store, dir Directory, opts *Options) (*Manager, error) {
	if store == nil {
		return nil, invalid("store", "must not be nil")
	}
	if dir == nil {
		return nil, invalid("dir", "must not be nil")
	}
	if opts == nil {
		opts = &Options{}
	}
	admins := opts.AdminGroup
	if admins == "" {
		admins = DefaultAdminGroup
	}
	if err := checkName("Options.AdminGroup", admins); err != nil {
		return nil, err
	}
	if opts.SweepInterval < 0 || opts.NotifyTimeout < 0 || opts.OutboxLease < 0 || opts.AuditTimeout < 0 || opts.AuditPollInterval < 0 || opts.CheckpointInterval < 0 {
		return nil, invalid("Options", "intervals must not be negative")
	}
	m := &Manager{
		store:     store,
		clock:     opts.Clock,
		dir:       dir,
		approvers: append([]Approver(nil), opts.Approvers...),
		admins:    admins,
		system:    make(map[string]bool, len(opts.SystemAccounts)),
		denyUncov: opts.DenyUncovered,
		sweep:     opts.SweepInterval,
		timeout:   opts.NotifyTimeout,
		lease:     opts.OutboxLease,
		onError:   opts.OnError,
		env:       rules.NewEnv(),

		auditTimeout: opts.AuditTimeout,
		auditPoll:    opts.AuditPollInterval,
		ckptSinks:    append([]CheckpointSink(nil), opts.CheckpointSinks...),
		ckptEvery:    opts.CheckpointInterval,
	}
	if err := opts.ParamAudit.Validate("Options.ParamAudit"); err != nil {
		return nil, err
	}
	if opts.ParamAudit.uses(ParamHMAC) && len(opts.ParamHMACKey) == 0 {
		return nil, invalid("Options.ParamHMACKey", "is required by ParamHMAC")
	}
	m.params = ParamAudit{Default: opts.ParamAudit.Default, Params: maps.Clone(opts.ParamAudit.Params)}
	m.paramKey = append([]byte(nil), opts.ParamHMACKey...)
	if opts.CheckpointKey != nil {
		if len(opts.CheckpointKey) != ed25519.PrivateKeySize {
			return nil, invalid("Options.CheckpointKey", "is not an Ed25519 private key")
		}
		m.ckptKey = opts.CheckpointKey
	}
	if m.auditTimeout == 0 {
		m.auditTimeout = 5 * time.Second
	}
	if m.auditPoll == 0 {
		m.auditPoll = time.Second
	}
	if m.ckptEvery == 0 {
		m.ckptEvery = time.Hour
	}
	for i, c := range opts.AuditSinks {
		w, err := newSinkWorker(m, i, c)
		if err != nil {
			return nil, err
		}
		m.sinks = append(m.sinks, w)
		if w.required {
			m.required = append(m.required, w)
		}
	}
	if m.clock == nil {
		m.clock = clock.New()
	}
	m.times, _ = store.(TimeSource)
	var err error
	if m.notifiers, m.notifierNames, err = newNotifiers(opts); err != nil {
		return nil, err
	}
	m.outboxStore, _ = store.(OutboxStore)
	if len(m.notifiers) > 0 && m.outboxStore == nil {
		return nil, invalid("Options.Notifiers", "the store keeps no outbox (it does not implement OutboxStore)")
	}
	m.owner, m.outboxWake = m.newID("mgr"), make(chan struct{}, 1)
	if m.sweep == 0 {
		m.sweep = time.Minute
	}
	if m.timeout == 0 {
		m.timeout = 30 * time.Second
	}
	if m.lease == 0 {
		m.lease = m.timeout + 30*time.Second
	}
	if m.lease <= m.timeout {
		return nil, invalid("Options.OutboxLease", "must exceed NotifyTimeout (%v)", m.timeout)
	}
	if m.onError == nil {
		m.onError = func(error) {}
	}
	for _, a := range opts.SystemAccounts {
		c, err := CanonicalIdentity(a)
		if err != nil {
			return nil, fmt.Errorf("Options.SystemAccounts: %w", err)
		}
		m.system[c] = true
	}
	cat := opts.Catalog
	if err := cat.Validate(); err != nil {
		return nil, err
	}
	if err := m.env.SetData(context.Background(), catalogData(&cat)); err != nil {
		return nil, invalid("Catalog.Data", "%v", err)
	}
	m.snap.Store(&snapshot{rev: -1, catalog: indexCatalog(&cat)})
	m.startSinks()
	return m, nil
}

// actorKey carries the acting identity in a context.
type actorKey struct{}

type actor struct {
	id  string // canonical
	err error
}

// WithActor returns a context that acts as id (any spelling; it is
// canonicalised here, once). Every engine call takes its actor from the
// context; a context without one is denied with ErrNoActor.
func WithActor(ctx context.Context, id string) context.Context {
	c, err := ident.Canonical(id)
	return context.WithValue(ctx, actorKey{}, &actor{id: c, err: err})
}

// ActorFrom returns the canonical actor of ctx, if it has a valid one.
func ActorFrom(ctx context.Context) (string, bool) {
	a, ok := ctx.Value(actorKey{}).(*actor)
	if !ok || a.err != nil {
		return "", false
	}
	return a.id, true
}

func actorOf(ctx context.Context) (string, error) {
	a, ok := ctx.Value(actorKey{}).(*actor)
	switch {
	case !ok:
		return "", ErrNoActor
	case a.err != nil:
		return "", fmt.Errorf("%w: %w", ErrNoActor, a.err)
	}
	return a.id, nil
}

// now returns the time decisions are made at: the store's when the store
// is a TimeSource, Options.Clock's otherwise.
func (m *Manager) now(ctx context.Context) (time.Time, error) {
	if m.times == nil {
		return m.clock.Now(), nil
	}
	t, err := m.times.Now(ctx)
	if err != nil {
		return time.Time{}, fmt.Errorf("pam: store time: %w", err)
	}
	return t, nil
}

var idEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// newID returns prefix_ followed by 48 bits of milliseconds and 80 random
// bits, so IDs sort roughly by creation.
func (m *Manager) newID(prefix string) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(m.clock.Now().UnixMilli())<<16)
	rand.Read(b[6:])
	return prefix + "_" + idEncoding.EncodeToString(b[:])
}

func (m *Manager) isMember(ctx context.Context, group, user string) (bool, error) {
	ok, err := m.dir.IsMember(ctx, group, user)
	if err != nil {
		return false, fmt.Errorf("pam: directory: %w", err)
	}
	return ok, nil
}

func (m *Manager) requireAdmin(ctx context.Context) (string, error) {
	a, err := actorOf(ctx)
	if err != nil {
		return "", err
	}
	ok, err := m.isMember(ctx, m.admins, a)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("%w: %s is not in the admin group %s", ErrForbidden, a, m.admins)
	}
	return a, nil
}

// ---- Policies ----

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
	p.Version, p.MinGrantVersion, p.Revision, p.Deleted = 1, 1, 0, false
	p.CreatedAt, p.UpdatedAt, p.CreatedBy, p.UpdatedBy = now, now, actor, actor
	c, err := m.compile(ctx, &p)
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
	next.DefaultDuration, next.MaxDuration, next.PendingTTL = p.DefaultDuration, p.MaxDuration, p.PendingTTL
	next.RequestRule, next.AutoApproveRule = p.RequestRule, p.AutoApproveRule
	next.Version, next.UpdatedAt, next.UpdatedBy = cur.Version+1, now, actor
	if accessChanged(&cur, &next) {
		next.MinGrantVersion = next.Version
	}
	c, err := m.compile(ctx, &next)
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
	if p.ParamAudit.uses(ParamHMAC) && len(m.paramKey) == 0 {
		return invalid("ParamAudit", "ParamHMAC needs Options.ParamHMACKey")
	}
	s, err := m.current(ctx)
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
	c.Policy.Revision = p.Revision
	m.fresh.Store(compileKey(&p), c)
	if _, err := m.refresh(ctx); err != nil {
		// The write is committed; the next call's freshness check loads it.
		m.onError(fmt.Errorf("pam: reload policies after writing %s: %w", p.ID, err))
	}
	m.published(ctx, tx.Events)
	return p
}

// Policy returns the live policy with id.
func (m *Manager) Policy(ctx context.Context, id string) (Policy, error) {
	s, err := m.current(ctx)
	if err != nil {
		return Policy{}, err
	}
	c, ok := s.policies[id]
	if !ok {
		return Policy{}, fmt.Errorf("%w: policy %q", ErrNotFound, id)
	}
	return c.Policy, nil
}

// Policies returns every live policy, ordered by ID.
func (m *Manager) Policies(ctx context.Context) ([]Policy, error) {
	s, err := m.current(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Policy, 0, len(s.policies))
	for _, c := range s.policies {
		out = append(out, c.Policy)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// SetCatalog replaces the catalog of roles and role groups. It fails with
// ErrInvalid, changing nothing, if a live policy is scoped to a role or
// role group the new catalog lacks: removing it would silently unguard its
// tasks. The change is audited and seen by the next Guard.
func (m *Manager) SetCatalog(ctx context.Context, cat Catalog) error {
	if err := cat.Validate(); err != nil {
		return err
	}
	m.refreshMu.Lock()
	defer m.refreshMu.Unlock()
	s := m.snap.Load()
	ix := indexCatalog(&cat)
	for _, c := range s.policies {
		if !ix.known(c.Scope) {
			return invalid("Catalog", "policy %s is scoped to %s, which the catalog no longer defines", c.ID, c.Scope)
		}
	}
	actor, _ := ActorFrom(ctx)
	now, err := m.now(ctx)
	if err != nil {
		return err
	}
	tx := &Tx{Events: []Event{{Time: now, Type: EventCatalogSet, Actor: actor, Detail: map[string]string{
		"roles": fmt.Sprint(len(cat.Roles)), "role_groups": fmt.Sprint(len(cat.RoleGroups)),
	}}}}
	if err := m.env.SetData(ctx, catalogData(&cat)); err != nil {
		return invalid("Catalog.Data", "%v", err)
	}
	if err := m.commit(ctx, tx); err != nil {
		return err
	}
	m.snap.Store(&snapshot{rev: s.rev, catalog: ix, policies: s.policies, byTask: buildIndex(s.policies, ix)})
	m.published(ctx, tx.Events)
	return nil
}

func catalogData(c *Catalog) map[string]any {
	d := make(map[string]any, len(c.Data)+2)
	maps.Copy(d, c.Data)
	d["roles"] = c.Roles
	d["role_groups"] = c.RoleGroups
	return d
}

// ---- Requests ----

// Submit asks for access on behalf of the context's actor. The request is
// bound to the policy that covers its scope (ErrNoPolicy when none does,
// ErrAmbiguous when several do). The policy's request rule may reject it
// (ErrRejected); Auto policies, the policy's auto-approval rule and the
// configured Approvers may settle it at once. The access window opens
// when the request is approved, not when it is submitted.
func (m *Manager) Submit(ctx context.Context, n RequestInput) (Request, error) {
	actor, err := actorOf(ctx)
	if err != nil {
		return Request{}, err
	}
	if err := n.Validate(); err != nil {
		return Request{}, err
	}
	s, err := m.current(ctx)
	if err != nil {
		return Request{}, err
	}
	p, err := s.bind(&n)
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
	r := Request{
		ID: m.newID("req"), Requester: actor, Scope: n.Scope, PolicyID: p.ID, Reason: n.Reason, Ticket: n.Ticket,
		Duration: d, State: Pending, PolicyVersion: p.Version, CreatedAt: now, PendingUntil: now.Add(p.pendingTTL()), Version: 1,
	}
	input := ruleInput(&r, now)
	if err := m.checkRequestRule(ctx, p, input, now); err != nil {
		return Request{}, err
	}
	events := []Event{requestEvent(EventRequestSubmitted, &r, actor, now, map[string]string{
		"reason": r.Reason, "duration": r.Duration.String(), "ticket": r.Ticket,
	})}
	if v, ok := m.automatic(ctx, p, &r, input, now); ok {
		var more []Event
		r, more = settle(r, &p.Policy, v, now)
		events = append(events, more...)
	}
	tx := &Tx{Requests: []Request{r}, Events: events, Messages: m.outbox(ctx, events, r, p, now)}
	if err := m.commit(ctx, tx); err != nil {
		return Request{}, err
	}
	m.after(ctx, tx)
	return r, nil
}

// bind finds the policy a new request is for, filling n.Scope from it when
// empty.
func (s *snapshot) bind(n *RequestInput) (*compiled, error) {
	if n.PolicyID != "" {
		c, ok := s.policies[n.PolicyID]
		switch {
		case !ok:
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
		found = s.byTask[n.Scope.Name]
	} else {
		for _, c := range s.policies {
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
		},
	}
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

// Approve records the actor's approval of request id. The request is
// approved, and its window opens, when every approver group of its policy
// has its minimum of distinct approvers who are still members.
func (m *Manager) Approve(ctx context.Context, id, comment string) (Request, error) {
	return m.decideAs(ctx, id, Approve, comment)
}

// Deny records the actor's denial of request id, which denies it.
func (m *Manager) Deny(ctx context.Context, id, comment string) (Request, error) {
	return m.decideAs(ctx, id, Deny, comment)
}

func (m *Manager) decideAs(ctx context.Context, id string, v Verdict, comment string) (Request, error) {
	if err := checkText("comment", comment, MaxReasonLen); err != nil {
		return Request{}, err
	}
	return m.transition(ctx, id, func(actor string, r Request, p *compiled, now time.Time) (Request, []Event, error) {
		if p == nil {
			return r, nil, fmt.Errorf("%w: policy %s was deleted", ErrWrongState, r.PolicyID)
		}
		if s := r.StateAt(now); s != Pending {
			return r, nil, fmt.Errorf("%w: decide a %s request", ErrWrongState, s)
		}
		if actor == r.Requester {
			return r, nil, ErrSelfApproval
		}
		people := append(approvers(r.Decisions), actor)
		memberOf := make(membership, len(people))
		for _, who := range people {
			for gi, g := range p.ApproverGroups {
				ok, err := m.isMember(ctx, g.Group, who)
				if err != nil {
					return r, nil, err
				}
				if ok {
					memberOf[who] = append(memberOf[who], gi)
				}
			}
		}
		d := Decision{Approver: actor, Verdict: v, Comment: comment, At: now, PolicyVersion: p.Version}
		return decide(r, &p.Policy, d, memberOf, now)
	})
}

// Cancel withdraws a pending request. Only its requester may.
func (m *Manager) Cancel(ctx context.Context, id, comment string) (Request, error) {
	if err := checkText("comment", comment, MaxReasonLen); err != nil {
		return Request{}, err
	}
	return m.transition(ctx, id, func(actor string, r Request, _ *compiled, now time.Time) (Request, []Event, error) {
		return cancel(r, actor, comment, now)
	})
}

// Revoke ends an approved request's window now. Admins, members of the
// policy's approver groups and the requester (giving up their own access)
// may revoke. Every Manager sharing the store denies the grant from its
// next Guard on.
func (m *Manager) Revoke(ctx context.Context, id, comment string) (Request, error) {
	if err := checkText("comment", comment, MaxReasonLen); err != nil {
		return Request{}, err
	}
	return m.transition(ctx, id, func(actor string, r Request, p *compiled, now time.Time) (Request, []Event, error) {
		if s := r.StateAt(now); s != Approved {
			return r, nil, fmt.Errorf("%w: revoke a %s request", ErrWrongState, s)
		}
		if ok, err := m.mayRevoke(ctx, actor, &r, p); err != nil || !ok {
			if err == nil {
				err = fmt.Errorf("%w: %s may not revoke request %s", ErrForbidden, actor, r.ID)
			}
			return r, nil, err
		}
		return revoke(r, actor, comment, now)
	})
}

func (m *Manager) mayRevoke(ctx context.Context, actor string, r *Request, p *compiled) (bool, error) {
	if actor == r.Requester {
		return true, nil
	}
	if ok, err := m.isMember(ctx, m.admins, actor); err != nil || ok {
		return ok, err
	}
	if p == nil {
		return false, nil
	}
	for _, g := range p.ApproverGroups {
		if ok, err := m.isMember(ctx, g.Group, actor); err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}

// maxAttempts bounds the retries of a transition that lost a version race.
const maxAttempts = 32

// transition reads request id, applies step, and commits the result with
// its events, retrying when another writer committed first.
func (m *Manager) transition(ctx context.Context, id string, step func(actor string, r Request, p *compiled, now time.Time) (Request, []Event, error)) (Request, error) {
	actor, err := actorOf(ctx)
	if err != nil {
		return Request{}, err
	}
	return m.transitionAs(ctx, actor, id, step)
}

func (m *Manager) transitionAs(ctx context.Context, actor, id string, step func(actor string, r Request, p *compiled, now time.Time) (Request, []Event, error)) (Request, error) {
	if err := checkName("ID", id); err != nil {
		return Request{}, err
	}
	for range maxAttempts {
		cur, err := m.store.Request(ctx, id)
		if err != nil {
			return Request{}, err
		}
		s, err := m.current(ctx)
		if err != nil {
			return Request{}, err
		}
		now, err := m.now(ctx)
		if err != nil {
			return Request{}, err
		}
		next, events, err := step(actor, cur, s.policies[cur.PolicyID], now)
		if err != nil {
			return Request{}, err
		}
		next.Version = cur.Version + 1
		tx := &Tx{Requests: []Request{next}, Events: events, Messages: m.outbox(ctx, events, next, s.policies[next.PolicyID], now)}
		err = m.commit(ctx, tx)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return Request{}, err
		}
		m.after(ctx, tx)
		next.State = next.StateAt(now)
		return next, nil
	}
	return Request{}, fmt.Errorf("%w: request %s kept changing, gave up after %d attempts", ErrConflict, id, maxAttempts)
}

// Request returns request id with its state as of now.
func (m *Manager) Request(ctx context.Context, id string) (Request, error) {
	if err := checkName("ID", id); err != nil {
		return Request{}, err
	}
	r, err := m.store.Request(ctx, id)
	if err != nil {
		return Request{}, err
	}
	now, err := m.now(ctx)
	if err != nil {
		return Request{}, err
	}
	r.State = r.StateAt(now)
	return r, nil
}

// Requests lists requests matching f, their states as of now, one page at
// a time: pass next as f.After for the following page ("" at the end).
// f.States match the state as of now, so a page may hold fewer than
// f.Limit requests when some have expired unrecorded.
func (m *Manager) Requests(ctx context.Context, f RequestFilter) (rs []Request, next string, err error) {
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
// window has passed, with audit events and notifications, and returns how
// many it recorded. State reads do not depend on it (they compute expiry
// from the clock); Sweep makes the trail and the notifications complete.
func (m *Manager) Sweep(ctx context.Context) (int, error) {
	now, err := m.now(ctx)
	if err != nil {
		return 0, err
	}
	due, err := m.store.Requests(ctx, RequestFilter{States: []State{Pending, Approved}, DueBy: now})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range due {
		_, err := m.transitionAs(ctx, "", r.ID, func(_ string, r Request, _ *compiled, now time.Time) (Request, []Event, error) {
			return expire(r, now)
		})
		switch {
		case err == nil:
			n++
		case errors.Is(err, ErrWrongState):
			// Another Manager recorded it, or it was revoked meanwhile.
		default:
			return n, err
		}
	}
	return n, nil
}

// Run delivers the outbox (see Deliver), sweeps every
// Options.SweepInterval and, with checkpoint sinks,
// makes a checkpoint every Options.CheckpointInterval when the trail has
// grown, until ctx is done; it returns ctx's error. Errors go to
// Options.OnError.
func (m *Manager) Run(ctx context.Context) error {
	if len(m.notifiers) > 0 {
		done := make(chan struct{})
		go func() { defer close(done); m.dispatch(ctx) }()
		defer func() { <-done }()
	}
	t := m.clock.Ticker(m.sweep)
	defer t.Stop()
	var ckpt <-chan time.Time
	if len(m.ckptSinks) > 0 {
		c := m.clock.Ticker(m.ckptEvery)
		defer c.Stop()
		ckpt = c.C
	}
	for {
		if _, err := m.Sweep(ctx); err != nil && ctx.Err() == nil {
			m.onError(fmt.Errorf("pam: sweep: %w", err))
		}
	wait:
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-ckpt:
			if m.headSeq(ctx) > m.lastCkpt.Load() {
				if _, err := m.Checkpoint(ctx); err != nil && ctx.Err() == nil {
					m.onError(err)
				}
			}
			goto wait
		}
	}
}

// ---- After a commit ----

// after wakes the sink workers and the outbox dispatcher for what a
// request transition committed.
func (m *Manager) after(ctx context.Context, tx *Tx) {
	m.published(ctx, tx.Events)
	if len(tx.Messages) > 0 {
		select {
		case m.outboxWake <- struct{}{}:
		default:
		}
	}
}

func (m *Manager) approverRecipients(ctx context.Context, p *compiled, requester string) []string {
	seen := map[string]bool{requester: true}
	var to []string
	for _, g := range p.ApproverGroups {
		members, err := m.dir.Members(ctx, g.Group)
		if err != nil {
			m.onError(fmt.Errorf("pam: members of %s: %w", g.Group, err))
			continue
		}
		for _, who := range members {
			if c, err := ident.Canonical(who); err == nil && !seen[c] {
				seen[c] = true
				to = append(to, c)
			}
		}
	}
	return to
}
