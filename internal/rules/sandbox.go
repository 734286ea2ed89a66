package rules

import (
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
)

// The sandbox: policy Rego may call only the built-ins in allowedBuiltins,
// which are pure (they read nothing but their arguments, input and
// data.pam) and bounded (their work grows with their arguments, or they
// stop when the evaluation's time budget ends). A call to a built-in in
// refusedBuiltins is refused at compile time with the family's reason. A
// built-in in neither list (one a newer OPA adds) is not in the
// capabilities either, so it is refused too; TestEveryBuiltinIsClassified
// fails until it is put in one of the two lists.

// allowedBuiltins are the built-ins policy Rego may call, by family.
var allowedBuiltins = [][]string{
	// Operators: assignment, unification, comparison, membership (in),
	// set union and intersection (|, &), template strings.
	{"assign", "eq", "equal", "neq", "gt", "gte", "lt", "lte", "internal.member_2", "internal.member_3", "or", "and",
		"internal.template_string"},
	// Numbers. numbers.range and numbers.range_step check the time budget
	// while they build the range.
	{"plus", "minus", "mul", "div", "rem", "abs", "ceil", "floor", "round", "numbers.range", "numbers.range_step",
		"format_int", "to_number"},
	// Bits (bits.lsh is refused below).
	{"bits.and", "bits.or", "bits.xor", "bits.negate", "bits.rsh"},
	// Aggregates.
	{"count", "sum", "product", "max", "min", "sort"},
	// Arrays, sets and objects.
	{"array.concat", "array.flatten", "array.reverse", "array.slice", "intersection", "union",
		"object.filter", "object.get", "object.keys", "object.remove", "object.subset", "object.union", "object.union_n",
		"json.filter", "json.remove", "json.patch"},
	// Strings. replace checks the time budget while it writes.
	{"concat", "contains", "endswith", "indexof", "indexof_n", "lower", "upper", "replace", "split", "sprintf", "startswith",
		"strings.any_prefix_match", "strings.any_suffix_match", "strings.count", "strings.replace_n", "strings.reverse",
		"strings.split_n", "substring", "trim", "trim_left", "trim_prefix", "trim_right", "trim_space", "trim_suffix"},
	// Regular expressions (RE2: linear time) and globs.
	{"regex.find_all_string_submatch_n", "regex.find_n", "regex.is_valid", "regex.match", "regex.replace", "regex.split",
		"regex.template_match", "glob.match", "glob.quote_meta"},
	// Types.
	{"is_array", "is_boolean", "is_null", "is_number", "is_object", "is_set", "is_string", "type_name"},
	// Encodings.
	{"base64.decode", "base64.encode", "base64.is_valid", "base64url.decode", "base64url.encode", "base64url.encode_no_pad",
		"hex.decode", "hex.encode", "json.is_valid", "json.marshal", "json.unmarshal",
		"yaml.is_valid", "yaml.marshal", "yaml.unmarshal", "urlquery.decode", "urlquery.decode_object", "urlquery.encode",
		"urlquery.encode_object", "uri.is_valid", "uri.parse"},
	// Hashes and HMACs of strings the condition has.
	{"crypto.md5", "crypto.sha1", "crypto.sha256", "crypto.hmac.equal", "crypto.hmac.md5", "crypto.hmac.sha1",
		"crypto.hmac.sha256", "crypto.hmac.sha512"},
	// Time. time.now_ns is the engine's clock (the evaluation's EvalTime,
	// the same instant as input.now), never the host's.
	{"time.now_ns", "time.add_date", "time.clock", "time.date", "time.diff", "time.format", "time.parse_duration_ns",
		"time.parse_ns", "time.parse_rfc3339_ns", "time.weekday"},
	// Addresses: CIDR arithmetic on strings (net.cidr_expand checks the
	// time budget while it expands).
	{"net.cidr_contains", "net.cidr_contains_matches", "net.cidr_expand", "net.cidr_intersects", "net.cidr_is_valid",
		"net.cidr_merge"},
	// Graphs and documents: linear in their argument.
	{"graph.reachable", "walk"},
	// Versions, units, UUID parsing.
	{"semver.compare", "semver.is_valid", "units.parse", "units.parse_bytes", "uuid.parse"},
}

// refusal is a family of built-ins policy Rego may not call, and why.
type refusal struct {
	family, reason string
	builtins       []string
}

