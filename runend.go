package pam

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"
)

// DefaultRunEndGrace is Options.RunEndGrace's default.
const DefaultRunEndGrace = time.Hour

// Every guarded run that starts gets exactly one guard.finished in the
// trail. Guard commits the start with the run open in the store (Tx.Open)
// and the end with it closed (Tx.Close), so a guard.finished is recorded
// once however often it is retried:
//
//   - fn ran and its end could not be recorded: the end is retried by
//     this Manager until it is (Close waits for it), and Guard returns
//     fn's result joined with ErrAuditIncomplete;
//   - the store's reply to the start was lost, so fn did not run: an end
//     with OutcomeNotRun is recorded if the start was stored (closing a
//     run that was never opened is ErrNotFound, and then there is nothing
//     to end);
//   - the Manager stopped before either: Sweep finds the run still open
//     once its grace has passed (OpenRun.Due) and records
//     OutcomeEndedUnknown in its place.
//
// An end does not wait for a commit of its own: Guard hands it to the
// Manager (unless Options.SyncRunEnds), and it rides on the commit of the
// next start this Manager makes, or goes alone after endDelay, with every
// other end waiting then. So a Guard costs one durable commit, its start;
// an end lost in a crash before it was stored is found by Sweep, as any
// abandoned run.
//
// When an end finds its run closed, the run's events say why: its own
// earlier commit landed although the reply was lost (nothing more to
// do), the start was never stored (nothing to end), or a Sweep took the
// run as ended unknown: then the real end is recorded as
// guard.finished_late, once.

// runEnds names runs, knows which of this Manager's runs are running,
// and retries the ends that could not be recorded.
type runEnds struct {
	prefix  string // unique to this Manager
	grace   time.Duration
	poll    time.Duration // the longest wait between retries
	timeout time.Duration // of each retried commit (Options.AuditTimeout)

	running [runShards]runIDShard

	ctx  context.Context // ended when Close gives up: retries stop
	stop context.CancelFunc

	mu      sync.Mutex
	fresh   []Event                              // ends never tried, oldest first
	pending map[string]Event                     // by run: ends tried that failed
	busy    bool                                 // a retry loop is running
	stopped bool                                 // closed: nothing is retried any more
	idle    chan struct{}                        // closed when the retry loop stops
	store   func(context.Context, Event) error   // one end, looked up when its run is closed
	batch   func(context.Context, []Event) error // ends never tried, in one commit
	onError func(error)
}

// endDelay is how long a deferred end waits for a start to ride on
// before it is committed on its own.
const endDelay = 10 * time.Millisecond

// maxRide bounds the ends one start's commit carries.
const maxRide = 16

type runIDShard struct {
	mu  sync.Mutex
	ids map[string]struct{}
	_   [40]byte
}

func newRunEnds(grace, poll, timeout time.Duration, onError func(error)) *runEnds {
	var b [8]byte
	rand.Read(b[:])
	if grace == 0 {
		grace = DefaultRunEndGrace
	}
	r := &runEnds{prefix: hex.EncodeToString(b[:]) + "-", grace: grace, poll: poll, timeout: timeout, pending: map[string]Event{}, onError: onError}
	for i := range r.running {
		r.running[i].ids = map[string]struct{}{}
	}
	r.ctx, r.stop = context.WithCancel(context.Background())
	return r
}

// newID returns a run ID unique among every Manager's: this Manager's
// random prefix and 64 random bits more, from the runtime's per-thread
// generator, so that Guards on many cores share no counter.
func (r *runEnds) newID() string {
	var b [40]byte
	return string(strconv.AppendUint(append(b[:0], r.prefix...), mrand.Uint64(), 36))
}

// due is when Sweep may take a run as ended unknown: the grace after
// the earliest grant it runs under ends, or after it starts when it runs
// under none.
func (r *runEnds) due(res *CheckResult) time.Time {
	if res.Deadline.IsZero() {
		return res.At.Add(r.grace)
	}
	return res.Deadline.Add(r.grace)
}

