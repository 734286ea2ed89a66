package pam

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/benbjohnson/clock"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/zerostanding/pam/internal/ident"
)

// DefaultAdminGroup is the admin group when Options.AdminGroup is empty.
const DefaultAdminGroup = "pam-admins"

// DefaultMaxPending is Options.MaxPending's default.
const DefaultMaxPending = 20

// Options configure a Manager. Every field is optional; the zero value,
// and a nil *Options, mean the documented defaults.
type Options struct {
	// Clock is the only time source of the engine. Default: the wall
	// clock. Tests pass clock.NewMock().
	Clock clock.Clock
	// Catalog seeds a store that holds no catalog yet: the first Manager
	// to use such a store writes it (audited as catalog.set). A store
	// that holds one keeps it, and every Manager decides on the stored
	// catalog; a different Options.Catalog is then reported to OnError and
	// ignored. Change the stored catalog with SetCatalog or Apply.
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
	// commits wake them at once. It is also how often a Manager with
	// guarded fns running re-reads their grants, to end the fns whose
	// grant another Manager revoked or cut (a store that is a
	// ChangeNotifier makes that immediate). Default: 1 second. Like the
	// timeouts
	// and the sinks' retry backoff, it runs on real time, not on Clock.
	AuditPollInterval time.Duration
	// CheckpointKey, when set, signs checkpoints (see Checkpoint).
	CheckpointKey ed25519.PrivateKey
	// CheckpointSinks keep checkpoints outside the store. With any, Run
	// makes a checkpoint every CheckpointInterval when the trail has
	// grown since the last one, and after every CheckpointEvery events.
	// The tail of the trail after the last checkpoint is what someone
	// who can write the database could cut undetected: these two bound
	// it. Manager.Verify checks the trail against the checkpoints of the
	// sinks that can read them back (CheckpointReader).
	CheckpointSinks []CheckpointSink
	// CheckpointInterval defaults to 5 minutes.
	CheckpointInterval time.Duration
	// CheckpointEvery, when above 0, also makes a checkpoint once the
	// trail has grown by this many events since the last one (noticed
	// when this Manager commits; other Managers' commits are noticed with
	// its next one, or at the interval).
	CheckpointEvery int
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
	// MaxPending bounds the pending requests one requester may have at a
	// time (Submit returns ErrLimit beyond it), so that no one can bury
	// the approvers. Default: 20; negative: no bound. Submissions racing
	// each other may pass it by the number that race.
	MaxPending int
	// RunEndGrace is how long after a guarded run's grant ends (after it
	// starts, for a system account's run, which has no grant) Sweep
	// waits for the run's end before it records the end itself, as
	// OutcomeEndedUnknown: the Manager that ran it stopped, or could not
	// reach the store all that time. A Manager's Sweep never does so for
	// the runs it is running itself; another Manager's does for an fn
	// that runs longer (fn's context ended with its grant; a system
	// account's run has none), and the fn's real end is then recorded,
	// when it comes, as guard.finished_late. Default: DefaultRunEndGrace.
	RunEndGrace time.Duration
	// SyncRunEnds makes Guard return only once the run's end
	// (guard.finished) is stored, or with ErrAuditIncomplete when it
	// could not be, at the cost of a durable commit of its own. By
	// default Guard returns as soon as fn has, and the end is recorded
	// within milliseconds: with the next Guard's start, which carries
	// the ends waiting then, or on its own; retried until it is stored,
	// and awaited by Close. A crash loses the ends not yet stored: Sweep
	// records them as OutcomeEndedUnknown (see RunEndGrace).
	SyncRunEnds bool
	// SweepInterval is how often Run records expiries. Default: 1 minute.
	SweepInterval time.Duration
	// NotifyTimeout bounds each call to a Notifier. Default: 30 seconds.
	NotifyTimeout time.Duration
	// OutboxLease is how long a message being delivered is reserved for
	// this Manager: if it dies mid-delivery, another Manager (or this one
	// restarted) takes the message over once the lease ends. Default:
	// NotifyTimeout plus 30 seconds; it must exceed NotifyTimeout.
	OutboxLease time.Duration
	// ConditionTimeout bounds each evaluation of a policy's Rego: a
	// condition (on every Guard and Check that reaches it), a request
	// rule and an auto-approval rule. Past it the evaluation is stopped
	// and counts as an error: the condition covers the operation, the
	// request rule rejects the submission, the auto-approval rule does not
	// approve; a guard event records that the condition ran out of time.
	// It runs on real time, not on Clock. Default:
	// DefaultConditionTimeout.
	ConditionTimeout time.Duration
	// ParamAudit says how operation parameters are recorded in the audit
	// trail where a policy does not say; by default they are redacted.
	ParamAudit ParamAudit
	// ParamHMACKey is the key of ParamHMAC. Required when any mode is
	// ParamHMAC; keep it out of the database.
	ParamHMACKey []byte
	// OnError receives errors that do not fail the operation that caused
	// them: a notifier or audit sink that failed, an automatic approver
	// that failed, a stored policy that no longer compiles. Each is also
	// logged to Logger.
	OnError func(error)
	// Logger receives the engine's operational log: everything OnError
	// gets (Warn), a required audit sink failing (Error: Guard denies
	// until it recovers), recoveries (Info), sweeps and checkpoints
	// (Debug). Records never carry operation parameters. Default:
	// discard.
	Logger *slog.Logger
	// MeterProvider receives the engine's metrics (see the README's
	// Observability section for the table): Guard decisions and
	// latency, request transitions, commit latency, audit sink health
	// and lag, outbox deliveries, sweeps and checkpoints. Attributes
	// are bounded: outcomes, event types, sink and notifier names; never
	// identities or parameters. Default: no metrics, at no cost.
	MeterProvider metric.MeterProvider
	// TracerProvider receives a span per Guard, per request transition,
	// per sweep and per notifier delivery and audit sink write, each a
	// child of the span in the ctx passed in. Spans carry the task, the
	// outcome and policy IDs, never parameter values. Default: no
	// spans, at no cost.
	TracerProvider trace.TracerProvider
}

