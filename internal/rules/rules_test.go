package rules_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/zerostanding/pam/internal/rules"
)

var now = time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC) // a Friday

func TestConditionOutcomes(t *testing.T) {
	ctx := context.Background()
	env := rules.NewEnv(0)
	if err := env.SetData(ctx, map[string]any{"vip": []any{"ceo@contoso.com", "cfo@contoso.com"}}); err != nil {
		t.Fatal(err)
	}
	params := map[string]any{"mailbox": "bob@contoso.com", "size": 50, "tags": []any{"a", "b"}}
	for _, tc := range []struct {
		name, cond string
		params     map[string]any
		want       rules.Outcome
	}{
		{"true comparison", "input.op.params.size < 100", params, rules.True},
		{"false comparison", "input.op.params.size > 100", params, rules.False},
		{"false membership", "input.op.params.mailbox in data.pam.vip", params, rules.False},
		{"true membership", "input.op.params.mailbox in data.pam.vip", map[string]any{"mailbox": "ceo@contoso.com"}, rules.True},
		{"missing param", "input.op.params.mailbox in data.pam.vip", map[string]any{}, rules.Undefined},
		{"nil params", "input.op.params.size > 1", nil, rules.Undefined},
		{"missing data", "input.op.params.mailbox in data.pam.nothing", params, rules.Undefined},
		{"not boolean", "input.op.params.size", params, rules.NotBoolean},
		{"builtin error", "to_number(input.op.params.mailbox) > 1", params, rules.Failed},
		{"all true", "input.op.params.size < 100\ninput.op.task == \"New-MoveRequest\"", params, rules.True},
		{"one false", "input.op.params.size < 100; input.op.task == \"Other\"", params, rules.False},
		{"actor", `endswith(input.actor, "@contoso.com")`, params, rules.True},
		{"now", "input.now == time.now_ns()", params, rules.True},
		{"weekday", `time.weekday(input.now) == "Friday"`, params, rules.True},
		{"iteration some true", `input.op.params.tags[_] == "b"`, params, rules.True},
		{"iteration none true", `input.op.params.tags[_] == "z"`, params, rules.False},
		{"whole params", `count(input.op.params) == 3`, params, rules.True},
		{"whole input", `object.get(input, ["op", "params", "size"], 0) == 50`, params, rules.True},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := env.CompileCondition(ctx, tc.cond)
			if err != nil {
				t.Fatalf("compile %q: %v", tc.cond, err)
			}
			got, err := c.Eval(ctx, &rules.Input{Actor: "alice@contoso.com", Task: "New-MoveRequest", Params: tc.params, Now: now})
			if got != tc.want {
				t.Errorf("Eval(%q) = %v (err %v), want %v", tc.cond, got, err, tc.want)
			}
			if got.Covered() != (tc.want != rules.False) {
				t.Errorf("Covered() = %v for %v", got.Covered(), got)
			}
		})
	}
}

