package pam

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
)

type ctxKey struct{}

func TestGrantContext(t *testing.T) {
	start := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	end := start.Add(time.Hour)
	newCtx := func() (*grantContext, *clock.Mock, context.CancelFunc) {
		clk := clock.NewMock()
		clk.Set(start)
		parent, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "v"))
		return newGrantContext(parent, end, 0, clk), clk, cancel
	}

	t.Run("deadline and value without a timer", func(t *testing.T) {
		c, clk, cancel := newCtx()
		defer cancel()
		if d, ok := c.Deadline(); !ok || !d.Equal(end) {
			t.Errorf("Deadline = %v, %v", d, ok)
		}
		if c.Value(ctxKey{}) != "v" {
			t.Error("Value does not reach the parent")
		}
		clk.Set(end.Add(-time.Nanosecond))
		if err := c.Err(); err != nil {
			t.Errorf("Err 1ns before the end = %v", err)
		}
		clk.Set(end)
		if err := c.Err(); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Err at the end = %v", err)
		}
		if c.inner != nil {
			t.Error("a timer was started without Done")
		}
	})
	t.Run("done fires at the end", func(t *testing.T) {
		c, clk, cancel := newCtx()
		defer cancel()
		defer c.stop()
		done := c.Done()
		clk.Add(time.Hour - time.Nanosecond)
		select {
		case <-done:
			t.Fatal("done before the end")
		default:
		}
		clk.Add(time.Nanosecond)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("done did not fire at the end")
		}
		if !errors.Is(c.Err(), context.DeadlineExceeded) || !errors.Is(context.Cause(c), context.DeadlineExceeded) {
			t.Errorf("Err %v, Cause %v", c.Err(), context.Cause(c))
		}
	})
	t.Run("parent cancel", func(t *testing.T) {
		c, _, cancel := newCtx()
		child, childCancel := context.WithCancel(c) // asks for Done
		defer childCancel()
		cancel()
		select {
		case <-child.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("parent cancel did not reach the child")
		}
		if !errors.Is(c.Err(), context.Canceled) {
			t.Errorf("Err = %v", c.Err())
		}
		c.stop()
	})
	t.Run("parent cancel before done", func(t *testing.T) {
		c, _, cancel := newCtx()
		cancel()
		if !errors.Is(c.Err(), context.Canceled) {
			t.Errorf("Err = %v", c.Err())
		}
	})
	t.Run("earlier parent deadline wins", func(t *testing.T) {
		clk := clock.NewMock()
		clk.Set(start)
		parent, cancel := context.WithDeadline(context.Background(), start.Add(time.Minute))
		defer cancel()
		c := newGrantContext(parent, end, 0, clk)
		if d, _ := c.Deadline(); !d.Equal(start.Add(time.Minute)) {
			t.Errorf("Deadline = %v", d)
		}
	})
	t.Run("done after stop is closed", func(t *testing.T) {
		c, _, cancel := newCtx()
		defer cancel()
		c.stop()
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("Done after stop is not closed")
		}
	})
}