// Manager is the engine: policies, requests, approvals and Guard. It is
// safe for concurrent use. Several Managers (in several processes) may
// share one Store; each sees the others' policy changes and revocations on
// its next call, and ends the guarded fns they affect (see Guard).
//
// A Manager is wiring: the rules live in the lifecycle (lifecycle.go) and
// Guard's decision (guard.go), and each concern with state of its own is
// a component in its own file with its own defaults: the policy cache,
// the audit feed, the outbox, the checkpointer.
type Manager struct {
	// What every Guard reads first.
	cache     *policyCache // policies and the catalog, as Guard reads them
	denyUncov bool
	observed  bool // a MeterProvider or a TracerProvider: Guard reports

	store     Store
	times     TimeSource  // the store, when it supplies the time
	reads     GuardReader // the store, when it reads Guard's facts at once
	clock     clock.Clock
	dir       Directory
	admins    string
	system    map[string]bool // canonical system accounts
	maxPend   int             // 0: no bound
	approvers []Approver
	sweep     time.Duration
	onError   func(error) // telemetry.report: the log, then Options.OnError
	tel       *telemetry  // logs, metrics, spans

	feed     *auditFeed     // the trail to the audit sinks
	outbox   *outbox        // notifiers and the outbox
	ckpt     *checkpointer  // signed checkpoints to the checkpoint sinks
	runs     *runs          // the guarded fns running, ended with their grants
	ends     *runEnds       // run IDs, and the run ends still to record
	syncEnds bool           // Options.SyncRunEnds
	params   *paramRecorder // operation parameters in the trail
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
	if opts.SweepInterval < 0 {
		return nil, invalid("Options.SweepInterval", "must not be negative")
	}
	m := &Manager{store: store, clock: opts.Clock, dir: dir, admins: opts.AdminGroup, denyUncov: opts.DenyUncovered,
		approvers: slices.Clone(opts.Approvers), sweep: opts.SweepInterval}
	var err error
	if m.tel, err = newTelemetry(opts); err != nil {
		return nil, err
	}
	m.onError = m.tel.report
	m.observed = m.tel.metrics || !m.tel.noTrace
	m.times, _ = store.(TimeSource)
	m.reads, _ = store.(GuardReader)
	if m.clock == nil {
		m.clock = clock.New()
	}
	if m.admins == "" {
		m.admins = DefaultAdminGroup
	}
	if err := checkName("Options.AdminGroup", m.admins); err != nil {
		return nil, err
	}
	if m.sweep == 0 {
		m.sweep = time.Minute
	}
	switch m.maxPend = opts.MaxPending; {
	case m.maxPend == 0:
		m.maxPend = DefaultMaxPending
	case m.maxPend < 0:
		m.maxPend = 0
	}
	if _, mock := opts.Clock.(*clock.Mock); mock && m.times != nil {
		// Correct in production, a trap in tests: say it once.
		m.onError(errors.New("pam: Options.Clock is a mock, but the store keeps its own time (a TimeSource such as PostgreSQL): expiries and windows follow the store's clock, not the mock"))
	}
	m.system = make(map[string]bool, len(opts.SystemAccounts))
	for _, a := range opts.SystemAccounts {
		c, err := CanonicalIdentity(a)
		if err != nil {
			return nil, fmt.Errorf("Options.SystemAccounts: %w", err)
		}
		m.system[c] = true
	}
	if m.params, err = newParamRecorder(opts); err != nil {
		return nil, err
	}
	if m.ckpt, err = newCheckpointer(opts); err != nil {
		return nil, err
	}
	if m.outbox, err = newOutbox(store, opts, m.newID("mgr")); err != nil {
		return nil, err
	}
	if m.feed, err = newAuditFeed(store, opts, m.onError, m.recordOperational); err != nil {
		return nil, err
	}
	m.feed.tel = m.tel
	if m.cache, err = newPolicyCache(store, m.onError, &opts.Catalog, opts.ConditionTimeout); err != nil {
		return nil, err
	}
	m.runs = newRuns(store, m.cache, m.feed.poll, m.onError)
	if opts.RunEndGrace < 0 {
		return nil, invalid("Options.RunEndGrace", "must not be negative")
	}
	m.ends = newRunEnds(opts.RunEndGrace, m.feed.poll, m.feed.timeout, m.onError)
	m.ends.store, m.ends.batch = m.storeEnd, m.commitEnds
	m.syncEnds = opts.SyncRunEnds
	if !opts.Catalog.empty() {
		seed := opts.Catalog.Clone()
		m.cache.seed, m.cache.seedCat = m.seedCatalog(seed), &seed
	}
	if err := m.tel.observe(opts.MeterProvider, m); err != nil {
		return nil, fmt.Errorf("pam: Options.MeterProvider: %w", err)
	}
	m.feed.start()
	return m, nil
}