// refusedBuiltins are the built-ins policy Rego may not call, by family.
var refusedBuiltins = []refusal{
	{"network", "it reaches the network",
		[]string{"http.send", "net.lookup_ip_addr"}},
	{"host", "it reveals the host's environment and configuration",
		[]string{"opa.runtime"}},
	{"schema loading", "it loads schemas by $ref from files and URLs",
		[]string{"json.match_schema", "json.verify_schema"}},
	{"randomness", "its result changes from one evaluation to the next",
		[]string{"rand.intn", "uuid.rfc4122"}},
	{"side effects", "it writes to tracers or the host's output",
		[]string{"trace", "print", "internal.print", "internal.test_case"}},
	{"tokens, keys and certificates", "it does public-key work on keys and certificates of any size, signs with randomness or verifies against the host's clock",
		[]string{"io.jwt.decode", "io.jwt.decode_verify", "io.jwt.encode_sign", "io.jwt.encode_sign_raw",
			"io.jwt.verify_eddsa", "io.jwt.verify_es256", "io.jwt.verify_es384", "io.jwt.verify_es512",
			"io.jwt.verify_hs256", "io.jwt.verify_hs384", "io.jwt.verify_hs512",
			"io.jwt.verify_ps256", "io.jwt.verify_ps384", "io.jwt.verify_ps512",
			"io.jwt.verify_rs256", "io.jwt.verify_rs384", "io.jwt.verify_rs512",
			"crypto.parse_private_keys", "crypto.x509.parse_and_verify_certificates",
			"crypto.x509.parse_and_verify_certificates_with_options", "crypto.x509.parse_certificate_request",
			"crypto.x509.parse_certificates", "crypto.x509.parse_keypair", "crypto.x509.parse_rsa_private_key",
			"providers.aws.sign_req"}},
	{"unbounded calls", "one call can take time or memory without bound, and the time budget is not checked inside it",
		[]string{"bits.lsh", "graph.reachable_paths", "json.marshal_with_options", "regex.globs_match", "strings.render_template"}},
	{"GraphQL", "parsing and validating GraphQL costs more than conditions need",
		[]string{"graphql.is_valid", "graphql.parse", "graphql.parse_and_verify", "graphql.parse_query",
			"graphql.parse_schema", "graphql.schema_is_valid"}},
	{"Rego introspection", "it reads Rego source or annotations, which conditions have no use for",
		[]string{"rego.metadata.chain", "rego.metadata.rule", "rego.parse_module"}},
	{"deprecated", "it is deprecated, and Rego v1 refuses it",
		[]string{"all", "any", "cast_array", "cast_boolean", "cast_null", "cast_object", "cast_set", "cast_string",
			"net.cidr_overlap", "re_match", "set_diff"}},
}

// sandbox is the built-in lists in the forms compilation uses.
type sandbox struct {
	allowed map[string]bool
	refused map[string]*refusal
}

func newSandbox() *sandbox {
	s := &sandbox{allowed: map[string]bool{}, refused: map[string]*refusal{}}
	for _, family := range allowedBuiltins {
		for _, name := range family {
			s.allowed[name] = true
		}
	}
	for i := range refusedBuiltins {
		for _, name := range refusedBuiltins[i].builtins {
			s.refused[name] = &refusedBuiltins[i]
		}
	}
	return s
}

// capabilities returns OPA's capabilities with only the allowed
// built-ins, and no network access.
func (s *sandbox) capabilities() *ast.Capabilities {
	c := ast.CapabilitiesForThisVersion()
	kept := c.Builtins[:0]
	for _, b := range c.Builtins {
		if s.allowed[b.Name] {
			kept = append(kept, b)
		}
	}
	c.Builtins = kept
	c.AllowNet = []string{}
	return c
}

// checkCalls refuses a call to a refused built-in anywhere in x (a parsed
// body or module), naming it and its family's reason; where is "conditions"
// or "rules". Rows are moved up by lineShift, as in located.
func (s *sandbox) checkCalls(x any, where string, lineShift int) error {
	var err error
	check := func(op ast.Ref, loc *ast.Location) {
		if err != nil {
			return
		}
		name := op.String()
		r := s.refused[name]
		if r == nil {
			return
		}
		e := &Error{Msg: fmt.Sprintf("%s is not allowed in %s: %s (%s)", name, where, r.reason, r.family)}
		if loc != nil {
			e.Line, e.Col = loc.Row-lineShift, loc.Col
		}
		err = e
	}
	ast.NewGenericVisitor(func(n any) bool {
		switch n := n.(type) {
		case *ast.Expr:
			if n.IsCall() {
				loc := n.Location
				if t, ok := n.Terms.([]*ast.Term); ok && t[0].Location != nil {
					loc = t[0].Location
				}
				check(n.Operator(), loc)
			}
		case ast.Call:
			if op, ok := n[0].Value.(ast.Ref); ok {
				check(op, n[0].Location)
			}
		}
		return err != nil
	}).Walk(x)
	return err
}
