// Package rules compiles and evaluates the Rego that policies carry:
// conditions over an operation, request rules and auto-approval rules.
//
// Every piece of Rego is compiled on its own when its policy is created or
// changed, in a sandbox (an explicit list of pure, bounded built-ins; see
// sandbox.go) with strict built-in errors, and evaluated with the engine's
// clock through EvalTime, within a time budget. Host data (the catalog)
// lives in one in-memory OPA store under data.pam, shared by every
// compiled query and replaced whole when the catalog changes.
package rules

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/util"
)

// Error is a Rego syntax or compile error with its position in the source
// the host wrote (line and column start at 1).
type Error struct {
	Line, Col int
	Msg       string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%d:%d: %s", e.Line, e.Col, e.Msg)
	}
	return e.Msg
}

// Env holds what all compiled Rego shares: the sandbox, the time budget
// and the store behind data.pam.
type Env struct {
	sandbox  *sandbox
	caps     *ast.Capabilities
	budget   time.Duration
	store    storage.Store
	compiler *ast.Compiler // holds no modules; shared by every condition
	gen      atomic.Uint64 // moved by SetData: memoised outcomes are dropped
}

// NewEnv returns an environment whose data.pam is empty. budget bounds
// each evaluation of what it compiles (real time, not the engine's
// clock); zero means no bound.
func NewEnv(budget time.Duration) *Env {
	sb := newSandbox()
	caps := sb.capabilities()
	c := ast.NewCompiler().WithCapabilities(caps).WithEnablePrintStatements(false)
	c.Compile(nil)
	return &Env{
		sandbox:  sb,
		caps:     caps,
		budget:   max(budget, 0),
		store:    inmem.NewFromObject(map[string]any{"pam": map[string]any{}}),
		compiler: c,
	}
}

// ErrTimeout is what Eval's error wraps when an evaluation ran past the
// time budget: the evaluation was stopped and its outcome is an error.
var ErrTimeout = errors.New("ran out of time")

// TimeoutError is an evaluation stopped at its budget. It wraps
// ErrTimeout.
type TimeoutError struct {
	What   string // "condition" or "rule"
	Budget time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("the %s ran out of time: evaluation stopped at its budget of %v", e.What, e.Budget)
}

func (e *TimeoutError) Unwrap() error { return ErrTimeout }

// stopper is the cancellation OPA checks during an evaluation, between
// expressions and inside the built-ins that loop (numbers.range, say): it
// trips when the caller's context ends or the budget runs out.
type stopper struct {
	stopped, timedOut atomic.Bool
}

func (s *stopper) Cancel()         { s.stopped.Store(true) }
func (s *stopper) Cancelled() bool { return s.stopped.Load() }
func (s *stopper) timeout()        { s.timedOut.Store(true); s.stopped.Store(true) }

// eval evaluates pq on input at now within budget. A timer and, for a
// context that can end, a context callback trip one stopper: no goroutine
// per evaluation.
func eval(ctx context.Context, pq *rego.PreparedEvalQuery, input ast.Value, now time.Time, budget time.Duration, what string) (rego.ResultSet, error) {
	s := &stopper{}
	if budget > 0 {
		t := time.AfterFunc(budget, s.timeout)
		defer t.Stop()
	}
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, s.Cancel)
		defer stop()
	}
	rs, err := pq.Eval(ctx, rego.EvalParsedInput(input), rego.EvalTime(now), rego.EvalExternalCancel(s))
	if err != nil && s.timedOut.Load() {
		return nil, &TimeoutError{What: what, Budget: budget}
	}
	return rs, err
}

// SetData replaces data.pam. Queries compiled earlier see the new data on
// their next evaluation.
func (e *Env) SetData(ctx context.Context, data map[string]any) error {
	var v any = map[string]any{}
	if data != nil {
		v = data
	}
	// Normalise to the JSON types the store holds.
	if err := util.RoundTrip(&v); err != nil {
		return err
	}
	if err := storage.WriteOne(ctx, e.store, storage.ReplaceOp, storage.MustParsePath("/pam"), v); err != nil {
		return err
	}
	// After the write: an outcome memoised under the new generation was
	// found with the new data.
	e.gen.Add(1)
	return nil
}

