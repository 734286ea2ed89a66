package rules_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/version"

	"github.com/zerostanding/pam/internal/rules"
)

// TestEveryBuiltinIsClassified walks every built-in of the OPA version in
// go.mod: each must be allowed or refused, once. An OPA upgrade that adds
// one fails here until someone decides which list it belongs to.
func TestEveryBuiltinIsClassified(t *testing.T) {
	where := map[string]string{}
	put := func(name, list string) {
		if prev, ok := where[name]; ok {
			t.Errorf("%s is listed twice: %s and %s", name, prev, list)
		}
		where[name] = list
	}
	for _, family := range rules.AllowedBuiltins {
		for _, name := range family {
			put(name, "allowed")
		}
	}
	for _, r := range rules.RefusedBuiltins() {
		if r.Reason == "" || len(r.Builtins) == 0 {
			t.Errorf("refused family %q has no reason or no built-ins", r.Family)
		}
		for _, name := range r.Builtins {
			put(name, "refused ("+r.Family+")")
		}
	}
	opa := map[string]bool{}
	for _, b := range ast.CapabilitiesForThisVersion().Builtins {
		opa[b.Name] = true
		if _, ok := where[b.Name]; !ok {
			t.Errorf("built-in %s (OPA %s) is neither allowed nor refused: put it in allowedBuiltins or refusedBuiltins (internal/rules/sandbox.go)",
				b.Name, version.Version)
		}
	}
	for name, list := range where {
		if !opa[name] {
			t.Errorf("%s is %s but this OPA version has no such built-in", name, list)
		}
	}
	// The environment's capabilities are the allowed list, exactly.
	var want []string
	for _, family := range rules.AllowedBuiltins {
		want = append(want, family...)
	}
	slices.Sort(want)
	if got := rules.NewEnv(0).Builtins(); !slices.Equal(got, want) {
		t.Errorf("capabilities hold %v, want %v", got, want)
	}
}

// TestSandboxRefusesAtCompileTime: a call to a refused built-in fails to
// compile, in a condition and in a rule module, naming the built-in and
// saying it is not allowed, at its position.
func TestSandboxRefusesAtCompileTime(t *testing.T) {
	ctx := context.Background()
	env := rules.NewEnv(0)
	cases := []struct {
		family, name, expr string
	}{
		{"network", "http.send", `http.send({"method": "get", "url": "http://127.0.0.1"}).status_code == 200`},
		{"network", "net.lookup_ip_addr", `net.lookup_ip_addr("example.com") == set()`},
		{"host", "opa.runtime", `opa.runtime().env == {}`},
		{"schema loading", "json.match_schema", `json.match_schema(input.op.params, {"$ref": "file:///etc/passwd"})[0] == true`},
		{"schema loading", "json.verify_schema", `json.verify_schema({"$ref": "file:///etc/passwd"})[0] == true`},
		{"randomness", "rand.intn", `rand.intn("seed", 10) < 5`},
		{"randomness", "uuid.rfc4122", `uuid.rfc4122("seed") != ""`},
		{"side effects", "trace", `trace("x")`},
		{"side effects", "print", `print("x")`},
		{"tokens, keys and certificates", "io.jwt.decode", `io.jwt.decode(input.op.params.token)[0].alg == "none"`},
		{"tokens, keys and certificates", "io.jwt.decode_verify", `io.jwt.decode_verify(input.op.params.token, {"jwks_url": "https://x"})[0]`},
		{"tokens, keys and certificates", "crypto.x509.parse_and_verify_certificates", `crypto.x509.parse_and_verify_certificates(input.op.params.pem)[0]`},
		{"tokens, keys and certificates", "providers.aws.sign_req", `providers.aws.sign_req({}, {}, 0) == {}`},
		{"unbounded calls", "bits.lsh", `bits.lsh(1, input.op.params.n) > 0`},
		{"unbounded calls", "strings.render_template", `strings.render_template("{{.x}}", {"x": 1}) == "1"`},
		{"unbounded calls", "regex.globs_match", `regex.globs_match("a*", "b*")`},
		{"unbounded calls", "json.marshal_with_options", `count(json.marshal_with_options(input.op.params, {"pretty": true, "indent": input.op.params.indent})) > 0`},
		{"unbounded calls", "graph.reachable_paths", `count(graph.reachable_paths(data.pam.g, ["a"])) > 0`},
		{"GraphQL", "graphql.is_valid", `graphql.is_valid("{ a }", "type Query { a: Int }")`},
		{"Rego introspection", "rego.parse_module", `rego.parse_module("x.rego", "package x") != {}`},
		{"deprecated", "any", `any([true])`},
		{"deprecated", "re_match", `re_match("a", input.op.task)`},
		// Nested in another call, and after another expression.
		{"randomness", "rand.intn", "input.op.task == \"x\"\ncount([rand.intn(\"s\", 3)]) == 1"},
	}
	families := map[string]bool{}
	for _, tc := range cases {
		families[tc.family] = true
		line := 1 + strings.Count(tc.expr, "\n")
		col := strings.Index(tc.expr[strings.LastIndex(tc.expr, "\n")+1:], tc.name) + 1
		t.Run(tc.family+"/"+tc.name+"/condition", func(t *testing.T) {
			_, err := env.CompileCondition(ctx, tc.expr)
			checkRefused(t, err, tc.name, "conditions", line, col)
		})
		t.Run(tc.family+"/"+tc.name+"/rule", func(t *testing.T) {
			src := "deny contains \"no\" if {\n  " + strings.ReplaceAll(tc.expr, "\n", "\n  ") + "\n}"
			_, err := env.CompileModule(ctx, src, "deny")
			checkRefused(t, err, tc.name, "rules", line+1, col+2)
		})
	}
	for _, r := range rules.RefusedBuiltins() {
		if !families[r.Family] {
			t.Errorf("refused family %q has no case", r.Family)
		}
	}
	// Every refused built-in, called with as many nulls as it takes.
	for _, r := range rules.RefusedBuiltins() {
		for _, name := range r.Builtins {
			b := ast.BuiltinMap[name]
			if b == nil {
				t.Errorf("%s: no such built-in", name)
				continue
			}
			args := make([]string, max(len(b.Decl.FuncArgs().Args), 1))
			for i := range args {
				args[i] = "null"
			}
			expr := fmt.Sprintf("%s(%s) == 1", name, strings.Join(args, ", "))
			_, err := env.CompileCondition(ctx, expr)
			checkRefused(t, err, name, "conditions", 1, 1)
		}
	}
}

