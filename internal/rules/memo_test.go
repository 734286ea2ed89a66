package rules_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/zerostanding/pam/internal/rules"
)

func compile(t *testing.T, env *rules.Env, src string) *rules.Condition {
	t.Helper()
	c, err := env.CompileCondition(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func evalOK(t *testing.T, c *rules.Condition, in *rules.Input, want rules.Outcome) {
	t.Helper()
	got, err := c.Eval(context.Background(), in)
	if err != nil || got != want {
		t.Fatalf("Eval(%+v) = %v, %v; want %v", in, got, err, want)
	}
}

// TestMemoKeysOnWhatTheConditionReads: an operation whose read parts were
// seen before is not evaluated again, whatever else differs; one that
// differs in a read part, even only in its Go type, is.
func TestMemoKeysOnWhatTheConditionReads(t *testing.T) {
	env := rules.NewEnv(0)
	c := compile(t, env, `input.op.params.mailbox == "ceo"`+"\n"+`input.actor != "mallory"`)
	if !c.Memoised() {
		t.Fatal("a condition over params and actor is not memoised")
	}
	in := func(actor string, params map[string]any) *rules.Input {
		return &rules.Input{Actor: actor, Task: "New-MoveRequest", Params: params, Now: now}
	}
	evalOK(t, c, in("alice", map[string]any{"mailbox": "ceo"}), rules.True)
	evalOK(t, c, in("alice", map[string]any{"mailbox": "ceo", "db": "DB01"}), rules.True) // db is not read
	evalOK(t, c, in("alice", map[string]any{"mailbox": "ceo", "db": "DB02"}), rules.True)
	if n := c.Evals(); n != 1 {
		t.Errorf("three operations that read alike: %d evaluations, want 1", n)
	}
	for i, tc := range []struct {
		in   *rules.Input
		want rules.Outcome
	}{
		{in("mallory", map[string]any{"mailbox": "ceo"}), rules.False},      // another actor
		{in("alice", map[string]any{"mailbox": "cfo"}), rules.False},        // another value
		{in("alice", map[string]any{}), rules.Undefined},                    // absent
		{in("alice", map[string]any{"mailbox": nil}), rules.False},          // null
		{in("alice", map[string]any{"mailbox": []any{"ceo"}}), rules.False}, // another type
	} {
		before := c.Evals()
		evalOK(t, c, tc.in, tc.want)
		if c.Evals() != before+1 {
			t.Errorf("case %d: not evaluated (a memo hit for a different input)", i)
		}
		evalOK(t, c, tc.in, tc.want) // and memoised now
		if c.Evals() != before+1 {
			t.Errorf("case %d: evaluated again", i)
		}
	}

	// Numbers: 1 and 1.5 differ; int 1 and float64 1 are told apart by
	// type (each evaluated once), and agree.
	n := compile(t, env, `input.op.params.n > 1`)
	evalOK(t, n, in("alice", map[string]any{"n": 1}), rules.False)
	evalOK(t, n, in("alice", map[string]any{"n": 1.5}), rules.True)
	evalOK(t, n, in("alice", map[string]any{"n": float64(1)}), rules.False)
	evalOK(t, n, in("alice", map[string]any{"n": json.Number("2")}), rules.True)
	evalOK(t, n, in("alice", map[string]any{"n": 1.5}), rules.True)
	if got := n.Evals(); got != 4 {
		t.Errorf("numbers: %d evaluations, want 4", got)
	}
}

// TestMemoWholeParams: a condition that reads all params keys on all of
// them, maps in any order alike.
func TestMemoWholeParams(t *testing.T) {
	env := rules.NewEnv(0)
	c := compile(t, env, `count(input.op.params) == 2`)
	evalOK(t, c, &rules.Input{Params: map[string]any{"a": 1, "b": map[string]any{"x": []any{"y", true}}}}, rules.True)
	evalOK(t, c, &rules.Input{Params: map[string]any{"b": map[string]any{"x": []any{"y", true}}, "a": 1}}, rules.True)
	evalOK(t, c, &rules.Input{Params: map[string]any{"a": 1, "b": map[string]any{"x": []any{"y", false}}}}, rules.True)
	evalOK(t, c, &rules.Input{Params: map[string]any{"a": 1}}, rules.False)
	evalOK(t, c, &rules.Input{}, rules.False)
	evalOK(t, c, &rules.Input{Params: map[string]any{}}, rules.False)
	if got := c.Evals(); got != 5 {
		t.Errorf("%d evaluations, want 5", got)
	}
	// A value of a type the key does not know is evaluated every time.
	type custom struct{ X int }
	for range 2 {
		evalOK(t, c, &rules.Input{Params: map[string]any{"a": custom{1}, "b": 2}}, rules.True)
	}
	if got := c.Evals(); got != 7 {
		t.Errorf("with a custom type: %d evaluations, want 7", got)
	}
}

// TestMemoNeverForTime: conditions that read input.now or the whole
// input are evaluated every time.
func TestMemoNeverForTime(t *testing.T) {
	env := rules.NewEnv(0)
	for _, src := range []string{`input.now > 0`, `count(input) > 0`, `object.get(input, "actor", "") == "alice"`} {
		c := compile(t, env, src)
		if c.Memoised() {
			t.Errorf("%s is memoised", src)
		}
		for range 3 {
			c.Eval(context.Background(), &rules.Input{Actor: "alice", Now: now})
		}
		if got := c.Evals(); got != 3 {
			t.Errorf("%s: %d evaluations, want 3", src, got)
		}
	}
}

// TestMemoNeverForNondeterministicBuiltins: a condition that calls a
// built-in OPA marks non-deterministic (of those the sandbox allows) is
// evaluated every time.
func TestMemoNeverForNondeterministicBuiltins(t *testing.T) {
	calls := map[string]string{
		"time.now_ns": `time.now_ns() > 0`,
	}
	env := rules.NewEnv(0)
	for _, b := range rules.NondeterministicAllowed() {
		src, ok := calls[b]
		if !ok {
			t.Errorf("the sandbox allows %s, which OPA marks non-deterministic: add a condition calling it here", b)
			continue
		}
		c := compile(t, env, src)
		if c.Memoised() {
			t.Errorf("%s is memoised", src)
		}
		for range 3 {
			evalOK(t, c, &rules.Input{Now: now}, rules.True)
		}
		if got := c.Evals(); got != 3 {
			t.Errorf("%s: %d evaluations, want 3", src, got)
		}
	}
	// Inside a comprehension too.
	if c := compile(t, env, `count([x | x := time.now_ns()]) == 1`); c.Memoised() {
		t.Error("a comprehension calling time.now_ns is memoised")
	}
}

// TestMemoDataChange: a change of data.pam drops what was memoised.
func TestMemoDataChange(t *testing.T) {
	ctx := context.Background()
	env := rules.NewEnv(0)
	if err := env.SetData(ctx, map[string]any{"vip": []any{"ceo"}}); err != nil {
		t.Fatal(err)
	}
	c := compile(t, env, `input.op.params.mailbox in data.pam.vip`)
	in := &rules.Input{Params: map[string]any{"mailbox": "cfo"}}
	evalOK(t, c, in, rules.False)
	evalOK(t, c, in, rules.False)
	if err := env.SetData(ctx, map[string]any{"vip": []any{"ceo", "cfo"}}); err != nil {
		t.Fatal(err)
	}
	evalOK(t, c, in, rules.True)
	if got := c.Evals(); got != 2 {
		t.Errorf("%d evaluations, want 2", got)
	}
}

// TestMemoBounded: past its bound the memo starts afresh, and keeps
// answering right.
func TestMemoBounded(t *testing.T) {
	env := rules.NewEnv(0)
	c := compile(t, env, `input.op.params.n % 2 == 0`)
	for i := range 10000 {
		want := rules.False
		if i%2 == 0 {
			want = rules.True
		}
		evalOK(t, c, &rules.Input{Params: map[string]any{"n": i}}, want)
	}
	before := c.Evals()
	evalOK(t, c, &rules.Input{Params: map[string]any{"n": 9998}}, rules.True)
	if c.Evals() != before {
		t.Error("the last key seen is not memoised")
	}
	evalOK(t, c, &rules.Input{Params: map[string]any{"n": 0}}, rules.True)
	if c.Evals() != before+1 {
		t.Error("the first key of 10,000 is still memoised: the memo is not bounded")
	}
}

// TestMemoConcurrent: many goroutines, overlapping keys, a data change
// midway; every answer is right (run with -race).
func TestMemoConcurrent(t *testing.T) {
	ctx := context.Background()
	env := rules.NewEnv(0)
	env.SetData(ctx, map[string]any{"limit": 50})
	c := compile(t, env, `input.op.params.n < data.pam.limit`)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				n := (i * (w + 1)) % 100
				got, err := c.Eval(ctx, &rules.Input{Params: map[string]any{"n": n}})
				// The limit only grows: 50, then 1000.
				if err != nil || (n < 50 && got != rules.True) {
					errs <- fmt.Errorf("n=%d: %v, %v", n, got, err)
					return
				}
			}
		}()
	}
	env.SetData(ctx, map[string]any{"limit": 1000})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for n := range 100 {
		evalOK(t, c, &rules.Input{Params: map[string]any{"n": n}}, rules.True)
	}
}
