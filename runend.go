package pam

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"sync"
	"time"
)

// DefaultRunEndGrace is Options.RunEndGrace's default.
const DefaultRunEndGrace = time.Hour

// Every guarded run that starts gets exactly one end in the trail. Guard
// commits the start with the run open in the store (Tx.Open) and the end
// with it closed (Tx.Close), so an end is recorded once however often it
// is retried:
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

// runEnds names runs and retries the ends that could not be recorded.
type runEnds struct {
	prefix string // unique to this Manager
	grace  time.Duration
	poll   time.Duration // the longest wait between retries

	mu      sync.Mutex
	pending map[string]Event // by run: ends to record
	busy    bool             // a retry loop is running
	stopped bool             // Close gave up: nothing is retried any more
	idle    chan struct{}    // closed when the queue empties
	record  func(context.Context, Event) error
	onError func(error)
}

func newRunEnds(grace, poll time.Duration, onError func(error)) *runEnds {
	var b [8]byte
	rand.Read(b[:])
	if grace == 0 {
		grace = DefaultRunEndGrace
	}
	return &runEnds{prefix: hex.EncodeToString(b[:]) + "-", grace: grace, poll: poll, pending: map[string]Event{}, onError: onError}
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

// queue keeps e to be recorded later, and starts the retry loop.
func (r *runEnds) queue(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		r.onError(fmt.Errorf("%w: the end of run %s (%s by %s, %s) was not recorded, and the Manager is closed", ErrAuditIncomplete, e.Run, e.Task, e.Actor, e.Outcome))
		return
	}
	r.pending[e.Run] = e
	if !r.busy {
		r.busy, r.idle = true, make(chan struct{})
		go r.loop()
	}
}

// has reports whether the end of run is waiting to be recorded here.
func (r *runEnds) has(run string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.pending[run]
	return ok
}

// loop retries the queued ends, backing off while the store fails, until
// none is left.
func (r *runEnds) loop() {
	wait := 10 * time.Millisecond
	for {
		time.Sleep(wait)
		if r.flush(context.Background()) {
			return
		}
		wait = min(2*wait, r.poll)
	}
}

// flush tries to record every queued end once and reports whether the
// queue is empty; the loop that finds it so stops.
func (r *runEnds) flush(ctx context.Context) bool {
	r.mu.Lock()
	todo := make([]Event, 0, len(r.pending))
	for _, e := range r.pending {
		todo = append(todo, e)
	}
	r.mu.Unlock()
	for _, e := range todo {
		err := r.record(ctx, e)
		if err != nil && !errors.Is(err, ErrNotFound) {
			continue
		}
		// Recorded, or the run is not open: a commit whose reply was
		// lost did record it, or (for a start whose reply was lost)
		// the start was never stored, so there is nothing to end. Only
		// a run whose end came so late that another Manager's Sweep
		// recorded OutcomeEndedUnknown reads the same, and keeps that.
		r.mu.Lock()
		delete(r.pending, e.Run)
		r.mu.Unlock()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if (len(r.pending) == 0 || r.stopped) && r.busy {
		r.busy = false
		close(r.idle)
	}
	return !r.busy
}

// close records what is queued, retrying until ctx ends, and returns an
// error wrapping ErrAuditIncomplete for the ends it could not record.
func (r *runEnds) close(ctx context.Context) error {
	for {
		r.mu.Lock()
		busy, idle := r.busy, r.idle
		r.mu.Unlock()
		if !busy {
			return nil
		}
		select {
		case <-idle:
			return nil
		case <-ctx.Done():
			r.mu.Lock()
			r.stopped = true
			n := len(r.pending)
			for _, e := range r.pending {
				r.onError(fmt.Errorf("%w: the end of run %s (%s by %s, %s) was not recorded before Close's context ended", ErrAuditIncomplete, e.Run, e.Task, e.Actor, e.Outcome))
			}
			r.mu.Unlock()
			if n == 0 {
				return nil
			}
			return fmt.Errorf("%w: %d run ends were not recorded before Close's context ended: %w", ErrAuditIncomplete, n, ctx.Err())
		}
	}
}

// runEnd returns the end event of the run that start began.
func runEnd(start Event, at time.Time, outcome Outcome, detail map[string]string) Event {
	return Event{Time: at, Type: EventGuardFinished, Actor: start.Actor, RequestID: start.RequestID, PolicyID: start.PolicyID,
		Task: start.Task, Run: start.Run, Outcome: outcome, Detail: detail}
}

// recordEnd records the end of a run whose start is stored; if it
// cannot, it queues the end to be retried and returns why. A run that is
// not open any more was taken as ended unknown by another Manager's
// Sweep (its grace passed): its real end is recorded as
// guard.finished_late.
func (m *Manager) recordEnd(ctx context.Context, e Event) error {
	err := m.commitEnd(ctx, e)
	if errors.Is(err, ErrNotFound) {
		e.Type = EventGuardFinishedLate
		err = m.commitEnd(ctx, e)
	}
	if err != nil {
		m.onError(fmt.Errorf("pam: record end of run %s (%s by %s), retrying: %w", e.Run, e.Task, e.Actor, err))
		m.ends.queue(e)
	}
	return err
}

// endUnstarted records that fn did not run under a start whose commit
// failed without saying whether it was stored: if it was, its run gets
// an end with OutcomeNotRun; if it was not, the close finds no open run
// and there is nothing to end. A store that cannot answer now is asked
// again later.
func (m *Manager) endUnstarted(ctx context.Context, start Event, at time.Time, cause error) {
	e := runEnd(start, at, OutcomeNotRun, map[string]string{"error": cleanText("the start's commit failed without saying whether it was stored: " + cause.Error())})
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.feed.timeout)
	defer cancel()
	if err := m.commitEnd(dctx, e); err != nil && !errors.Is(err, ErrNotFound) {
		m.ends.queue(e)
	}
}

// commitEnd commits an end event: a guard.finished closes its run (and
// fails with ErrNotFound when it is not open), a guard.finished_late
// does not.
func (m *Manager) commitEnd(ctx context.Context, e Event) error {
	_, err := m.record(ctx, e, nil, 0, time.Time{})
	return err
}

// endAbandoned records OutcomeEndedUnknown for the runs whose Due has
// passed without an end, and returns how many it recorded. The ends
// this Manager is still retrying are left to it.
func (m *Manager) endAbandoned(ctx context.Context, now time.Time) (int, error) {
	const batch = 500
	n := 0
	for {
		open, err := m.store.OpenRuns(ctx, now, batch)
		if err != nil {
			return n, err
		}
		progress := false
		for _, r := range open {
			if m.ends.has(r.ID) {
				continue
			}
			e := Event{Time: now, Type: EventGuardFinished, Actor: r.Actor, RequestID: r.RequestID, PolicyID: r.PolicyID, Task: r.Task,
				Run: r.ID, Outcome: OutcomeEndedUnknown, Detail: map[string]string{
					"started": r.Started.UTC().Format(time.RFC3339Nano),
					"error":   "no end was recorded by " + r.Due.UTC().Format(time.RFC3339) + ": the Manager that ran it stopped, or could not reach the store, before recording it",
				}}
			switch err := m.commitEnd(ctx, e); {
			case err == nil:
				n++
				progress = true
			case errors.Is(err, ErrNotFound):
				// Its end was recorded meanwhile, here or by another
				// Manager.
				progress = true
			default:
				return n, err
			}
		}
		if len(open) < batch || !progress {
			return n, nil
		}
	}
}
