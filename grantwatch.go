package pam

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// runs ends the context of every guarded fn running on this Manager when
// its grant ends:
//
//   - at once when this Manager commits the change: a request leaving
//     Approved (Revoke, Relinquish, Sweep), a policy write that raises MinGrantVersion
//     above a running grant's version or deletes its policy (committed);
//   - when another Manager sharing the store makes it, through the
//     watcher: a goroutine, started with the first running fn, that
//     re-reads the running grants' requests and the live policies every
//     Options.AuditPollInterval, and at once when a store that is a
//     ChangeNotifier signals a change. It stops when a check finds no fn
//     running, and with Close; it never outlives Close;
//   - at the grant's end, by the grantContext's own timer; an extension
//     granted through this Manager (committed) or read by the watcher
//     moves that end later.
//
// Registering a run is a map insert under one of runShards mutexes,
// picked at random: no store round trip, and Guards on many cores rarely
// take the same lock.
type runs struct {
	store    Store
	cache    *policyCache
	notifier ChangeNotifier // nil: poll only
	poll     time.Duration
	onError  func(error)

	ctx  context.Context // canceled by close
	kill context.CancelFunc
	wg   sync.WaitGroup

	shards [runShards]runShard

	mu       sync.Mutex  // over starting and stopping the watcher, and closed; taken after a shard's
	watching atomic.Bool // a watcher goroutine runs; changed under mu
	closed   bool
}

const runShards = 16

type runShard struct {
	mu      sync.Mutex
	running map[*grantContext]struct{}
	_       [40]byte // a cache line each
}

func newRuns(store Store, cache *policyCache, poll time.Duration, onError func(error)) *runs {
	r := &runs{store: store, cache: cache, poll: poll, onError: onError}
	for i := range r.shards {
		r.shards[i].running = map[*grantContext]struct{}{}
	}
	r.notifier, _ = store.(ChangeNotifier)
	r.ctx, r.kill = context.WithCancel(context.Background())
	return r
}

// add registers a running fn's context, and starts the watcher if none
// runs.
func (r *runs) add(c *grantContext) {
	c.shard = uint8(mrand.IntN(runShards))
	sh := &r.shards[c.shard]
	sh.mu.Lock()
	sh.running[c] = struct{}{}
	// Read under the shard's lock: a watcher that stops takes every
	// shard's lock to find none running, so either it sees c or c sees
	// it stopped.
	if !r.watching.Load() {
		r.mu.Lock()
		if !r.watching.Load() && !r.closed {
			r.watching.Store(true)
			r.wg.Add(1)
			go r.watch()
		}
		r.mu.Unlock()
	}
	sh.mu.Unlock()
}

// remove forgets c once its fn has returned.
func (r *runs) remove(c *grantContext) {
	sh := &r.shards[c.shard]
	sh.mu.Lock()
	delete(sh.running, c)
	sh.mu.Unlock()
}

// list returns the running contexts.
func (r *runs) list() []*grantContext {
	var out []*grantContext
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		for c := range sh.running {
			out = append(out, c)
		}
		sh.mu.Unlock()
	}
	return out
}

// committed ends the runs whose grant tx, just committed by this
// Manager, ended, and moves the end of those whose grant it extended.
func (r *runs) committed(tx *Tx) {
	if len(tx.Requests) == 0 && len(tx.Policies) == 0 {
		return
	}
	for _, c := range r.list() {
	grants:
		for _, g := range c.grants {
			for i := range tx.Requests {
				if q := &tx.Requests[i]; q.ID == g.requestID && q.State != Approved {
					c.end(g.ended(endReason(q.State)))
					break grants
				} else if q.ID == g.requestID {
					c.extend(q.ID, q.ExpiresAt)
				}
			}
			for i := range tx.Policies {
				if p := &tx.Policies[i]; p.ID == g.policyID && (p.Deleted || g.policyVersion < p.MinGrantVersion) {
					c.end(g.ended(GrantCut))
					break grants
				}
			}
		}
	}
}

