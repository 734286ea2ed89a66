package pam

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/benbjohnson/clock"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/zerostanding/pam/internal/rules"
)

// instrumentationName names the meter and the tracer of the engine.
const instrumentationName = "github.com/zerostanding/pam"

// The attribute keys of the engine's metrics and spans. Metric attribute
// values are bounded: outcomes, event types, sink and notifier names the
// host chose. Spans also carry the task and request and policy IDs.
// Neither ever carries an identity, a reason or an operation's parameter.
const (
	attrOutcome  = attribute.Key("pam.outcome")
	attrReason   = attribute.Key("pam.reason")
	attrTask     = attribute.Key("pam.task")
	attrPolicies = attribute.Key("pam.policy_ids")
	attrEvent    = attribute.Key("pam.event")
	attrSink     = attribute.Key("pam.sink")
	attrRequired = attribute.Key("pam.sink.required")
	attrNotifier = attribute.Key("pam.notifier")
	attrMessage  = attribute.Key("pam.message.type")
	attrResult   = attribute.Key("pam.result")
	attrRequest  = attribute.Key("pam.request_id")
	attrState    = attribute.Key("pam.request.state")
)

// GroupCommitter is an optional interface of a Store that writes
// concurrent commits in one transaction (group commit), as store/sqlite
// and store/postgres do. A Manager with a MeterProvider reports it as
// pam.store.group_commit.transactions and .commits, whose ratio is the
// mean group size; the store needs no metrics library of its own.
type GroupCommitter interface {
	// GroupCommits returns the transactions written so far and the
	// commits they held, since the store was opened.
	GroupCommits() (transactions, commits int64)
}

// Counter is an optional interface of a Store that counts what
// operators watch, for metrics; store/memory, store/sqlite and
// store/postgres implement it. A Manager with a MeterProvider reads it
// at each collection (pam.requests.pending, pam.outbox.pending,
// pam.outbox.parked): one count query each on the SQL stores, so scrape
// at a pace the store can bear.
type Counter interface {
	Counts(ctx context.Context) (Counts, error)
}

// Counts are a store's counts, as recorded.
type Counts struct {
	// PendingRequests are the requests recorded Pending (one whose time
	// ran out counts until Sweep records its expiry).
	PendingRequests int64
	// PendingMessages wait in the outbox; ParkedMessages were given up
	// after their last attempt (MessageFailed).
	PendingMessages, ParkedMessages int64
}

// telemetry is the engine's operational output: logs, metrics and spans
// through the providers the host passed in Options (no-op ones
// otherwise). Nothing here decides anything.
type telemetry struct {
	log     *slog.Logger
	onError func(error) // Options.OnError
	tracer  trace.Tracer
	noTrace bool // no TracerProvider: no span is started
	metrics bool // a MeterProvider: time what is measured

	guardDecisions    metric.Int64Counter
	guardDuration     metric.Float64Histogram
	commitDuration    metric.Float64Histogram
	conditionDuration metric.Float64Histogram
	transitions       metric.Int64Counter
	deliveries        metric.Int64Counter
	sweeps            metric.Int64Counter
	checkpoints       metric.Int64Counter
	sinkWrites        metric.Float64Histogram
	registration      metric.Registration
}