// actorKey carries the acting identity in a context.
type actorKey struct{}

type actor struct {
	id  string // canonical
	err error
	// exact: the spelling given differs from the canonical form at most
	// in ASCII case. Only exact spellings act as an admin or a system
	// account: full-width letters, compatibility characters such as the
	// Kelvin sign, and non-ASCII case folding all reach a privileged
	// identity's canonical form, and a privileged role must not be
	// reachable by a lookalike.
	exact bool
}

// reservedPrefix starts the names of automatic reviewers in decisions
// ("auto:policy", "auto:rule", "auto:NAME"); no person may act under it.
const reservedPrefix = "auto:"

// WithActor returns a context that acts as id (any spelling; it is
// canonicalised here, once). Every engine call takes its actor from the
// context; a context without one, or with an identity that does not
// canonicalise or starts with "auto:" (reserved for automatic reviewers),
// is denied with ErrNoActor.
func WithActor(ctx context.Context, id string) context.Context {
	c, err := ident.Canonical(id)
	if err == nil && strings.HasPrefix(c, reservedPrefix) {
		err = fmt.Errorf("%q is reserved for automatic reviewers", reservedPrefix)
	}
	return context.WithValue(ctx, actorKey{}, &actor{id: c, err: err, exact: err == nil && asciiLower(id) == c})
}

// asciiLower lower-cases the ASCII letters of s and nothing else.
func asciiLower(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

// exactActor reports whether ctx's actor was spelt exactly (see actor).
func exactActor(ctx context.Context) bool {
	a, ok := ctx.Value(actorKey{}).(*actor)
	return ok && a.exact
}

// isAdmin reports whether ctx's actor, a, is in the admin group: an exact
// spelling of a member's identity.
func (m *Manager) isAdmin(ctx context.Context, a string) (bool, error) {
	if !exactActor(ctx) {
		return false, nil
	}
	return m.isMember(ctx, m.admins, a)
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
	ok, err := m.isAdmin(ctx, a)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("%w: %s is not in the admin group %s (or not spelt as its member is)", ErrForbidden, a, m.admins)
	}
	return a, nil
}