// endReason is why a grant whose request is recorded in state s ended.
func endReason(s State) GrantEndReason {
	switch s {
	case Expired:
		return GrantExpired
	case Relinquished:
		return GrantRelinquished
	}
	return GrantRevoked
}

func (g *runGrant) ended(reason GrantEndReason) *GrantEndedError {
	return &GrantEndedError{RequestID: g.requestID, PolicyID: g.policyID, Reason: reason}
}

// watch checks the running grants every poll interval, and at once on a
// change signal, until none runs or close.
func (r *runs) watch() {
	defer r.wg.Done()
	// The listening lasts as long as this watcher.
	ctx, stop := context.WithCancel(r.ctx)
	// Polling is I/O pacing: real time, not Options.Clock.
	t := time.NewTicker(r.poll)
	defer t.Stop()
	var changes <-chan struct{}
	defer func() {
		stop()
		// The notifier closes the channel once it stops listening: wait
		// for it, so that nothing outlives Close.
		if changes != nil {
			for range changes {
			}
		}
	}()
	reported := false
	listen := func() {
		if r.notifier == nil || changes != nil {
			return
		}
		ch, err := r.notifier.Changes(ctx)
		if err != nil {
			if ctx.Err() == nil && !reported {
				r.onError(fmt.Errorf("pam: listen for grant changes (polling meanwhile): %w", err))
				reported = true
			}
			return
		}
		changes, reported = ch, false
	}
	for {
		// A change committed before listening began is found by the
		// check that follows it.
		listen()
		if !r.check(ctx) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case _, ok := <-changes:
			if !ok {
				changes = nil
			}
		}
	}
}

// check ends the running fns whose grants no longer hold, as the store
// has them now. It returns false, and the watcher stops, when no fn runs
// (or close was called).
func (r *runs) check(ctx context.Context) bool {
	list := r.list()
	if len(list) == 0 {
		for i := range r.shards {
			r.shards[i].mu.Lock()
			defer r.shards[i].mu.Unlock()
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		n := 0
		for i := range r.shards {
			n += len(r.shards[i].running)
		}
		if n == 0 || r.closed {
			r.watching.Store(false)
			return false
		}
		return true
	}
	if ctx.Err() != nil {
		return false
	}
	s, err := r.cache.current(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.onError(fmt.Errorf("pam: check running grants: %w", err))
		}
		return true
	}
	type stored struct {
		state   State
		expires time.Time // zero: unknown
	}
	read := make(map[string]stored, len(list))
	for _, c := range list {
		for i := range c.grants {
			g := &c.grants[i]
			if p := s.policy(g.policyID); p == nil || g.policyVersion < p.MinGrantVersion {
				c.end(g.ended(GrantCut))
				break
			}
			st, seen := read[g.requestID]
			if !seen {
				q, err := r.store.Request(ctx, g.requestID)
				switch {
				case errors.Is(err, ErrNotFound):
					st.state = Revoked
				case err != nil:
					if ctx.Err() == nil {
						r.onError(fmt.Errorf("pam: check running grant %s: %w", g.requestID, err))
					}
					st.state = Approved // unknown: check again next time
				default:
					st = stored{q.State, q.ExpiresAt}
				}
				read[g.requestID] = st
			}
			if st.state != Approved {
				c.end(g.ended(endReason(st.state)))
				break
			}
			if !st.expires.IsZero() && st.expires.After(c.grantExpires(g.requestID)) {
				// Extended through another Manager.
				c.extend(g.requestID, st.expires)
			}
		}
	}
	return true
}

// close stops the watcher, waiting for it no longer than ctx allows.
func (r *runs) close(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.kill()
	stopped := make(chan struct{})
	go func() { r.wg.Wait(); close(stopped) }()
	select {
	case <-stopped:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("pam: grant watcher still running when Close's context ended: %w", ctx.Err())
	}
}