func (e *Env) parserOptions() ast.ParserOptions {
	return ast.ParserOptions{RegoVersion: ast.RegoV1, Capabilities: e.caps}
}

func (e *Env) options() []func(*rego.Rego) {
	return []func(*rego.Rego){
		rego.Store(e.store),
		rego.Capabilities(e.caps),
		rego.StrictBuiltinErrors(true),
		rego.SetRegoVersion(ast.RegoV1),
	}
}

// located converts OPA errors to Errors, moving rows up by lineShift (the
// lines the compiler saw that the host did not write).
func located(err error, lineShift int) error {
	var errs ast.Errors
	if errors.As(err, &errs) && len(errs) > 0 {
		first := errs[0]
		e := &Error{Msg: first.Message}
		if first.Location != nil {
			e.Line, e.Col = first.Location.Row-lineShift, first.Location.Col
		}
		if len(errs) > 1 {
			e.Msg += fmt.Sprintf(" (and %d more errors)", len(errs)-1)
		}
		return e
	}
	var ae *ast.Error
	if errors.As(err, &ae) {
		e := &Error{Msg: ae.Message}
		if ae.Location != nil {
			e.Line, e.Col = ae.Location.Row-lineShift, ae.Location.Col
		}
		return e
	}
	return &Error{Msg: err.Error()}
}

// Input is what a condition may read: input.actor, input.now (Unix
// nanoseconds), input.op.task and input.op.params.
type Input struct {
	Actor  string
	Task   string
	Params map[string]any
	Now    time.Time
}

// Outcome is the result of a condition.
type Outcome int

const (
	// True: the condition holds, the policy covers the operation.
	True Outcome = iota
	// False: every expression evaluated to a boolean and one was false.
	False
	// Undefined: no result, usually because an input the condition reads is
	// missing. Counts as covered.
	Undefined
	// NotBoolean: an expression produced something other than a boolean.
	// Counts as covered.
	NotBoolean
	// Failed: evaluation returned an error. Counts as covered.
	Failed
)

func (o Outcome) String() string {
	switch o {
	case True:
		return "true"
	case False:
		return "false"
	case Undefined:
		return "undefined"
	case NotBoolean:
		return "not boolean"
	case Failed:
		return "error"
	}
	return "unknown"
}

// Covered reports whether the outcome makes the policy cover the operation:
// everything but False does (fail closed).
func (o Outcome) Covered() bool { return o != False }

// Condition is a compiled policy condition.
type Condition struct {
	pq     rego.PreparedEvalQuery
	budget time.Duration
	vars   []string
	// What the condition reads of the input; only that is built per call.
	allInput, allOp, allParams, actor, now, task bool
	params                                       []string

	env    *Env
	memoOK bool // see memo.go
	memo   atomic.Pointer[memo]
	evals  atomic.Int64 // evaluations by OPA, for the tests
}

// CompileCondition compiles a condition: one or more Rego expressions,
// separated by newlines or semicolons, each of which must evaluate to a
// boolean. Each expression is assigned to a variable (x := expr), so an
// ordinary false comparison yields false instead of undefined.
func (e *Env) CompileCondition(ctx context.Context, src string) (*Condition, error) {
	body, err := ast.ParseBodyWithOpts(src, e.parserOptions())
	if err != nil {
		return nil, located(err, 0)
	}
	c := &Condition{}
	query := make(ast.Body, 0, len(body))
	for i, expr := range body {
		term, err := booleanTerm(expr)
		if err != nil {
			return nil, err
		}
		v := fmt.Sprintf("__pam_c%d", i)
		c.vars = append(c.vars, v)
		assign := ast.Assign.Expr(ast.VarTerm(v), term)
		assign.Location = expr.Location
		query = append(query, assign)
	}
	if err := e.sandbox.checkCalls(body, "conditions", 0); err != nil {
		return nil, err
	}
	c.analyse(body)
	opts := append(e.options(), rego.ParsedQuery(query), rego.Compiler(e.compiler))
	pq, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		return nil, located(err, 0)
	}
	c.pq, c.budget, c.env = pq, e.budget, e
	c.memoOK = !c.allInput && !c.now && memoisable(query)
	return c, nil
}