// shard picks run's shard of running by its last byte: the IDs' tails are
// random.
func (r *runEnds) shard(run string) *runIDShard {
	return &r.running[run[len(run)-1]%runShards]
}

// started and ended bracket a run whose start is stored: this Manager's
// Sweep leaves the runs between them alone, however long they run.
func (r *runEnds) started(run string) {
	sh := r.shard(run)
	sh.mu.Lock()
	sh.ids[run] = struct{}{}
	sh.mu.Unlock()
}

func (r *runEnds) ended(run string) {
	sh := r.shard(run)
	sh.mu.Lock()
	delete(sh.ids, run)
	sh.mu.Unlock()
}

// mine reports whether run is running here, or its end waits here to be
// recorded: a run stays "started" until its end is stored.
func (r *runEnds) mine(run string) bool {
	sh := r.shard(run)
	sh.mu.Lock()
	_, ok := sh.ids[run]
	sh.mu.Unlock()
	return ok
}

// deferEnd takes e to be recorded soon, and reports whether it did (not
// after Close).
func (r *runEnds) deferEnd(e Event) bool {
	return r.put(e, false, false)
}

// queue keeps e, which failed, to be recorded later, and starts the retry
// loop. After Close nothing is retried: the end is reported, and left to
// Sweep.
func (r *runEnds) queue(e Event) {
	r.put(e, true, true)
}

func (r *runEnds) put(e Event, tried, report bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		if report {
			r.onError(fmt.Errorf("%w: the end of run %s (%s by %s, %s) was not recorded, and the Manager is closed: Sweep will record it as %s", ErrAuditIncomplete, e.Run, e.Task, e.Actor, e.Outcome, OutcomeEndedUnknown))
			r.ended(e.Run)
		}
		return false
	}
	if tried {
		r.pending[e.Run] = e
	} else {
		r.fresh = append(r.fresh, e)
	}
	if !r.busy {
		r.busy, r.idle = true, make(chan struct{})
		go r.loop()
	}
	return true
}

// take removes and returns up to max of the ends never tried, the
// oldest, for a start's commit to carry.
func (r *runEnds) take(buf []Event, max int) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := min(len(r.fresh), max)
	if n == 0 {
		return buf
	}
	buf = append(buf, r.fresh[:n]...)
	rest := copy(r.fresh, r.fresh[n:])
	clear(r.fresh[rest:])
	r.fresh = r.fresh[:rest]
	return buf
}

// carried settles the ends a start's commit carried: recorded, or back
// to wait (tried when the commit may have stored them).
func (r *runEnds) carried(ends []Event, err error) {
	if err == nil {
		for i := range ends {
			r.ended(ends[i].Run)
		}
		return
	}
	tried := !errors.Is(err, ErrConflict)
	for _, e := range ends {
		r.put(e, tried, true)
	}
}

// loop records the waiting ends, backing off while the store fails,
// until none is left or Close gives up.
func (r *runEnds) loop() {
	wait := endDelay
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-r.ctx.Done():
		}
		done, failed := r.flush()
		if done {
			return
		}
		if failed {
			// Back off while the store fails.
			wait = min(2*wait, r.poll)
		} else {
			wait = endDelay
		}
		t.Reset(wait)
	}
}

