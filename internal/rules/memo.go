package rules

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Conditions are memoised: a condition's outcome is a function of exactly
// the parts of the input it reads (Condition.analyse) and of data.pam, so
// an operation whose read parts were seen before takes the outcome found
// then. What is kept, and when it is not:
//
//   - the key is an exact, type-tagged encoding of the parts read (the
//     actor, the task, the named parameters or all of them), so two
//     operations share an entry only if OPA would be given the same input;
//     a parameter of a type the encoding does not know is not memoised;
//   - a condition that reads input.now, or the whole input, or calls a
//     built-in OPA marks non-deterministic, is never memoised;
//   - only outcomes are kept, never errors (a time budget that ran out
//     says nothing of the next evaluation);
//   - a change of data.pam (Env.SetData) drops every entry; a changed
//     policy is compiled again, with a memo of its own;
//   - a memo holds at most memoSize entries, and starts afresh when full.
//
// Reading an entry writes nothing shared: the entries seen twice or more
// are in an immutable map behind an atomic pointer. Entries seen once wait
// in a small map under a mutex, and move to the immutable map when one of
// them is seen again (or enough of them have gathered), so that a key used
// once costs one map insert and a key used again costs one copy.

// memoSize bounds the entries of one condition's memo.
const memoSize = 4096

// memo is one condition's cache, for one generation of data.pam.
type memo struct {
	gen   uint64
	hot   atomic.Pointer[map[string]Outcome]
	mu    sync.Mutex
	fresh map[string]Outcome
}

func newMemo(gen uint64) *memo {
	m := &memo{gen: gen, fresh: map[string]Outcome{}}
	m.hot.Store(&map[string]Outcome{})
	return m
}

// get returns the outcome kept for key.
func (m *memo) get(key []byte) (Outcome, bool) {
	if out, ok := (*m.hot.Load())[string(key)]; ok {
		return out, true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out, ok := m.fresh[string(key)]
	if ok {
		m.promote()
	}
	return out, ok
}

// put keeps out for key.
func (m *memo) put(key []byte, out Outcome) {
	m.mu.Lock()
	defer m.mu.Unlock()
	hot := *m.hot.Load()
	if len(hot)+len(m.fresh) >= memoSize {
		m.hot.Store(&map[string]Outcome{})
		clear(m.fresh)
		hot = nil
	}
	m.fresh[string(key)] = out
	if len(m.fresh) > len(hot)/4+64 {
		m.promote()
	}
}

// promote moves the entries seen once to the immutable map. Called with
// mu held.
func (m *memo) promote() {
	old := *m.hot.Load()
	hot := make(map[string]Outcome, len(old)+len(m.fresh))
	for k, v := range old {
		hot[k] = v
	}
	for k, v := range m.fresh {
		hot[k] = v
	}
	m.hot.Store(&hot)
	clear(m.fresh)
}

// memoisable reports whether a condition whose body is body may be
// memoised: it calls no built-in OPA marks non-deterministic. (What it
// reads of the input is checked on its own.)
func memoisable(body ast.Body) bool {
	ok := true
	ast.WalkTerms(body, func(t *ast.Term) bool {
		if call, isCall := t.Value.(ast.Call); isCall && len(call) > 0 {
			if b := ast.BuiltinMap[call[0].String()]; b == nil || b.Nondeterministic {
				ok = false
			}
		}
		return !ok
	})
	return ok
}

// key appends to b the memo key of the parts of in that c reads, and
// reports whether there is one (every value of a type the encoding
// knows).
func (c *Condition) key(b []byte, in *Input) ([]byte, bool) {
	if c.actor {
		b = appendStr(append(b, 'A'), in.Actor)
	}
	if c.allOp || c.task {
		b = appendStr(append(b, 'T'), in.Task)
	}
	ok := true
	switch {
	case c.allOp || c.allParams:
		if in.Params == nil {
			// Built as an empty object, like an empty map.
			return append(b, 'P', 0), true
		}
		b, ok = appendValue(append(b, 'P'), in.Params)
	default:
		for _, name := range c.params {
			raw, present := in.Params[name]
			if !present {
				b = appendStr(append(b, 'x'), name)
				continue
			}
			b = appendStr(append(b, 'p'), name)
			if b, ok = appendValue(b, raw); !ok {
				return b, false
			}
		}
	}
	return b, ok
}

func appendStr(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// appendValue appends a type-tagged encoding of v: equal encodings are
// equal Go values of the same type, so they give OPA the same input.
func appendValue(b []byte, v any) ([]byte, bool) {
	switch x := v.(type) {
	case nil:
		return append(b, 'n'), true
	case bool:
		if x {
			return append(b, 't'), true
		}
		return append(b, 'f'), true
	case string:
		return appendStr(append(b, 's'), x), true
	case int:
		return appendStr(append(b, 'i'), strconv.Itoa(x)), true
	case int64:
		return appendStr(append(b, 'I'), strconv.FormatInt(x, 10)), true
	case int32:
		return appendStr(append(b, 'j'), strconv.FormatInt(int64(x), 10)), true
	case uint64:
		return appendStr(append(b, 'U'), strconv.FormatUint(x, 10)), true
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return b, false
		}
		return binary.BigEndian.AppendUint64(append(b, 'F'), math.Float64bits(x)), true
	case json.Number:
		return appendStr(append(b, 'J'), string(x)), true
	case []any:
		b = binary.AppendUvarint(append(b, 'a'), uint64(len(x)))
		for _, e := range x {
			var ok bool
			if b, ok = appendValue(b, e); !ok {
				return b, false
			}
		}
		return b, true
	case []string:
		b = binary.AppendUvarint(append(b, 'S'), uint64(len(x)))
		for _, e := range x {
			b = appendStr(b, e)
		}
		return b, true
	case map[string]any:
		var stack [16]string
		keys := stack[:0]
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = binary.AppendUvarint(append(b, 'm'), uint64(len(x)))
		for _, k := range keys {
			var ok bool
			if b, ok = appendValue(appendStr(b, k), x[k]); !ok {
				return b, false
			}
		}
		return b, true
	}
	return b, false
}