func booleanTerm(expr *ast.Expr) (*ast.Term, error) {
	fail := func(msg string) error {
		e := &Error{Msg: msg}
		if expr.Location != nil {
			e.Line, e.Col = expr.Location.Row, expr.Location.Col
		}
		return e
	}
	switch {
	case expr.Negated:
		return nil, fail("a condition expression cannot use 'not'; compare explicitly, e.g. x == false or not_in checks with 'in'")
	case len(expr.With) > 0:
		return nil, fail("a condition cannot use 'with'")
	case expr.IsAssignment(), expr.IsEquality():
		return nil, fail("a condition expression must be a boolean test such as a == b, not an assignment or unification")
	}
	switch t := expr.Terms.(type) {
	case *ast.Term:
		return t, nil
	case []*ast.Term:
		call := ast.CallTerm(t...)
		call.Location = expr.Location
		return call, nil
	default:
		return nil, fail("a condition expression must be a boolean test, not a declaration")
	}
}

// analyse records which parts of the input the condition reads.
func (c *Condition) analyse(body ast.Body) {
	inputVars, inputRefs := 0, 0
	ast.WalkVars(body, func(v ast.Var) bool {
		if v.Equal(ast.InputRootDocument.Value.(ast.Var)) {
			inputVars++
		}
		return false
	})
	ast.WalkRefs(body, func(r ast.Ref) bool {
		if !r[0].Equal(ast.InputRootDocument) {
			return false
		}
		inputRefs++
		key := func(i int) (string, bool) {
			if len(r) <= i {
				return "", false
			}
			s, ok := r[i].Value.(ast.String)
			return string(s), ok
		}
		switch k, ok := key(1); {
		case !ok:
			c.allInput = true
		case k == "actor":
			c.actor = true
		case k == "now":
			c.now = true
		case k == "op":
			switch k2, ok := key(2); {
			case !ok:
				c.allOp = true
			case k2 == "task":
				c.task = true
			case k2 == "params":
				if p, ok := key(3); ok {
					c.params = append(c.params, p)
				} else {
					c.allParams = true
				}
			}
		}
		return false
	})
	if inputVars > inputRefs {
		// input used on its own (as a function argument, say).
		c.allInput = true
	}
	sort.Strings(c.params)
}

// input builds the Rego input holding only what the condition reads.
func (c *Condition) input(in *Input) (ast.Value, error) {
	all := c.allInput
	obj := ast.NewObject()
	if all || c.actor {
		obj.Insert(ast.InternedTerm("actor"), ast.StringTerm(in.Actor))
	}
	if all || c.now {
		obj.Insert(ast.InternedTerm("now"), ast.NewTerm(ast.Number(strconv.FormatInt(in.Now.UnixNano(), 10))))
	}
	allOp := all || c.allOp
	if allOp || c.task || c.allParams || len(c.params) > 0 {
		op := ast.NewObject()
		if allOp || c.task {
			op.Insert(ast.InternedTerm("task"), ast.StringTerm(in.Task))
		}
		if allOp || c.allParams {
			v, err := ast.InterfaceToValue(in.Params)
			if err != nil {
				return nil, err
			}
			if in.Params == nil {
				v = ast.NewObject()
			}
			op.Insert(ast.InternedTerm("params"), ast.NewTerm(v))
		} else {
			params := ast.NewObject()
			for _, name := range c.params {
				raw, ok := in.Params[name]
				if !ok {
					continue
				}
				v, err := toValue(raw)
				if err != nil {
					return nil, err
				}
				params.Insert(ast.StringTerm(name), ast.NewTerm(v))
			}
			op.Insert(ast.InternedTerm("params"), ast.NewTerm(params))
		}
		obj.Insert(ast.InternedTerm("op"), ast.NewTerm(op))
	}
	return obj, nil
}

func toValue(v any) (ast.Value, error) {
	switch x := v.(type) {
	case string:
		return ast.String(x), nil
	case bool:
		return ast.Boolean(x), nil
	case int:
		return ast.Number(strconv.Itoa(x)), nil
	}
	return ast.InterfaceToValue(v)
}