// Run delivers the outbox (see Deliver), sweeps every
// Options.SweepInterval and, with checkpoint sinks,
// makes a checkpoint every Options.CheckpointInterval when the trail has
// grown, until ctx is done; it returns ctx's error. Errors go to
// Options.OnError.
func (m *Manager) Run(ctx context.Context) error {
	if len(m.outbox.notifiers) > 0 {
		done := make(chan struct{})
		go func() { defer close(done); m.dispatch(ctx) }()
		defer func() { <-done }()
	}
	t := m.clock.Ticker(m.sweep)
	defer t.Stop()
	var ckpt <-chan time.Time
	var ckptWake <-chan struct{}
	if len(m.ckpt.sinks) > 0 {
		c := m.clock.Ticker(m.ckpt.every)
		defer c.Stop()
		ckpt, ckptWake = c.C, m.ckpt.wake
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
			m.checkpointIfGrown(ctx, 1)
			goto wait
		case <-ckptWake:
			m.checkpointIfGrown(ctx, int64(m.ckpt.events))
			goto wait
		}
	}
}

// ---- The commit path ----

// commit writes tx, with the actor detail of ctx (WithActorDetail). It waits until the audit feed knows where the trail
// stood when the Manager started, so that no event this Manager writes
// can fall before the sinks' starting point.
func (m *Manager) commit(ctx context.Context, tx *Tx) error {
	if err := addActorDetail(ctx, tx); err != nil {
		return err
	}
	if err := m.feed.awaitStart(ctx); err != nil {
		return err
	}
	var began time.Time
	if m.tel.metrics {
		began = m.clock.Now()
	}
	err := m.store.Commit(ctx, tx)
	if m.tel.metrics {
		m.tel.commitDuration.Record(ctx, m.clock.Since(began).Seconds(), result(err))
	}
	if err != nil {
		return err
	}
	m.runs.committed(tx)
	return nil
}

// after wakes the sink workers and the outbox dispatcher for what a
// request transition committed.
func (m *Manager) after(tx *Tx) {
	m.published(tx.Events)
	if len(tx.Messages) > 0 {
		m.outbox.wakeUp()
	}
}

// published tells the audit feed and the checkpointer that events were
// committed.
func (m *Manager) published(events []Event) {
	for i := range events {
		if t := events[i].Type; strings.HasPrefix(string(t), "request.") {
			m.tel.transitions.Add(context.Background(), 1, metric.WithAttributes(attrEvent.String(string(t))))
		}
	}
	m.feed.published(events)
	m.ckpt.published(events)
}

// checkpointIfGrown makes a checkpoint when the trail has grown by at
// least n events since the last one.
func (m *Manager) checkpointIfGrown(ctx context.Context, n int64) {
	if headSeq(ctx, m.store)-m.ckpt.last.Load() < max(n, 1) {
		return
	}
	if _, err := m.Checkpoint(ctx); err != nil && ctx.Err() == nil {
		m.onError(err)
	}
}

// recordOperational commits an event about the engine's own operation
// (a sink's outage, a notification given up), stamped now.
func (m *Manager) recordOperational(ctx context.Context, e Event) {
	now, err := m.now(ctx)
	if err != nil {
		now = m.clock.Now()
	}
	e.Time = now
	tx := &Tx{Events: []Event{e}}
	if err := m.commit(ctx, tx); err != nil {
		m.onError(fmt.Errorf("pam: record %s: %w", e.Type, err))
		return
	}
	m.published(tx.Events)
}

// Close stops the audit sink workers once they have delivered the trail
// up to its head, or when ctx is done, whichever comes first, and stops
// the goroutine that watches the grants of running guarded fns (their
// contexts still end at their grants' end, or with a change this Manager
// commits). It returns an error naming the sinks left behind. The
// Manager must not be used after Close.
func (m *Manager) Close(ctx context.Context) error {
	m.cache.close()
	if m.tel.registration != nil {
		m.tel.registration.Unregister()
	}
	return errors.Join(m.runs.close(ctx), m.ends.close(ctx), m.feed.close(ctx))
}

// Ping reads the store's policy revision: the smallest read that proves
// the store answers. A readiness probe calls it with a deadline.
func (m *Manager) Ping(ctx context.Context) error {
	if _, err := m.store.PolicyRevision(ctx); err != nil {
		return fmt.Errorf("pam: store: %w", err)
	}
	return nil
}