func TestConditionSeesNewData(t *testing.T) {
	ctx := context.Background()
	env := rules.NewEnv(0)
	c, err := env.CompileCondition(ctx, "input.op.params.mailbox in data.pam.vip")
	if err != nil {
		t.Fatal(err)
	}
	in := &rules.Input{Params: map[string]any{"mailbox": "ceo"}, Now: now}
	if got, _ := c.Eval(ctx, in); got != rules.Undefined {
		t.Fatalf("before data: %v, want undefined", got)
	}
	if err := env.SetData(ctx, map[string]any{"vip": []any{"ceo"}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Eval(ctx, in); got != rules.True {
		t.Fatalf("after data: %v, want true", got)
	}
}

func TestCompileErrorsCarryPosition(t *testing.T) {
	ctx := context.Background()
	env := rules.NewEnv(0)
	for _, tc := range []struct {
		name, src string
		module    bool
		line, col int
	}{
		{"syntax", "input.op.params.size >", false, 1, 22},
		{"second line", "input.op.task == \"x\"\ninput.op.params.size > > 1", false, 2, 24},
		{"unknown function", "input.op.task == \"x\"\n  nosuch(input.op.task)", false, 2, 3},
		{"http.send removed", `http.send({"method": "get", "url": "http://x"}).status_code == 200`, false, 1, 1},
		{"net removed", `net.lookup_ip_addr("example.com") == set()`, false, 1, 1},
		{"opa.runtime removed", `opa.runtime().env == {}`, false, 1, 1},
		{"assignment", "x := input.op.task", false, 1, 1},
		{"unification", "input.op.task = \"x\"", false, 1, 1},
		{"negation", "not input.op.params.vip", false, 1, 1},
		{"module syntax", "deny contains msg if {\n  msg := \n}", true, 3, 1},
		{"module unknown function", "deny contains msg if {\n  msg := nosuch(1)\n}", true, 2, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.module {
				_, err = env.CompileModule(ctx, tc.src, "deny")
			} else {
				_, err = env.CompileCondition(ctx, tc.src)
			}
			var re *rules.Error
			if !errors.As(err, &re) {
				t.Fatalf("compile %q: error %v, want *rules.Error", tc.src, err)
			}
			if re.Line != tc.line || re.Col != tc.col {
				t.Errorf("compile %q: at %d:%d (%v), want %d:%d", tc.src, re.Line, re.Col, re, tc.line, tc.col)
			}
		})
	}
}

func TestModule(t *testing.T) {
	ctx := context.Background()
	env := rules.NewEnv(0)
	m, err := env.CompileModule(ctx, `
deny contains "reason must name a ticket like INC-1234" if not regex.match(`+"`INC-[0-9]+`"+`, input.request.reason)
deny contains "only on weekdays" if time.weekday(input.now) in {"Saturday", "Sunday"}
`, "deny")
	if err != nil {
		t.Fatal(err)
	}
	in := func(reason string) map[string]any {
		return map[string]any{"request": map[string]any{"reason": reason}, "now": now.UnixNano()}
	}
	got, err := m.Eval(ctx, in("fix INC-42"), now)
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := got.([]any); !ok || len(s) != 0 {
		t.Errorf("good reason: deny = %#v, want empty", got)
	}
	got, err = m.Eval(ctx, in("because"), now)
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := got.([]any); !ok || len(s) != 1 || s[0] != "reason must name a ticket like INC-1234" {
		t.Errorf("bad reason: deny = %#v", got)
	}
	sat := now.Add(24 * time.Hour)
	in2 := map[string]any{"request": map[string]any{"reason": "INC-1"}, "now": sat.UnixNano()}
	if got, _ := m.Eval(ctx, in2, sat); len(got.([]any)) != 1 {
		t.Errorf("saturday: deny = %#v, want one message", got)
	}
	if _, err := env.CompileModule(ctx, `allow if true`, "deny"); err == nil {
		t.Error("module without deny compiled")
	}
}

// TestConcurrentCompileAndEval: conditions share one compiler; compiling
// and evaluating from many goroutines must be race-free.
func TestConcurrentCompileAndEval(t *testing.T) {
	ctx := context.Background()
	env := rules.NewEnv(0)
	if err := env.SetData(ctx, map[string]any{"vip": []any{"a"}}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 8)
	for w := range 8 {
		go func() {
			for i := range 20 {
				c, err := env.CompileCondition(ctx, fmt.Sprintf("input.op.params.n > %d\ninput.op.params.m in data.pam.vip", w*100+i))
				if err != nil {
					done <- err
					return
				}
				want := rules.False
				if 500 > w*100+i {
					want = rules.True
				}
				if got, err := c.Eval(ctx, &rules.Input{Params: map[string]any{"n": 500, "m": "a"}, Now: now}); got != want {
					done <- fmt.Errorf("eval: %v (%v), want %v", got, err, want)
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
