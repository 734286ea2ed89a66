package pam

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// SinkConfig attaches an AuditSink to a Manager.
//
// Each sink is fed from the store, not from memory: a worker follows the
// trail from a cursor and writes every event past it, in sequence order,
// in batches. So a sink that is down for an hour, an event whose commit
// reported an error after it had in fact been stored, and events written
// by other Managers sharing the store all reach the sink; nothing is
// queued in memory and nothing is dropped. The cursor starts at the
// sink's own resume point when it implements SinkResumer, and otherwise
// at the trail's head when the Manager starts. With several Managers on
// one store, each delivers the whole trail to its own sinks: receivers
// shared by several replicas should drop events whose Seq they have.
type SinkConfig struct {
	// Name identifies the sink in SinkStatus, errors and sink.failed
	// events. Default: "sink" and its index.
	Name string
	Sink AuditSink
	// Required makes the sink part of fail-closed audit, as Vault's audit
	// devices are: Guard runs an operation only after its start event
	// reached every required sink, within Options.AuditTimeout, and denies
	// at once while a required sink is failing. Requests, decisions and
	// policy changes are still committed to the store while it is down;
	// they reach the sink when it recovers. A best-effort sink (the
	// default) never slows or blocks anything.
	Required bool
	// MinBackoff and MaxBackoff bound the wait between retries after a
	// failed write (doubling, with jitter). Defaults: 200ms and 30s.
	MinBackoff, MaxBackoff time.Duration
}

// SinkResumer is an optional interface of an AuditSink that knows the
// last event it holds (a file sink reads its last line), so that delivery
// resumes after it when the process restarts.
type SinkResumer interface {
	// LastSeq returns the Seq of the last event the sink holds, 0 when it
	// holds none.
	LastSeq(ctx context.Context) (int64, error)
}

// SinkStatus reports a sink's delivery.
type SinkStatus struct {
	Name     string `json:"name"`
	Required bool   `json:"required"`
	// Healthy is false from a failed write, or a failed read of the
	// trail, until the sink holds the trail again.
	Healthy bool `json:"healthy"`
	// Cursor is the Seq of the last event delivered.
	Cursor int64 `json:"cursor"`
	// Delivered counts events written; Failures counts failed writes
	// and failed reads of the trail.
	Delivered int64  `json:"delivered"`
	Failures  int64  `json:"failures"`
	LastError string `json:"last_error,omitempty"`
}