// flush tries to record every waiting end once: those never tried
// together, in commits of up to maxBatch, the others one by one. It
// reports whether the loop is done (none is left, or Close gave up), and
// whether a try failed.
func (r *runEnds) flush() (done, failed bool) {
	const maxBatch = 256
	r.mu.Lock()
	fresh := slices.Clone(r.fresh)
	clear(r.fresh)
	r.fresh = r.fresh[:0]
	tried := make([]Event, 0, len(r.pending))
	for _, e := range r.pending {
		tried = append(tried, e)
	}
	clear(r.pending)
	r.mu.Unlock()
	slices.SortFunc(fresh, func(a, b Event) int { return a.Time.Compare(b.Time) })
	for len(fresh) > 0 {
		n := min(len(fresh), maxBatch)
		ctx, cancel := context.WithTimeout(r.ctx, r.timeout)
		err := r.batch(ctx, fresh[:n])
		cancel()
		if err == nil {
			for i := range fresh[:n] {
				r.ended(fresh[i].Run)
			}
		} else {
			// Each alone, through the lookups of store.
			tried = append(tried, fresh[:n]...)
		}
		fresh = fresh[n:]
	}
	for _, e := range tried {
		err := r.ctx.Err()
		if err == nil {
			ctx, cancel := context.WithTimeout(r.ctx, r.timeout)
			err = r.store(ctx, e)
			cancel()
		}
		if err != nil {
			failed = true
			r.mu.Lock()
			if _, newer := r.pending[e.Run]; !newer {
				r.pending[e.Run] = e
			}
			r.mu.Unlock()
			continue
		}
		r.ended(e.Run)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pending)+len(r.fresh) == 0 || r.ctx.Err() != nil {
		r.busy = false
		close(r.idle)
		return true, failed
	}
	return false, failed
}

