package rules

import "slices"

// The sandbox's lists, for the tests of package rules_test.
var AllowedBuiltins = allowedBuiltins

// RefusedFamily is a refused family in exported form.
type RefusedFamily struct {
	Family, Reason string
	Builtins       []string
}

// RefusedBuiltins returns the refused families.
func RefusedBuiltins() []RefusedFamily {
	out := make([]RefusedFamily, len(refusedBuiltins))
	for i, r := range refusedBuiltins {
		out[i] = RefusedFamily{r.family, r.reason, r.builtins}
	}
	return out
}

// Builtins returns the names of the built-ins in e's capabilities, sorted.
func (e *Env) Builtins() []string {
	names := make([]string, len(e.caps.Builtins))
	for i, b := range e.caps.Builtins {
		names[i] = b.Name
	}
	slices.Sort(names)
	return names
}

// Evals returns how many times OPA evaluated c (memo misses).
func (c *Condition) Evals() int64 { return c.evals.Load() }

// Memoised reports whether c's outcomes are memoised.
func (c *Condition) Memoised() bool { return c.memoOK }

// NondeterministicAllowed returns the allowed built-ins that OPA marks
// non-deterministic.
func NondeterministicAllowed() []string {
	var out []string
	for _, b := range newSandbox().capabilities().Builtins {
		if b.Nondeterministic {
			out = append(out, b.Name)
		}
	}
	return out
}