// Eval evaluates the condition for one operation, or returns the outcome
// memoised for the same input (see memo.go). The error, when not nil,
// explains a Failed outcome; past the time budget it is a *TimeoutError.
func (c *Condition) Eval(ctx context.Context, in *Input) (Outcome, error) {
	out, _, err := c.EvalMemo(ctx, in)
	return out, err
}

// EvalMemo is Eval, and also reports whether the outcome came from the
// memo (hit) rather than from OPA.
func (c *Condition) EvalMemo(ctx context.Context, in *Input) (out Outcome, hit bool, err error) {
	if !c.memoOK {
		out, err = c.eval(ctx, in)
		return out, false, err
	}
	var buf [256]byte
	key, ok := c.key(buf[:0], in)
	if !ok {
		out, err = c.eval(ctx, in)
		return out, false, err
	}
	gen := c.env.gen.Load()
	m := c.memo.Load()
	if m == nil || m.gen != gen {
		fresh := newMemo(gen)
		if !c.memo.CompareAndSwap(m, fresh) {
			out, err = c.eval(ctx, in) // another generation raced in: no memo this time
			return out, false, err
		}
		m = fresh
	}
	if out, ok := m.get(key); ok {
		return out, true, nil
	}
	out, err = c.eval(ctx, in)
	if err == nil {
		m.put(key, out)
	}
	return out, false, err
}

// eval has OPA evaluate the condition.
func (c *Condition) eval(ctx context.Context, in *Input) (Outcome, error) {
	c.evals.Add(1)
	v, err := c.input(in)
	if err != nil {
		return Failed, err
	}
	rs, err := eval(ctx, &c.pq, v, in.Now, c.budget, "condition")
	if err != nil {
		return Failed, err
	}
	if len(rs) == 0 {
		return Undefined, nil
	}
	// Several rows come from iteration (x[_] == y): the condition holds if
	// any row holds, and is false only when every row has a false.
	out := False
	for _, row := range rs {
		rowOut := True
		for _, name := range c.vars {
			b, ok := row.Bindings[name].(bool)
			switch {
			case !ok:
				return NotBoolean, nil
			case !b:
				rowOut = False
			}
		}
		if rowOut == True {
			out = True
		}
	}
	return out, nil
}

// Module is a compiled rule module: request rules and auto-approval rules.
type Module struct {
	pq     rego.PreparedEvalQuery
	budget time.Duration
}

// Package is the package that rule modules are compiled in; the host's
// source is the module's body.
const Package = "pamrule"

// CompileModule compiles src, a set of Rego rules without a package line,
// and checks that it defines rule.
func (e *Env) CompileModule(ctx context.Context, src, rule string) (*Module, error) {
	const header = "package " + Package + "\n"
	m, err := ast.ParseModuleWithOpts("rule.rego", header+src, e.parserOptions())
	if err != nil {
		return nil, located(err, 1)
	}
	defined := false
	for _, r := range m.Rules {
		if r.Head.Name.String() == rule || (len(r.Head.Reference) > 0 && r.Head.Reference[0].Value.Compare(ast.Var(rule)) == 0) {
			defined = true
		}
	}
	if !defined {
		return nil, &Error{Msg: fmt.Sprintf("the rules must define %q", rule)}
	}
	if err := e.sandbox.checkCalls(m, "rules", 1); err != nil {
		return nil, err
	}
	opts := append(e.options(), rego.ParsedModule(m), rego.Query("data."+Package+"."+rule))
	pq, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		return nil, located(err, 1)
	}
	return &Module{pq: pq, budget: e.budget}, nil
}

// Eval evaluates the module's rule with input and returns its value (nil
// when undefined). Past the time budget the error is a *TimeoutError.
func (m *Module) Eval(ctx context.Context, input map[string]any, now time.Time) (any, error) {
	v, err := ast.InterfaceToValue(input)
	if err != nil {
		return nil, err
	}
	rs, err := eval(ctx, &m.pq, v, now, m.budget, "rule")
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, nil
	}
	return rs[0].Expressions[0].Value, nil
}