func checkRefused(t *testing.T, err error, name, where string, line, col int) {
	t.Helper()
	var re *rules.Error
	if !errors.As(err, &re) {
		t.Fatalf("%s: error %v, want *rules.Error", name, err)
	}
	if want := name + " is not allowed in " + where; !strings.HasPrefix(re.Msg, want) {
		t.Errorf("%s: %q, want it to start %q", name, re.Msg, want)
	}
	if re.Line != line || re.Col != col {
		t.Errorf("%s: at %d:%d, want %d:%d", name, re.Line, re.Col, line, col)
	}
}

// TestSchemaRefsAreNeverOpened: json.match_schema and json.verify_schema
// with a $ref to a host file, or to a FIFO (an open of which blocks until
// a writer comes), are refused at compile time: the file's content never
// appears and the FIFO is never opened. Should the sandbox let them
// through, the test evaluates them under a deadline, so a regression
// fails instead of hanging.
func TestSchemaRefsAreNeverOpened(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret.json")
	const content = `{"type": "string", "description": "TOP-SECRET-7f3a"}`
	if err := os.WriteFile(secret, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	env := rules.NewEnv(50 * time.Millisecond)
	for _, tc := range []struct{ name, path, expr string }{
		{"match_schema file", secret, `json.match_schema(input.op.params, {"$ref": "file://%s"})[0] == true`},
		{"verify_schema file", secret, `json.verify_schema({"$ref": "file://%s"})[0] == true`},
		{"match_schema fifo", fifo, `json.match_schema(input.op.params, {"$ref": "file://%s"})[0] == true`},
		{"verify_schema fifo", fifo, `json.verify_schema({"$ref": "file://%s"})[0] == true`},
		{"match_schema in a rule", fifo, "deny contains \"x\" if json.match_schema(input, {\"$ref\": \"file://%s\"})[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := fmt.Sprintf(tc.expr, tc.path)
			done := make(chan error, 1)
			go func() {
				ctx := context.Background()
				if strings.HasPrefix(src, "deny") {
					m, err := env.CompileModule(ctx, src, "deny")
					if err == nil {
						_, err = m.Eval(ctx, map[string]any{}, now)
						err = fmt.Errorf("compiled, and evaluated to error %v", err)
					}
					done <- err
					return
				}
				c, err := env.CompileCondition(ctx, src)
				if err == nil {
					out, eerr := c.Eval(ctx, &rules.Input{Params: map[string]any{"a": 1}, Now: now})
					err = fmt.Errorf("compiled, and evaluated to %v (%v)", out, eerr)
				}
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("compiling or evaluating a $ref to a FIFO blocked: the sandbox opened it")
			}
			var re *rules.Error
			if !errors.As(err, &re) || !strings.Contains(re.Msg, "is not allowed") {
				t.Fatalf("%s: %v, want a compile error that refuses the built-in", src, err)
			}
			if strings.Contains(err.Error(), "TOP-SECRET") {
				t.Errorf("the error carries the file's content: %v", err)
			}
		})
	}
	// Nobody holds the FIFO open for reading: opening it to write without
	// blocking fails with ENXIO.
	f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err == nil {
		f.Close()
		t.Fatal("the FIFO has a reader")
	}
	if !errors.Is(err, syscall.ENXIO) {
		t.Fatalf("open the FIFO to write: %v, want ENXIO", err)
	}
}

