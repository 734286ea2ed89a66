package pam

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// ParamType is the JSON type a task declares for one of its operation
// parameters.
type ParamType string

// Parameter types, as in JSON. Null is none of them: a parameter that is
// present must have a value of its declared type.
const (
	ParamString  ParamType = "string"
	ParamNumber  ParamType = "number"
	ParamBoolean ParamType = "boolean"
	ParamArray   ParamType = "array"
	ParamObject  ParamType = "object"
)

// ParamSpec declares one parameter of a task's operations.
type ParamSpec struct {
	Name     string    `json:"name"`
	Type     ParamType `json:"type"`
	Required bool      `json:"required,omitempty"`
}

// TaskSpec declares what a task's operations carry. With a declaration,
// Guard checks every operation's parameters against it before any
// condition runs: an unknown name, a missing required parameter or a value
// of the wrong type makes every conditional policy on the task cover the
// operation (fail closed), and the reason is recorded. Without one, a
// condition that compares a missing or ill-typed parameter may simply be
// false, and the operation run uncovered.
type TaskSpec struct {
	Params []ParamSpec `json:"params,omitempty"`
}

// Validate checks the declaration on its own.
func (t *TaskSpec) Validate(field string) error {
	seen := map[string]bool{}
	for i, p := range t.Params {
		f := fmt.Sprintf("%s.Params[%d]", field, i)
		if err := checkName(f+".Name", p.Name); err != nil {
			return err
		}
		if seen[p.Name] {
			return invalid(f+".Name", "%q is declared twice", p.Name)
		}
		seen[p.Name] = true
		switch p.Type {
		case ParamString, ParamNumber, ParamBoolean, ParamArray, ParamObject:
		default:
			return invalid(f+".Type", "unknown type %q (string, number, boolean, array or object)", p.Type)
		}
	}
	return nil
}

// ParamsError says why an operation's parameters do not fit its task's
// declaration. Guard records it and fails closed; it is never returned
// on its own.
type ParamsError struct {
	Task     string
	Problems []string // sorted, one sentence each
}

func (e *ParamsError) Error() string {
	return fmt.Sprintf("the parameters of %s do not fit its declaration: %s", e.Task, strings.Join(e.Problems, "; "))
}

// checkParams returns a *ParamsError when params do not fit t.
func (t *TaskSpec) checkParams(task string, params map[string]any) error {
	var problems []string
	for _, p := range t.Params {
		v, ok := params[p.Name]
		switch {
		case !ok && p.Required:
			problems = append(problems, fmt.Sprintf("%s is required", p.Name))
		case ok && !hasType(v, p.Type):
			problems = append(problems, fmt.Sprintf("%s must be %s, not %s", p.Name, article(p.Type), typeName(v)))
		}
	}
	for name := range params {
		if !slices.ContainsFunc(t.Params, func(p ParamSpec) bool { return p.Name == name }) {
			problems = append(problems, fmt.Sprintf("%s is not declared", cleanText(name)))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	sort.Strings(problems)
	return &ParamsError{Task: task, Problems: problems}
}

// hasType reports whether v, a JSON-like Go value, is of type t.
func hasType(v any, t ParamType) bool {
	return typeOf(v) == t
}

// typeOf returns the JSON type of v, "" for null and for values that are
// not JSON-like.
func typeOf(v any) ParamType {
	switch v.(type) {
	case string:
		return ParamString
	case bool:
		return ParamBoolean
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64, json.Number:
		return ParamNumber
	case []any, []string, []int, []int64, []float64, []bool, []map[string]any:
		return ParamArray
	case map[string]any, map[string]string:
		return ParamObject
	}
	return ""
}

func typeName(v any) string {
	if v == nil {
		return "null"
	}
	if t := typeOf(v); t != "" {
		return article(t)
	}
	return fmt.Sprintf("a Go %T", v)
}

func article(t ParamType) string {
	if t == ParamArray || t == ParamObject {
		return "an " + string(t)
	}
	return "a " + string(t)
}