// close waits for the queued ends to be recorded, no longer than ctx
// allows, then stops retrying: it returns an error wrapping
// ErrAuditIncomplete for the ends it could not record, which Sweep will
// record as ended unknown.
func (r *runEnds) close(ctx context.Context) error {
	r.mu.Lock()
	busy, idle := r.busy, r.idle
	r.mu.Unlock()
	var err error
	if busy {
		select {
		case <-idle:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
	// The loop stops at once: its commit's context ends with r.ctx (a
	// store that ignores it is waited for no longer than one commit's
	// timeout). What it was trying is back in pending then.
	r.stop()
	if busy {
		t := time.NewTimer(r.timeout)
		select {
		case <-idle:
		case <-t.C:
		}
		t.Stop()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	left := append(slices.Collect(maps.Values(r.pending)), r.fresh...)
	for _, e := range left {
		r.onError(fmt.Errorf("%w: the end of run %s (%s by %s, %s) was not recorded before Close's context ended", ErrAuditIncomplete, e.Run, e.Task, e.Actor, e.Outcome))
		r.ended(e.Run)
	}
	n := len(left)
	clear(r.pending)
	r.fresh = nil
	if n == 0 {
		return nil
	}
	return fmt.Errorf("%w: %d run ends were not recorded before Close's context ended: %w", ErrAuditIncomplete, n, err)
}

// runEnd returns the end event of the run that start began.
func runEnd(start Event, at time.Time, outcome Outcome, detail map[string]string) Event {
	return Event{Time: at, Type: EventGuardFinished, Actor: start.Actor, RequestID: start.RequestID, PolicyID: start.PolicyID,
		Task: start.Task, Run: start.Run, Outcome: outcome, Detail: detail}
}

// recordEnd records the end of a run whose start is stored. Deferred
// (the default), it hands the end over and returns nil; otherwise, or
// once the Manager is closed, it commits the end now, and if it cannot,
// queues it to be retried and returns why.
func (m *Manager) recordEnd(ctx context.Context, e Event) error {
	if !m.syncEnds && m.ends.deferEnd(e) {
		return nil
	}
	err := m.storeEnd(ctx, e)
	if err != nil {
		m.onError(fmt.Errorf("pam: record end of run %s (%s by %s), retrying: %w", e.Run, e.Task, e.Actor, err))
		m.ends.queue(e) // still "started": queued first
		return err
	}
	m.ends.ended(e.Run)
	return nil
}

// endUnstarted records that fn did not run under a start whose commit
// failed without saying whether it was stored: if it was, its run gets
// an end with OutcomeNotRun; if it was not, there is nothing to end. A
// store that cannot answer now is asked again later.
func (m *Manager) endUnstarted(ctx context.Context, start Event, at time.Time, cause error) {
	e := runEnd(start, at, OutcomeNotRun, map[string]string{"error": cleanText("the start's commit failed without saying whether it was stored: " + cause.Error())})
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.feed.timeout)
	defer cancel()
	if err := m.storeEnd(dctx, e); err != nil {
		m.ends.queue(e)
		return
	}
	m.ends.ended(e.Run)
}

// storeEnd records e, a run's end (guard.finished), once. The commit
// closes the run; a run found closed is looked up in the trail:
//
//   - its guard.finished is e's own, from an earlier try whose reply was
//     lost: done;
//   - it has no start: the start was never stored, so fn never ran and
//     there is nothing to end: done;
//   - a Sweep recorded it as ended unknown: e is recorded as
//     guard.finished_late, unless an earlier try did.
func (m *Manager) storeEnd(ctx context.Context, e Event) error {
	err := m.commitEnd(ctx, e)
	if !errors.Is(err, ErrNotFound) {
		return err
	}
	events, err := m.store.Events(ctx, EventFilter{Run: e.Run})
	if err != nil {
		return fmt.Errorf("pam: look up run %s, found closed: %w", e.Run, err)
	}
	swept := false
	for _, x := range events {
		switch {
		case x.Type == EventGuardFinishedLate:
			return nil // recorded late by an earlier try
		case x.Type == EventGuardFinished && x.Outcome == OutcomeEndedUnknown:
			swept = true
		case x.Type == EventGuardFinished:
			return nil // an earlier try landed
		}
	}
	if !swept {
		return nil // the start was never stored
	}
	e.Type = EventGuardFinishedLate
	return m.commitEnd(ctx, e)
}

// commitEnd commits an end event: a guard.finished closes its run (and
// fails with ErrNotFound when it is not open), a guard.finished_late
// does not.
func (m *Manager) commitEnd(ctx context.Context, e Event) error {
	_, err := m.record(ctx, e, nil, 0, time.Time{}, nil)
	return err
}

// commitEnds commits guard.finished events, each closing its run, in one
// commit: all or none.
func (m *Manager) commitEnds(ctx context.Context, ends []Event) error {
	tx := &Tx{Events: ends, Close: make([]string, len(ends))}
	for i := range ends {
		tx.Close[i] = ends[i].Run
	}
	if err := m.commit(ctx, tx); err != nil {
		return err
	}
	m.published(tx.Events)
	return nil
}

// endAbandoned records OutcomeEndedUnknown for the runs whose Due has
// passed without an end, and returns how many it recorded. The runs
// still running on this Manager, and those whose end it is retrying, are
// left to it.
func (m *Manager) endAbandoned(ctx context.Context, now time.Time) (int, error) {
	const batch = 500
	n, skipped := 0, 0
	for {
		// The runs skipped stay open: read past them.
		open, err := m.store.OpenRuns(ctx, now, skipped+batch)
		if err != nil {
			return n, err
		}
		more := len(open) == skipped+batch
		skipped = 0
		for _, r := range open {
			if m.ends.mine(r.ID) {
				skipped++
				continue
			}
			e := Event{Time: now, Type: EventGuardFinished, Actor: r.Actor, RequestID: r.RequestID, PolicyID: r.PolicyID, Task: r.Task,
				Run: r.ID, Outcome: OutcomeEndedUnknown, Detail: map[string]string{
					"started": r.Started.UTC().Format(time.RFC3339Nano),
					"error":   "no end was recorded by " + r.Due.UTC().Format(time.RFC3339) + ": the Manager that ran it stopped or could not reach the store, or its fn ran that long past its grant",
				}}
			switch err := m.commitEnd(ctx, e); {
			case err == nil:
				n++
			case errors.Is(err, ErrNotFound):
				// Its end was recorded meanwhile, here or by another
				// Manager.
			default:
				return n, err
			}
		}
		if !more {
			return n, nil
		}
	}
}
