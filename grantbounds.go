package pam

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/big"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// A grant may be narrower than its window: bound to the operations
// whose parameters equal the values its request named (Request.Bind),
// and limited to a number of runs (Request.MaxUses). This file holds
// both: checking them at submission, matching an operation against a
// grant's bound values, and what the trail and the approvers read.

// maxBindValueLen bounds a bound string value.
const maxBindValueLen = 1024

// bindName is what a bound parameter's name may be.
var bindName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,63}$`)

// exact is the bound of the integers a float64 holds exactly.
const exact = 1 << 53

// normalizeBind checks the values of a RequestInput.Bind and returns
// them as a request stores them: strings, booleans, and numbers as
// float64, exactly (an integer beyond 2^53 is refused rather than
// rounded). Nil for an empty bind.
func normalizeBind(bind map[string]any) (map[string]any, error) {
	if len(bind) == 0 {
		return nil, nil
	}
	if len(bind) > MaxBind {
		return nil, invalid("Bind", "more than %d parameters", MaxBind)
	}
	out := make(map[string]any, len(bind))
	for _, name := range slices.Sorted(maps.Keys(bind)) {
		field := "Bind[" + strconv.Quote(cleanText(name)) + "]"
		if !bindName.MatchString(name) {
			// A name is shown to approvers as it is: one that could read
			// as more than a name (spaces, quotes, "=", format
			// characters) is refused.
			return nil, invalid(field, "a bound parameter's name is letters, digits, _, - and . (at most 64), starting with a letter or _")
		}
		v, ok := bindValue(bind[name])
		switch {
		case !ok && typeOf(bind[name]) == ParamNumber:
			return nil, invalid(field, "must be a number within ±2^53 that a float64 holds exactly")
		case !ok:
			return nil, invalid(field, "must be a string, a number or a boolean, not %s", typeName(bind[name]))
		}
		if s, isString := v.(string); isString {
			if err := checkText(field, s, maxBindValueLen); err != nil {
				return nil, err
			}
		}
		out[name] = v
	}
	return out, nil
}

// bindValue returns v as bound values are kept and compared: a string,
// a bool or a float64 that is exactly v, within ±2^53 so that no two
// integers share one. ok is false for anything else: bound values and
// operation parameters outside it never match.
func bindValue(v any) (any, bool) {
	switch x := v.(type) {
	case string, bool:
		return x, true
	case float64:
		return x, !math.IsNaN(x) && x > -exact && x < exact
	case float32:
		return bindValue(float64(x))
	case int:
		return float64(x), x > -exact && x < exact
	case int8:
		return float64(x), true
	case int16:
		return float64(x), true
	case int32:
		return float64(x), true
	case int64:
		return float64(x), x > -exact && x < exact
	case uint:
		return float64(x), x < exact
	case uint8:
		return float64(x), true
	case uint16:
		return float64(x), true
	case uint32:
		return float64(x), true
	case uint64:
		return float64(x), x < exact
	case json.Number:
		// Exactly, or not at all: Float64 would round.
		r, ok := new(big.Rat).SetString(string(x))
		if !ok {
			return nil, false
		}
		f, isExact := r.Float64()
		if !isExact {
			return nil, false
		}
		return bindValue(f)
	}
	return nil, false
}

// bounds checks n's Bind and MaxUses against policy p and the catalog,
// and returns what the request stores: the normalized bound values and
// the runs it allows.
//
//   - Every parameter p requires bound (RequireBind) is bound.
//   - When the catalog declares the parameters of any task of the scope,
//     each bound name is declared by one of them, as a string, number or
//     boolean, and its value has that type: a bind that no operation can
//     match is refused rather than granted.
//   - MaxUses is at most p's; 0 takes p's.
func (s *snapshot) bounds(p *Policy, n *RequestInput) (map[string]any, int, error) {
	bind, err := normalizeBind(n.Bind)
	if err != nil {
		return nil, 0, err
	}
	for _, name := range p.RequireBind {
		if _, ok := bind[name]; !ok {
			return nil, 0, invalid("Bind", "policy %s requires binding %s (so that a grant covers one target)", p.ID, strings.Join(p.RequireBind, ", "))
		}
	}
	if len(bind) > 0 {
		scope := n.Scope
		if scope == (Scope{}) {
			scope = p.Scope
		}
		tasks := s.catalog.tasks(scope)
		for _, name := range slices.Sorted(maps.Keys(bind)) {
			if err := checkBound(s.catalog, tasks, name, bind[name], scope); err != nil {
				return nil, 0, err
			}
		}
	}
	uses := n.MaxUses
	switch {
	case p.MaxUses == 0:
	case uses == 0:
		uses = p.MaxUses
	case uses > p.MaxUses:
		return nil, 0, invalid("MaxUses", "%d runs asked for; policy %s allows at most %d", uses, p.ID, p.MaxUses)
	}
	return bind, uses, nil
}

// checkBound checks one bound parameter against the declarations of the
// scope's tasks. Over a scope of one task, an undeclared task binds any
// name; a declared one, only the names it declares, as a string, number
// or boolean of the value's type. Over a scope of several tasks, each
// must declare the name with that type: a name means one thing in one
// task and another (or nothing) in the next, and a grant bound to one
// target of one task must not cover every target of another (see
// boundCovers).
func checkBound(ix *catalogIndex, tasks []string, name string, v any, scope Scope) error {
	field := "Bind[" + strconv.Quote(name) + "]"
	for _, task := range tasks {
		spec := ix.specs[task]
		if spec == nil {
			if len(tasks) == 1 {
				return nil
			}
			return invalid(field, "%s covers %d tasks, and the catalog declares no parameters of %s: a binding over several tasks needs each to declare %s", scope, len(tasks), task, name)
		}
		i := slices.IndexFunc(spec.Params, func(ps ParamSpec) bool { return ps.Name == name })
		switch {
		case i < 0 && len(tasks) == 1:
			return invalid(field, "no task of %s declares a parameter %s", scope, name)
		case i < 0:
			return invalid(field, "%s covers %s, which does not declare a parameter %s", scope, task, name)
		case spec.Params[i].Type != typeOf(v):
			return invalid(field, "the catalog declares %s of %s as %s, not %s", name, task, article(spec.Params[i].Type), typeName(v))
		}
	}
	return nil
}

// boundCovers reports whether a grant of scope bound to bind may cover
// task at all: a grant of one task, or, over several tasks, one whose
// every bound name the task declares (the rule checkBound enforced at
// submission, checked again against the catalog of now).
func boundCovers(ix *catalogIndex, scope Scope, task string, bind map[string]any) bool {
	if len(bind) == 0 || scope.Kind == KindTask {
		return true
	}
	spec := ix.specs[task]
	if spec == nil {
		return false
	}
	for name := range bind {
		if !slices.ContainsFunc(spec.Params, func(ps ParamSpec) bool { return ps.Name == name }) {
			return false
		}
	}
	return true
}

// bindMismatch returns "" when params match every value in bind, and
// otherwise the first bound parameter, by name, that they do not.
func bindMismatch(bind, params map[string]any) string {
	if len(bind) == 0 {
		return ""
	}
	for _, name := range slices.Sorted(maps.Keys(bind)) {
		// Both sides as bindValue keeps them: a store may read a bound
		// number back as another numeric type.
		want, _ := bindValue(bind[name])
		got, ok := bindValue(params[name])
		if !ok || got != want {
			return name
		}
	}
	return ""
}

// formatBind writes bind as `a = "x", n = 3`, by name.
func formatBind(bind map[string]any) string {
	parts := make([]string, 0, len(bind))
	for _, name := range slices.Sorted(maps.Keys(bind)) {
		parts = append(parts, name+" = "+formatBound(bind[name]))
	}
	return strings.Join(parts, ", ")
}

// formatBound writes one bound value as JSON would.
func formatBound(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(cleanText(x))
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	return fmt.Sprint(v)
}

// bindInput is Request.Bind as rules read it (input.request.bind): an
// object, empty when nothing is bound.
func bindInput(bind map[string]any) map[string]any {
	if bind == nil {
		return map[string]any{}
	}
	return maps.Clone(bind)
}

// boundsDetail adds to an event's detail what bounds r: "bind" and
// "max_uses", when set.
func (r *Request) boundsDetail(detail map[string]string) {
	if len(r.Bind) > 0 {
		detail["bind"] = formatBind(r.Bind)
	}
	if r.MaxUses > 0 {
		detail["max_uses"] = strconv.Itoa(r.MaxUses)
	}
}

// Bounds says in words what narrows r's grant beyond its scope and
// window: `bound to identity = "ceo@contoso.com"; 1 run (0 used)`, or ""
// when nothing does. Approvers read it wherever they decide.
func (r Request) Bounds() string {
	var parts []string
	if len(r.Bind) > 0 {
		parts = append(parts, "bound to "+formatBind(r.Bind))
	}
	if r.MaxUses > 0 {
		parts = append(parts, fmt.Sprintf("%s (%d used)", runCount(r.MaxUses), r.Uses))
	}
	return strings.Join(parts, "; ")
}