// TestBudgetStopsRunaways: conditions and rules that would run for
// seconds or minutes stop near the budget, with a *TimeoutError, through
// OPA's cancellation (checked between expressions and inside the
// built-ins that loop).
func TestBudgetStopsRunaways(t *testing.T) {
	const budget = 50 * time.Millisecond
	// Generous: the machine running the tests may be busy and -race slows
	// everything down; the log says how long each took.
	const slack = 950 * time.Millisecond
	ctx := context.Background()
	env := rules.NewEnv(budget)
	if err := env.SetData(ctx, map[string]any{"n": 100000}); err != nil {
		t.Fatal(err)
	}
	in := &rules.Input{Params: map[string]any{"n": 1000000000}, Now: now}
	for _, tc := range []struct{ name, cond string }{
		{"huge numbers.range", "count(numbers.range(1, input.op.params.n)) > 0"},
		{"huge numbers.range_step", "count(numbers.range_step(1, 100000000000, 3)) > 0"},
		{"nested comprehension", "count([1 | some i in numbers.range(1, data.pam.n); some j in numbers.range(1, data.pam.n); i + j < 0]) > 0"},
		{"deep walk", "count([p | some i in numbers.range(1, data.pam.n); walk([[[[numbers.range(1, data.pam.n)]]]], [p, _])]) > 0"},
		{"huge cidr expand", `count(net.cidr_expand("10.0.0.0/4")) > 0`},
		{"huge replace", `count(replace(concat("", [x | some i in numbers.range(1, 1000); x := "a"]), "", concat("", [x | some i in numbers.range(1, 100000); x := "yyyyyyyyyy"]))) > 0`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := env.CompileCondition(ctx, tc.cond)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			out, err := c.Eval(ctx, in)
			took := time.Since(start)
			t.Logf("stopped after %v (budget %v)", took.Round(time.Millisecond), budget)
			var te *rules.TimeoutError
			if out != rules.Failed || !errors.As(err, &te) || !errors.Is(err, rules.ErrTimeout) || te.Budget != budget {
				t.Fatalf("Eval = %v, %v; want Failed with a *TimeoutError", out, err)
			}
			if !out.Covered() {
				t.Error("a condition out of time does not cover the operation")
			}
			if took < budget || took > budget+slack {
				t.Errorf("took %v, want about %v", took, budget)
			}
		})
	}
	t.Run("rule", func(t *testing.T) {
		m, err := env.CompileModule(ctx, "deny contains i if {\n  some i in numbers.range(1, data.pam.n)\n  some j in numbers.range(1, data.pam.n)\n  i + j < 0\n}", "deny")
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = m.Eval(ctx, map[string]any{}, now)
		took := time.Since(start)
		t.Logf("stopped after %v (budget %v)", took.Round(time.Millisecond), budget)
		if !errors.Is(err, rules.ErrTimeout) || took > budget+slack {
			t.Fatalf("Eval: %v after %v, want ErrTimeout near %v", err, took, budget)
		}
	})
	t.Run("fast conditions are untouched", func(t *testing.T) {
		c, err := env.CompileCondition(ctx, "count(numbers.range(1, 1000)) == 1000")
		if err != nil {
			t.Fatal(err)
		}
		for range 100 {
			if out, err := c.Eval(ctx, in); out != rules.True {
				t.Fatalf("Eval = %v, %v", out, err)
			}
		}
	})
	t.Run("caller's context", func(t *testing.T) {
		c, err := rules.NewEnv(time.Hour).CompileCondition(ctx, "count(numbers.range(1, input.op.params.n)) > 0")
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		out, err := c.Eval(cctx, in)
		if out != rules.Failed || err == nil || errors.Is(err, rules.ErrTimeout) {
			t.Fatalf("Eval = %v, %v; want Failed, not a timeout", out, err)
		}
	})
}