// auditFeed delivers the committed trail to the audit sinks, one worker
// each, and tells Guard whether the required ones hold an event.
type auditFeed struct {
	store   Store
	tel     *telemetry
	onError func(error)
	// record commits a sink.failed or sink.recovered event through the
	// Manager's commit path.
	record   func(ctx context.Context, e Event)
	sinks    []*sinkWorker
	required []*sinkWorker
	timeout  time.Duration // Options.AuditTimeout
	poll     time.Duration // Options.AuditPollInterval

	startSeq  int64         // the head when the feed started
	head      atomic.Int64  // the highest Seq this Manager committed (sink lag)
	ready     chan struct{} // closed once startSeq is read; nil without sinks
	kill      context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// newAuditFeed validates the sink options and applies their defaults.
func newAuditFeed(store Store, opts *Options, onError func(error), record func(context.Context, Event)) (*auditFeed, error) {
	if opts.AuditTimeout < 0 || opts.AuditPollInterval < 0 {
		return nil, invalid("Options", "AuditTimeout and AuditPollInterval must not be negative")
	}
	f := &auditFeed{store: store, onError: onError, record: record, timeout: opts.AuditTimeout, poll: opts.AuditPollInterval}
	if f.timeout == 0 {
		f.timeout = 5 * time.Second
	}
	if f.poll == 0 {
		f.poll = time.Second
	}
	for i, c := range opts.AuditSinks {
		w, err := newSinkWorker(f, i, c)
		if err != nil {
			return nil, err
		}
		f.sinks = append(f.sinks, w)
		if w.required {
			f.required = append(f.required, w)
		}
	}
	return f, nil
}

// sinkBatch bounds the events of one Write.
const sinkBatch = 500

type sinkWorker struct {
	feed     *auditFeed
	name     string
	sink     AuditSink
	required bool
	min, max time.Duration
	wake     chan struct{} // a commit or Close happened

	mu          sync.Mutex
	ready       bool  // cursor initialised
	cursor      int64 // last Seq delivered
	healthy     bool
	lastErr     error
	readFailing bool          // the last failure was a read of the trail
	changed     chan struct{} // closed and replaced when the fields above change
	delivered   atomic.Int64
	failures    atomic.Int64
}

func newSinkWorker(f *auditFeed, i int, c SinkConfig) (*sinkWorker, error) {
	if c.Sink == nil {
		return nil, invalid(fmt.Sprintf("Options.AuditSinks[%d].Sink", i), "must not be nil")
	}
	if c.MinBackoff < 0 || c.MaxBackoff < 0 {
		return nil, invalid(fmt.Sprintf("Options.AuditSinks[%d]", i), "backoffs must not be negative")
	}
	w := &sinkWorker{feed: f, name: c.Name, sink: c.Sink, required: c.Required, min: c.MinBackoff, max: c.MaxBackoff,
		wake: make(chan struct{}, 1), healthy: true, changed: make(chan struct{})}
	if w.name == "" {
		w.name = fmt.Sprintf("sink%d", i)
	} else if err := checkName(fmt.Sprintf("Options.AuditSinks[%d].Name", i), w.name); err != nil {
		return nil, err
	}
	if w.min == 0 {
		w.min = 200 * time.Millisecond
	}
	if w.max == 0 {
		w.max = 30 * time.Second
	}
	w.max = max(w.max, w.min)
	return w, nil
}

// nudge wakes the worker without blocking.
func (w *sinkWorker) nudge() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// update changes the worker's state under its lock and wakes waiters.
func (w *sinkWorker) update(f func()) {
	w.mu.Lock()
	f()
	close(w.changed)
	w.changed = make(chan struct{})
	w.mu.Unlock()
}

// run delivers until ctx is done.
func (w *sinkWorker) run(ctx context.Context) {
	f := w.feed
	// Polling and retries are I/O pacing, like timeouts: they run on real
	// time, not on Options.Clock, which is the time decisions are made at.
	poll := time.NewTicker(f.poll)
	defer poll.Stop()
	backoff := w.min
	for ctx.Err() == nil {
		events, err := w.next(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			// The sink cannot get the trail: as failing as a sink that
			// cannot take it.
			err = fmt.Errorf("pam: audit sink %s: read the trail: %w", w.name, err)
			w.fail(ctx, err, true)
		case len(events) == 0:
			// Read again after a failed read, with nothing to write: the
			// sink holds the trail.
			w.mu.Lock()
			recovered := w.readFailing
			w.mu.Unlock()
			if recovered {
				w.update(func() { w.healthy, w.lastErr, w.readFailing = true, nil, false })
				f.recordSink(ctx, EventSinkRecovered, w, nil)
			}
		default:
			if err = w.write(ctx, events); ctx.Err() != nil {
				return
			}
			if err == nil {
				backoff = w.min
				last := events[len(events)-1].Seq
				w.delivered.Add(int64(len(events)))
				w.mu.Lock()
				recovered := !w.healthy
				w.mu.Unlock()
				if recovered {
					// Recorded before the cursor moves: a Close that
					// finds every sink at the head finds this event
					// among what they must hold.
					f.recordSink(ctx, EventSinkRecovered, w, nil)
				}
				w.update(func() { w.cursor, w.healthy, w.lastErr, w.readFailing = last, true, nil, false })
				continue
			}
			w.fail(ctx, fmt.Errorf("pam: audit sink %s, events %d..%d: %w", w.name, events[0].Seq, last(events), err), false)
		}
		if err != nil {
			// Jitter spreads the retries of many replicas.
			wait := backoff/2 + rand.N(backoff/2+1)
			backoff = min(2*backoff, w.max)
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			continue
		}
		select {
		case <-ctx.Done():
		case <-w.wake:
		case <-poll.C:
		}
	}
}

func last(events []Event) int64 { return events[len(events)-1].Seq }

// fail marks the worker failing with err, which a read of the trail
// (read) or a write to the sink returned, and records the outage in the
// trail when it begins. A failing required sink makes Guard deny at once.
func (w *sinkWorker) fail(ctx context.Context, err error, read bool) {
	w.failures.Add(1)
	wasHealthy := false
	w.update(func() { wasHealthy, w.healthy, w.lastErr, w.readFailing = w.healthy, false, err, read })
	w.feed.onError(err)
	if wasHealthy {
		if w.required {
			w.feed.tel.log.Error("pam: a required audit sink is failing: Guard denies every operation until it recovers", "sink", w.name, "error", err)
		} else {
			w.feed.tel.log.Warn("pam: an audit sink is failing; it gets the trail when it recovers", "sink", w.name, "error", err)
		}
		w.feed.recordSink(ctx, EventSinkFailed, w, err)
	}
}

// write writes events to the sink within the audit timeout. A sink that
// ignores its context and does not return in time is marked failing at
// once, so that Guard denies without waiting for it, and the write is
// then awaited (the trail reaches a sink in order) until it returns or
// the feed stops.
func (w *sinkWorker) write(ctx context.Context, events []Event) error {
	f := w.feed
	sctx, span := f.tel.start(ctx, "pam.audit.sink.write", attrSink.String(w.name), attrRequired.Bool(w.required),
		attribute.Int("pam.events", len(events)))
	began := time.Now() // I/O pacing, like the timeout: real time
	err := w.writeTimed(sctx, events)
	if f.tel.metrics {
		f.tel.sinkWrites.Record(ctx, time.Since(began).Seconds(), metric.WithAttributes(attrSink.String(w.name), attrResult.String(resultName(err))))
	}
	end(span, err)
	return err
}

// writeTimed is write's work: the write, bounded by the audit timeout.
func (w *sinkWorker) writeTimed(ctx context.Context, events []Event) error {
	f := w.feed
	wctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.sink.Write(wctx, events) }()
	select {
	case err := <-done:
		return err
	case <-wctx.Done():
	}
	w.fail(ctx, fmt.Errorf("pam: audit sink %s, events %d..%d: the write did not return within %s", w.name, events[0].Seq, last(events), f.timeout), false)
	select {
	case err := <-done:
		if err == nil {
			return nil
		}
		return fmt.Errorf("%w (it returned late: %w)", context.DeadlineExceeded, err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// next returns the events after the cursor, initialising it first.
func (w *sinkWorker) next(ctx context.Context) ([]Event, error) {
	w.mu.Lock()
	ready, cursor := w.ready, w.cursor
	w.mu.Unlock()
	if !ready {
		var err error
		if cursor, err = w.start(ctx); err != nil {
			return nil, err
		}
		w.update(func() { w.ready, w.cursor = true, cursor })
	}
	return w.feed.store.Events(ctx, EventFilter{After: cursor, Limit: sinkBatch})
}

// start finds where delivery begins: after the sink's own last event, or
// at the head when the Manager started.
func (w *sinkWorker) start(ctx context.Context) (int64, error) {
	at := w.feed.startSeq
	if r, ok := w.sink.(SinkResumer); ok {
		rctx, cancel := context.WithTimeout(ctx, w.feed.timeout)
		seq, err := r.LastSeq(rctx)
		cancel()
		if err != nil {
			return 0, fmt.Errorf("resume point: %w", err)
		}
		at = min(at, seq)
	}
	return at, nil
}

// await waits until the sink has event seq, and fails at once when the
// sink is failing, or after the audit timeout.
func (w *sinkWorker) await(ctx context.Context, seq int64, timer <-chan time.Time) error {
	for {
		w.mu.Lock()
		cursor, healthy, lastErr, ch := w.cursor, w.healthy, w.lastErr, w.changed
		ready := w.ready
		w.mu.Unlock()
		switch {
		case ready && cursor >= seq:
			return nil
		case !healthy:
			return fmt.Errorf("required audit sink %s is failing: %w", w.name, lastErr)
		}
		select {
		case <-ch:
		case <-timer:
			return fmt.Errorf("required audit sink %s did not take event %d within %s", w.name, seq, w.feed.timeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (w *sinkWorker) status() SinkStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := SinkStatus{Name: w.name, Required: w.required, Healthy: w.healthy, Cursor: w.cursor,
		Delivered: w.delivered.Load(), Failures: w.failures.Load()}
	if w.lastErr != nil {
		s.LastError = w.lastErr.Error()
	}
	return s
}

// SinkStatus reports each audit sink's delivery, in Options.AuditSinks
// order.
func (m *Manager) SinkStatus() []SinkStatus {
	out := make([]SinkStatus, len(m.feed.sinks))
	for i, w := range m.feed.sinks {
		out[i] = w.status()
	}
	return out
}

// requiredDown returns an error when a required sink is failing.
func (f *auditFeed) requiredDown() error {
	for _, w := range f.required {
		w.mu.Lock()
		healthy, lastErr := w.healthy, w.lastErr
		w.mu.Unlock()
		if !healthy {
			return fmt.Errorf("required audit sink %s is failing: %w", w.name, lastErr)
		}
	}
	return nil
}

// awaitRequired waits until every required sink has event seq.
func (f *auditFeed) awaitRequired(ctx context.Context, seq int64) error {
	if len(f.required) == 0 {
		return nil
	}
	t := time.NewTimer(f.timeout)
	defer t.Stop()
	for _, w := range f.required {
		if err := w.await(ctx, seq, t.C); err != nil {
			return err
		}
	}
	return nil
}

// published tells the sink workers that events were committed.
func (f *auditFeed) published(events []Event) {
	if len(events) == 0 {
		return
	}
	for seq := last(events); ; {
		h := f.head.Load()
		if seq <= h || f.head.CompareAndSwap(h, seq) {
			break
		}
	}
	for _, w := range f.sinks {
		w.nudge()
	}
}

// awaitStart waits until the feed knows where the trail stood when it
// started, so that no event the Manager writes can fall before the
// sinks' starting point.
func (f *auditFeed) awaitStart(ctx context.Context) error {
	if f.ready == nil {
		return nil
	}
	select {
	case <-f.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// headSeq returns the Seq of the last event, 0 on an empty trail or an
// error.
func headSeq(ctx context.Context, s Store) int64 {
	ev, err := s.Events(ctx, EventFilter{Descending: true, Limit: 1})
	if err != nil || len(ev) == 0 {
		return 0
	}
	return ev[0].Seq
}

// recordSink records a sink's failure or recovery in the trail, once per
// episode, so the outage is part of the record the sink will receive.
func (f *auditFeed) recordSink(ctx context.Context, t EventType, w *sinkWorker, err error) {
	d := map[string]string{"sink": w.name}
	if err != nil {
		d["error"] = cleanText(err.Error())
	}
	outcome := OutcomeBestEffort
	if w.required {
		outcome = OutcomeRequired
	}
	if t == EventSinkRecovered {
		f.tel.log.Info("pam: audit sink recovered", "sink", w.name, "required", w.required)
	}
	f.record(ctx, Event{Type: t, Outcome: outcome, Detail: d})
}

// start reads the trail's head, which new sinks start after, and then
// starts one worker per sink. Commits wait for the head to be read.
func (f *auditFeed) start() {
	if len(f.sinks) == 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.kill, f.ready = cancel, make(chan struct{})
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for wait := 10 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
			head, err := f.store.Events(ctx, EventFilter{Descending: true, Limit: 1})
			if err == nil {
				if len(head) == 1 {
					f.startSeq = head[0].Seq
				}
				break
			}
			f.onError(fmt.Errorf("pam: audit sinks: read the trail's head: %w", err))
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		close(f.ready)
		for _, w := range f.sinks {
			f.wg.Go(func() { w.run(ctx) })
		}
	}()
}

// close stops the workers once they hold the trail's head, or when ctx is
// done: see Manager.Close.
func (f *auditFeed) close(ctx context.Context) error {
	if len(f.sinks) == 0 {
		return nil
	}
	var errs []error
	f.closeOnce.Do(func() {
		// Wait until every sink holds the head, and the head stays put:
		// a sink's recovery is itself an event the others must take.
		for ctx.Err() == nil {
			h := headSeq(ctx, f.store)
			caughtUp := true
			for _, w := range f.sinks {
				if w.status().Cursor < h {
					caughtUp = false
				}
			}
			if caughtUp {
				if headSeq(ctx, f.store) == h {
					break
				}
				continue
			}
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Millisecond):
			}
		}
		f.kill()
		// A sink that ignores its context may hold its worker: wait for
		// the workers no longer than ctx allows.
		stopped := make(chan struct{})
		go func() { f.wg.Wait(); close(stopped) }()
		select {
		case <-stopped:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("pam: audit sink workers still writing when Close's context ended: %w", ctx.Err()))
		}
		head := headSeq(context.WithoutCancel(ctx), f.store)
		for _, w := range f.sinks {
			if s := w.status(); s.Cursor < head {
				errs = append(errs, fmt.Errorf("pam: audit sink %s stopped at event %d of %d: %s", s.Name, s.Cursor, head, s.LastError))
			}
		}
	})
	return errors.Join(errs...)
}