// newTelemetry makes the instruments. A provider that fails to make one
// is an error of New: a host that asked for metrics gets all of them.
func newTelemetry(opts *Options) (*telemetry, error) {
	t := &telemetry{log: opts.Logger, onError: opts.OnError}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	if t.onError == nil {
		t.onError = func(error) {}
	}
	tp := opts.TracerProvider
	if tp == nil {
		tp, t.noTrace = tracenoop.NewTracerProvider(), true
	}
	t.tracer = tp.Tracer(instrumentationName)
	mp := opts.MeterProvider
	if t.metrics = mp != nil; !t.metrics {
		mp = metricnoop.NewMeterProvider()
	}
	meter := mp.Meter(instrumentationName)
	var errs []error
	must := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var err error
	t.guardDecisions, err = meter.Int64Counter("pam.guard.decisions", metric.WithUnit("{decision}"),
		metric.WithDescription("Guard decisions, by outcome (allowed, denied, error) and reason (the audit outcome)."))
	must(err)
	t.guardDuration, err = meter.Float64Histogram("pam.guard.duration", metric.WithUnit("s"),
		metric.WithDescription("Time Guard takes to decide: until fn starts, or until Guard refuses."),
		metric.WithExplicitBucketBoundaries(0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
	must(err)
	t.commitDuration, err = meter.Float64Histogram("pam.store.commit.duration", metric.WithUnit("s"),
		metric.WithDescription("Time a commit to the store takes, group commit included."),
		metric.WithExplicitBucketBoundaries(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
	must(err)
	t.conditionDuration, err = meter.Float64Histogram("pam.condition.duration", metric.WithUnit("s"),
		metric.WithDescription("Time a policy condition takes in Guard and Check, by pam.condition.memo (hit: the memoised outcome, miss: OPA evaluated it)."),
		metric.WithExplicitBucketBoundaries(0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1))
	must(err)
	t.transitions, err = meter.Int64Counter("pam.request.transitions", metric.WithUnit("{transition}"),
		metric.WithDescription("Committed request transitions, by event type (request.submitted, request.approved, request.expired, ...)."))
	must(err)
	t.deliveries, err = meter.Int64Counter("pam.outbox.deliveries", metric.WithUnit("{delivery}"),
		metric.WithDescription("Notification delivery attempts, by notifier and result (delivered, retry, failed)."))
	must(err)
	t.sweeps, err = meter.Int64Counter("pam.sweeps", metric.WithUnit("{sweep}"),
		metric.WithDescription("Sweeps, by result (ok, error)."))
	must(err)
	t.checkpoints, err = meter.Int64Counter("pam.checkpoints", metric.WithUnit("{checkpoint}"),
		metric.WithDescription("Checkpoints made, by result (ok, error)."))
	must(err)
	t.sinkWrites, err = meter.Float64Histogram("pam.audit.sink.write.duration", metric.WithUnit("s"),
		metric.WithDescription("Time an audit sink takes to write a batch, by sink and result."))
	must(err)
	if len(errs) > 0 {
		return nil, fmt.Errorf("pam: Options.MeterProvider: %w", errs[0])
	}
	return t, nil
}

// observe registers the observable instruments that read m's state at
// each collection.
func (t *telemetry) observe(mp metric.MeterProvider, m *Manager) error {
	if mp == nil {
		return nil
	}
	meter := mp.Meter(instrumentationName)
	healthy, err := meter.Int64ObservableGauge("pam.audit.sink.healthy", metric.WithUnit("1"),
		metric.WithDescription("1 while the audit sink holds the trail, 0 while it is failing; a failing required sink makes Guard deny."))
	if err != nil {
		return err
	}
	lag, err := meter.Int64ObservableGauge("pam.audit.sink.lag", metric.WithUnit("{event}"),
		metric.WithDescription("Events committed through this Manager that the audit sink does not hold yet."))
	if err != nil {
		return err
	}
	delivered, err := meter.Int64ObservableCounter("pam.audit.sink.delivered", metric.WithUnit("{event}"),
		metric.WithDescription("Events written to the audit sink."))
	if err != nil {
		return err
	}
	failures, err := meter.Int64ObservableCounter("pam.audit.sink.failures", metric.WithUnit("{failure}"),
		metric.WithDescription("Failed writes to the audit sink and failed reads of the trail for it."))
	if err != nil {
		return err
	}
	oldest, err := meter.Float64ObservableGauge("pam.outbox.oldest_pending.age", metric.WithUnit("s"),
		metric.WithDescription("How long the oldest pending notification has waited (0: none pending); read from the store at each collection."))
	if err != nil {
		return err
	}
	insts := []metric.Observable{healthy, lag, delivered, failures, oldest}
	counter, counts := m.store.(Counter)
	var pending, outboxPending, parked metric.Int64ObservableGauge
	if counts {
		if pending, err = meter.Int64ObservableGauge("pam.requests.pending", metric.WithUnit("{request}"),
			metric.WithDescription("Requests recorded pending: waiting for approvers (read from the store at each collection).")); err != nil {
			return err
		}
		if outboxPending, err = meter.Int64ObservableGauge("pam.outbox.pending", metric.WithUnit("{message}"),
			metric.WithDescription("Notifications waiting in the outbox (read from the store at each collection).")); err != nil {
			return err
		}
		if parked, err = meter.Int64ObservableGauge("pam.outbox.parked", metric.WithUnit("{message}"),
			metric.WithDescription("Notifications given up after their last attempt: nobody was told (read from the store at each collection).")); err != nil {
			return err
		}
		insts = append(insts, pending, outboxPending, parked)
	}
	group, grouped := m.store.(GroupCommitter)
	var groupTxs, groupCommits metric.Int64ObservableCounter
	if grouped {
		if groupTxs, err = meter.Int64ObservableCounter("pam.store.group_commit.transactions", metric.WithUnit("{transaction}"),
			metric.WithDescription("Transactions the store's group commit wrote (every Manager's on the store, in this process).")); err != nil {
			return err
		}
		if groupCommits, err = meter.Int64ObservableCounter("pam.store.group_commit.commits", metric.WithUnit("{commit}"),
			metric.WithDescription("Commits those transactions held: commits / transactions is the mean group size.")); err != nil {
			return err
		}
		insts = append(insts, groupTxs, groupCommits)
	}
	t.registration, err = meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		if grouped {
			txs, commits := group.GroupCommits()
			o.ObserveInt64(groupTxs, txs)
			o.ObserveInt64(groupCommits, commits)
		}
		if counts {
			if c, err := counter.Counts(ctx); err != nil {
				t.log.Warn("pam: metrics: count the requests and the outbox", "error", err)
			} else {
				o.ObserveInt64(pending, c.PendingRequests)
				o.ObserveInt64(outboxPending, c.PendingMessages)
				o.ObserveInt64(parked, c.ParkedMessages)
			}
		}
		if len(m.outbox.notifiers) > 0 {
			age, err := m.OldestPending(ctx)
			if err != nil {
				t.log.Warn("pam: metrics: read the outbox", "error", err)
			} else {
				o.ObserveFloat64(oldest, age.Seconds())
			}
		}
		head := m.feed.head.Load()
		for _, w := range m.feed.sinks {
			st := w.status()
			attrs := metric.WithAttributes(attrSink.String(st.Name), attrRequired.Bool(st.Required))
			h := int64(0)
			if st.Healthy {
				h = 1
			}
			o.ObserveInt64(healthy, h, attrs)
			o.ObserveInt64(lag, max(head-st.Cursor, 0), attrs)
			o.ObserveInt64(delivered, st.Delivered, attrs)
			o.ObserveInt64(failures, st.Failures, attrs)
		}
		return nil
	}, insts...)
	return err
}

// report tells the log and Options.OnError about an error that does not
// fail the operation that met it.
func (t *telemetry) report(err error) {
	t.log.Warn("pam: error", "error", err)
	t.onError(err)
}

// start starts a span named name under ctx's span. With no
// TracerProvider it returns ctx and ctx's span, at no cost.
func (t *telemetry) start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if t.noTrace {
		return ctx, noSpan
	}
	return t.tracer.Start(ctx, name, trace.WithAttributes(attrs...))
}

// noSpan is the span of a Manager without a TracerProvider.
var noSpan = trace.SpanFromContext(context.Background())

// end ends span, recording err as its status.
func end(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		span.SetStatus(codes.Error, errorKind(err))
	}
	span.End()
}

