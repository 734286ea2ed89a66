package pam

import (
	"context"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
)

// grantContext is the context a guarded fn runs with. It ends when the
// grant does: at the grant's end (its deadline), or when the Manager
// learns that the grant was revoked or cut by a policy change (end). Its
// cause (context.Cause) is then a *GrantEndedError; its Err is
// context.DeadlineExceeded for an expiry and context.Canceled otherwise.
// An extension granted while fn runs moves the end, and Deadline, later
// (extend): the one way it departs from context.Context's rule that
// successive calls to Deadline return the same, so that fn and the
// contexts derived from it follow the grant's real end.
//
// Most operations never wait on Done, so the machinery is started only
// when needed: a context.WithCancelCause child of the parent and, through
// the Manager's clock, a timer at the grant's end are made on the first
// call to Done, or when the grant ends. Deadline, Err and Value work
// without them, and the timer is stopped when Guard returns.
type grantContext struct {
	parent   context.Context
	clock    clock.Clock
	skew     time.Duration // Options.Clock minus the decision's clock (a store's TimeSource)
	grants   []runGrant    // what the run relies on; see runs
	grantBuf [1]runGrant
	shard    uint8 // of runs, where it is registered

	mu       sync.Mutex
	deadline time.Time       // the earlier of the parent's and the grant's
	expires  time.Time       // the grants' earliest end, on Options.Clock
	inner    context.Context // the cancelable child, once started
	cancel   context.CancelCauseFunc
	timer    *clock.Timer
	ended    *GrantEndedError // why the grant ended, once it has
	stopped  bool
}

// runGrant is one grant a run relies on.
type runGrant struct {
	requestID     string
	policyID      string
	policyVersion int64
	expires       time.Time // its end as last read, on the decision's clock; under the context's mu
}

var _ context.Context = (*grantContext)(nil)

func newGrantContext(parent context.Context, deadline time.Time, skew time.Duration, clk clock.Clock) *grantContext {
	c := &grantContext{parent: parent, clock: clk, skew: skew}
	c.setExpires(deadline.Add(skew))
	return c
}

// setExpires makes the grants' end expires, and the deadline the earlier
// of it and the parent's. Under mu, or before the context is shared.
func (c *grantContext) setExpires(expires time.Time) {
	c.expires, c.deadline = expires, expires
	if d, ok := c.parent.Deadline(); ok && d.Before(expires) {
		c.deadline = d
	}
}

func (c *grantContext) Deadline() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deadline, true
}

func (c *grantContext) Done() <-chan struct{} { return c.started().Done() }

func (c *grantContext) Err() error {
	c.mu.Lock()
	inner, ended, expires := c.inner, c.ended, c.expires
	c.mu.Unlock()
	if err := c.parent.Err(); err != nil {
		return err
	}
	if ended != nil {
		return ended.contextErr()
	}
	if inner != nil {
		return inner.Err()
	}
	if !c.clock.Now().Before(expires) {
		return context.DeadlineExceeded
	}
	return nil
}

func (c *grantContext) Value(key any) any {
	c.mu.Lock()
	inner, expires := c.inner, c.expires
	c.mu.Unlock()
	if inner == nil && !c.clock.Now().Before(expires) {
		// context.Cause finds the cause through Value: make it there.
		c.end(c.endedError(GrantExpired))
		inner = c.started()
	}
	if inner != nil {
		return inner.Value(key)
	}
	return c.parent.Value(key)
}

func (c *grantContext) String() string { return "pam.grantContext" }

// endedError is the cause for the grant ending for reason: the first of
// the run's grants.
func (c *grantContext) endedError(reason GrantEndReason) *GrantEndedError {
	e := &GrantEndedError{Reason: reason}
	if len(c.grants) > 0 {
		e.RequestID, e.PolicyID = c.grants[0].requestID, c.grants[0].policyID
	}
	return e
}

// started returns the cancelable child, starting it, and the timer at the
// grant's end, on first use. After stop it returns a canceled context.
func (c *grantContext) started() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inner != nil {
		return c.inner
	}
	c.inner, c.cancel = context.WithCancelCause(c.parent)
	switch {
	case c.ended != nil:
		c.cancel(c.ended)
	case c.stopped:
		c.cancel(nil)
	default:
		d := c.expires.Sub(c.clock.Now())
		if d <= 0 {
			c.ended = c.endedError(GrantExpired)
			c.cancel(c.ended)
			break
		}
		c.timer = c.clock.AfterFunc(d, c.expire)
	}
	return c.inner
}

// expire is the timer's: it ends the context when the grants' end has
// come, and otherwise (an extension moved it, or the wall clock stepped
// back) waits again for what is left.
func (c *grantContext) expire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended != nil || c.stopped {
		return
	}
	if d := c.expires.Sub(c.clock.Now()); d > 0 {
		c.timer = c.clock.AfterFunc(d, c.expire)
		return
	}
	c.endLocked(c.endedError(GrantExpired))
}

// extend moves the end of the run's grant from request id to expires
// (on the decision's clock), when that is later than the end it had, and
// the context's end with it: to the earliest end of the run's grants. A
// context that has ended stays ended.
func (c *grantContext) extend(id string, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended != nil || c.stopped {
		return
	}
	moved := false
	for i := range c.grants {
		if g := &c.grants[i]; g.requestID == id && expires.After(g.expires) {
			g.expires, moved = expires, true
		}
	}
	if !moved {
		return
	}
	earliest := c.grants[0].expires
	for _, g := range c.grants[1:] {
		if g.expires.Before(earliest) {
			earliest = g.expires
		}
	}
	if at := earliest.Add(c.skew); at.After(c.expires) {
		c.setExpires(at) // a running timer finds the later end when it fires
	}
}

// grantExpires returns the end of the run's grant from request id as
// last read, on the decision's clock.
func (c *grantContext) grantExpires(id string) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, g := range c.grants {
		if g.requestID == id {
			return g.expires
		}
	}
	return time.Time{}
}

// end ends the context with cause, once; after stop it does nothing.
func (c *grantContext) end(cause *GrantEndedError) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.endLocked(cause)
}

func (c *grantContext) endLocked(cause *GrantEndedError) {
	if c.ended != nil || c.stopped {
		return
	}
	c.ended = cause
	if c.inner == nil {
		c.inner, c.cancel = context.WithCancelCause(c.parent)
	}
	c.cancel(cause)
	if c.timer != nil {
		c.timer.Stop()
	}
}

// stop releases the timer once fn has returned.
func (c *grantContext) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	if c.timer != nil {
		c.timer.Stop()
	}
	if c.cancel != nil {
		c.cancel(nil)
	}
}
