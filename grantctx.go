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
//
// Most operations never wait on Done, so the machinery is started only
// when needed: a context.WithCancelCause child of the parent and, through
// the Manager's clock, a timer at the grant's end are made on the first
// call to Done, or when the grant ends. Deadline, Err and Value work
// without them, and the timer is stopped when Guard returns.
type grantContext struct {
	parent   context.Context
	deadline time.Time // the earlier of the parent's and the grant's
	expires  time.Time // the grant's end, on Options.Clock
	clock    clock.Clock
	grants   []runGrant // what the run relies on; see runs
	grantBuf [1]runGrant
	shard    uint8 // of runs, where it is registered

	mu      sync.Mutex
	inner   context.Context // the cancelable child, once started
	cancel  context.CancelCauseFunc
	timer   *clock.Timer
	ended   *GrantEndedError // why the grant ended, once it has
	stopped bool
}

// runGrant is one grant a run relies on.
type runGrant struct {
	requestID     string
	policyID      string
	policyVersion int64
}

var _ context.Context = (*grantContext)(nil)

func newGrantContext(parent context.Context, deadline time.Time, clk clock.Clock) *grantContext {
	c := &grantContext{parent: parent, deadline: deadline, expires: deadline, clock: clk}
	if d, ok := parent.Deadline(); ok && d.Before(deadline) {
		c.deadline = d
	}
	return c
}

func (c *grantContext) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *grantContext) Done() <-chan struct{} { return c.started().Done() }

func (c *grantContext) Err() error {
	c.mu.Lock()
	inner, ended := c.inner, c.ended
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
	if !c.clock.Now().Before(c.expires) {
		return context.DeadlineExceeded
	}
	return nil
}

func (c *grantContext) Value(key any) any {
	c.mu.Lock()
	inner := c.inner
	c.mu.Unlock()
	if inner == nil && !c.clock.Now().Before(c.expires) {
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
		c.timer = c.clock.AfterFunc(d, func() { c.end(c.endedError(GrantExpired)) })
	}
	return c.inner
}

// end ends the context with cause, once; after stop it does nothing.
func (c *grantContext) end(cause *GrantEndedError) {
	c.mu.Lock()
	defer c.mu.Unlock()
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