// sentinels are the errors a span's status names.
var sentinels = []error{ErrInvalid, ErrNotFound, ErrConflict, ErrExists, ErrNoActor, ErrForbidden, ErrAlreadyDecided,
	ErrWrongState, ErrNoPolicy, ErrAmbiguous, ErrLimit, ErrDurationTooLong, ErrRejected, ErrNotApproved, ErrAudit,
	ErrAuditIncomplete, ErrGrantEnded, ErrTampered}

// errorKind names err by the sentinel it wraps, never by its text (which
// may carry identities, reasons or parameters).
func errorKind(err error) string {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	return "error"
}

// resultOK and resultError are the result attribute, made once.
var (
	resultOK    = metric.WithAttributes(attrResult.String("ok"))
	resultError = metric.WithAttributes(attrResult.String("error"))
)

// resultName is "ok" or "error".
func resultName(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

// result is "ok" or "error", as a metric attribute.
func result(err error) metric.MeasurementOption {
	if err != nil {
		return resultError
	}
	return resultOK
}

// guardObs is what one Guard tells its span and metrics: the decision
// that stood, and when it was made. A nil *guardObs (no telemetry) takes
// no notes.
type guardObs struct {
	began, decided time.Time
	policies       []PolicyCheck // the decision's (not the result itself, which would then escape)
	allowed        bool
	reason         Outcome // "" when Guard returned before deciding
}

// mark notes the decision: allowed (fn runs) or not, and the outcome
// that says why.
func (d *guardObs) mark(c clock.Clock, res *CheckResult, allowed bool, reason Outcome) {
	if d == nil {
		return
	}
	d.decided, d.allowed, d.reason = c.Now(), allowed, reason
	if res != nil {
		d.policies = res.Policies
	}
}

// guarded records one Guard: the decision counter, the latency until fn
// started or Guard refused, and the span's attributes.
func (t *telemetry) guarded(ctx context.Context, span trace.Span, d *guardObs, now time.Time, err error) {
	outcome, reason := "denied", string(d.reason)
	switch {
	case d.reason == "":
		outcome, reason = "error", "error"
	case d.allowed:
		outcome = "allowed"
	}
	if d.decided.IsZero() {
		d.decided = now
	}
	if t.metrics {
		attrs := metric.WithAttributes(attrOutcome.String(outcome), attrReason.String(reason))
		t.guardDecisions.Add(ctx, 1, attrs)
		t.guardDuration.Record(ctx, d.decided.Sub(d.began).Seconds(), attrs)
	}
	if span.IsRecording() {
		span.SetAttributes(attrOutcome.String(outcome), attrReason.String(reason))
		if len(d.policies) > 0 {
			var ids []string
			for _, pc := range d.policies {
				if pc.Covered || pc.Grant != "" {
					ids = append(ids, pc.PolicyID)
				}
			}
			if len(ids) > 0 {
				span.SetAttributes(attrPolicies.StringSlice(ids))
			}
		}
	}
	end(span, err)
}

// Whether a condition's outcome came from its memo, as an attribute.
var (
	memoHit  = metric.WithAttributes(attribute.String("pam.condition.memo", "hit"))
	memoMiss = metric.WithAttributes(attribute.String("pam.condition.memo", "miss"))
)

// evalCondition evaluates cond, timed when there are metrics.
func (m *Manager) evalCondition(ctx context.Context, cond *rules.Condition, in *rules.Input) (rules.Outcome, error) {
	if !m.tel.metrics {
		return cond.Eval(ctx, in)
	}
	began := m.clock.Now()
	out, hit, err := cond.EvalMemo(ctx, in)
	attrs := memoMiss
	if hit {
		attrs = memoHit
	}
	m.tel.conditionDuration.Record(ctx, m.clock.Since(began).Seconds(), attrs)
	return out, err
}
