package pam

import (
	"context"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
)

// grantContext is the context a guarded fn runs with. Its deadline is the
// end of the grant. A timer is needed only when someone waits on Done, and
// most operations never do, so the timer (through the Manager's clock) is
// started on the first call to Done and stopped when Guard returns.
// Deadline, Err and Value work without it.
type grantContext struct {
	parent   context.Context
	deadline time.Time
	clock    clock.Clock

	mu      sync.Mutex
	inner   context.Context // the timer-backed context, once started
	cancel  context.CancelFunc
	stopped bool
}

var _ context.Context = (*grantContext)(nil)

func newGrantContext(parent context.Context, deadline time.Time, clk clock.Clock) *grantContext {
	if d, ok := parent.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	return &grantContext{parent: parent, deadline: deadline, clock: clk}
}

func (c *grantContext) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *grantContext) Done() <-chan struct{} { return c.started().Done() }

func (c *grantContext) Err() error {
	c.mu.Lock()
	inner := c.inner
	c.mu.Unlock()
	if inner != nil {
		return inner.Err()
	}
	if err := c.parent.Err(); err != nil {
		return err
	}
	if !c.clock.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

func (c *grantContext) Value(key any) any {
	c.mu.Lock()
	inner := c.inner
	c.mu.Unlock()
	if inner != nil {
		return inner.Value(key)
	}
	return c.parent.Value(key)
}

func (c *grantContext) String() string { return "pam.grantContext" }

// started returns the timer-backed context, starting it on first use.
// After stop it returns a canceled context.
func (c *grantContext) started() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inner == nil {
		c.inner, c.cancel = c.clock.WithDeadline(c.parent, c.deadline)
		if c.stopped {
			c.cancel()
		}
	}
	return c.inner
}

// stop releases the timer once fn has returned.
func (c *grantContext) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	if c.cancel != nil {
		c.cancel()
	}
}
