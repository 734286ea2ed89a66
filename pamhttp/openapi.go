package pamhttp

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/zerostanding/pam"
)

// The OpenAPI 3.1 document, served at GET /api/v1/openapi.json, is built
// from the route table (apiRoutes) and, for the bodies, from the Go types
// the routes decode and encode, read by reflection as encoding/json reads
// them: what the document says is what the handler does.

var (
	timeType     = reflect.TypeFor[time.Time]()
	durationType = reflect.TypeFor[time.Duration]()
	rawType      = reflect.TypeFor[json.RawMessage]()
)

// enums are the values of the engine's closed string types.
var enums = map[reflect.Type][]string{
	reflect.TypeFor[pam.State]():        {string(pam.Pending), string(pam.Approved), string(pam.Denied), string(pam.Canceled), string(pam.Revoked), string(pam.Relinquished), string(pam.Expired)},
	reflect.TypeFor[pam.Approval]():     {string(pam.Manual), string(pam.Auto)},
	reflect.TypeFor[pam.ReviewState]():  {string(pam.ReviewPending), string(pam.ReviewConfirmed), string(pam.ReviewFlagged)},
	reflect.TypeFor[pam.ScopeKind]():    {string(pam.KindTask), string(pam.KindRole), string(pam.KindRoleGroup)},
	reflect.TypeFor[pam.Verdict]():      {string(pam.Approve), string(pam.Deny)},
	reflect.TypeFor[pam.PlanAction]():   {string(pam.PlanCreate), string(pam.PlanUpdate), string(pam.PlanDelete)},
	reflect.TypeFor[pam.ParamType]():    {string(pam.ParamString), string(pam.ParamNumber), string(pam.ParamBoolean), string(pam.ParamArray), string(pam.ParamObject)},
	reflect.TypeFor[pam.MessageState](): {string(pam.MessagePending), string(pam.MessageDelivered), string(pam.MessageFailed)},
	reflect.TypeFor[pam.TamperReason](): {string(pam.ReasonAltered), string(pam.ReasonBrokenLink), string(pam.ReasonReordered), string(pam.ReasonGap),
		string(pam.ReasonTruncated), string(pam.ReasonCheckpointMismatch), string(pam.ReasonBadSignature), string(pam.ReasonMalformed)},
}

type object = map[string]any

// openAPI returns the document for routes.
func openAPI(routes []route) ([]byte, error) {
	s := &schemas{defs: object{}, names: map[reflect.Type]string{}, types: map[string]reflect.Type{}}
	paths := object{}
	ids := map[string]bool{}
	for _, rt := range routes {
		if ids[rt.id] {
			return nil, fmt.Errorf("pamhttp: operationId %q twice", rt.id)
		}
		ids[rt.id] = true
		item, _ := paths[rt.path].(object)
		if item == nil {
			item = object{}
			paths[rt.path] = item
		}
		method := strings.ToLower(rt.method)
		if item[method] != nil {
			return nil, fmt.Errorf("pamhttp: %s %s twice", rt.method, rt.path)
		}
		op := object{
			"operationId": rt.id,
			"summary":     rt.summary,
			"responses": object{
				strconv.Itoa(rt.status): object{"description": http.StatusText(rt.status), "content": object{"application/json": object{"schema": s.of(rt.answer)}}},
				"default":               object{"$ref": "#/components/responses/Problem"},
			},
		}
		if rt.desc != "" {
			op["description"] = rt.desc
		}
		if rt.public {
			op["security"] = []any{}
		}
		if params := parameters(rt); len(params) > 0 {
			op["parameters"] = params
		}
		if rt.body != nil {
			op["requestBody"] = object{"required": !rt.optionalBody, "content": object{"application/json": object{"schema": s.of(rt.body)}}}
		}
		item[method] = op
	}
	problem := s.of(reflect.TypeFor[Problem]())
	if s.err != nil {
		return nil, s.err
	}
	return json.Marshal(object{
		"openapi": "3.1.0",
		"info": object{
			"title":   "zerostanding/pam",
			"version": "v1",
			"description": "Just-in-time privileged access: policies (one by one, or as code with apply) and the catalog, requests and their approval, what-if checks, the audit trail and the notification outbox. " +
				"Durations are Go duration strings (\"2h0m0s\"; \"2h\" and integer nanoseconds are accepted on input), times RFC 3339. " +
				"Errors are problem details (RFC 9457) whose code names the engine's error.",
		},
		"servers":  []any{object{"url": ".", "description": "where this document is served: the API's root"}},
		"security": []any{object{"bearer": []any{}}},
		"paths":    paths,
		"components": object{
			"schemas": s.defs,
			"securitySchemes": object{"bearer": object{"type": "http", "scheme": "bearer",
				"description": "The host authenticates every call (pamhttp.Options.Authenticate): with bearer tokens, as here, or with its own sessions."}},
			"responses": object{"Problem": object{"description": "An error: the code names the engine's error.",
				"content": object{"application/problem+json": object{"schema": problem}}}},
		},
	})
}

var pathParam = regexp.MustCompile(`\{([a-z_]+)\}`)

// parameters lists rt's path parameters (each {name} of the path, as
// rt.params describes it or else as a string) and its query parameters.
func parameters(rt route) []any {
	var out []any
	for _, m := range pathParam.FindAllStringSubmatch(rt.path, -1) {
		noun, _, _ := strings.Cut(strings.TrimPrefix(rt.path, "/"), "/")
		noun = strings.NewReplacer("policies", "policy", "requests", "request").Replace(noun)
		p := param{name: m[1], in: "path", typ: "string", desc: "the " + noun + "'s ID"}
		for _, q := range rt.params {
			if q.in == "path" && q.name == m[1] {
				p = q
			}
		}
		out = append(out, paramObject(p))
	}
	for _, q := range rt.params {
		if q.in == "query" {
			out = append(out, paramObject(q))
		}
	}
	return out
}

func paramObject(p param) object {
	schema := object{"type": p.typ}
	if p.typ == "date-time" {
		schema = object{"type": "string", "format": "date-time"}
	}
	if p.enum != nil {
		schema["enum"] = p.enum
	}
	if p.many {
		schema = object{"type": "array", "items": schema}
	}
	o := object{"name": p.name, "in": p.in, "schema": schema, "description": p.desc}
	if p.in == "path" {
		o["required"] = true
	}
	return o
}

// schemas builds JSON Schemas of Go types, named types as components.
type schemas struct {
	defs  object
	names map[reflect.Type]string
	types map[string]reflect.Type
	err   error
}

// of returns the schema of t as encoding/json writes it, or a $ref to it.
func (s *schemas) of(t reflect.Type) object {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case timeType:
		return object{"type": "string", "format": "date-time"}
	case durationType:
		return object{"type": []string{"string", "integer"}, "examples": []string{"2h0m0s"},
			"description": "a Go duration such as \"2h0m0s\"; on input also \"2h\", \"90m\" or integer nanoseconds"}
	case rawType:
		return object{"type": "object"}
	}
	switch t.Kind() {
	case reflect.String:
		o := object{"type": "string"}
		if e, ok := enums[t]; ok {
			o["enum"] = e
		}
		return o
	case reflect.Bool:
		return object{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32:
		return object{"type": "integer"}
	case reflect.Int64, reflect.Uint64:
		return object{"type": "integer", "format": "int64"}
	case reflect.Float32, reflect.Float64:
		return object{"type": "number"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return object{"type": "string", "contentEncoding": "base64"}
		}
		return object{"type": "array", "items": s.of(t.Elem())}
	case reflect.Map:
		return object{"type": "object", "additionalProperties": s.of(t.Elem())}
	case reflect.Interface:
		return object{}
	case reflect.Struct:
		if t.Name() == "" {
			return s.object(t)
		}
		name := componentName(t)
		if other, ok := s.types[name]; ok && other != t {
			s.err = fmt.Errorf("pamhttp: two types are named %s in the OpenAPI document: %v and %v", name, other, t)
		}
		ref := object{"$ref": "#/components/schemas/" + name}
		if _, ok := s.names[t]; ok {
			return ref
		}
		s.names[t], s.types[name] = name, t
		s.defs[name] = nil // taken, for recursive types
		s.defs[name] = s.object(t)
		return ref
	}
	s.err = fmt.Errorf("pamhttp: no JSON Schema for %v", t)
	return object{}
}

func (s *schemas) object(t reflect.Type) object {
	props := object{}
	for _, f := range jsonFields(t) {
		props[f.name] = s.of(f.typ)
	}
	return object{"type": "object", "properties": props}
}

// componentName is t's name without its package; an instance of a generic
// type is named for its first type argument: Page[pam.Request, string]
// is RequestPage.
func componentName(t reflect.Type) string {
	name := t.Name()
	base, args, ok := strings.Cut(name, "[")
	if !ok {
		return name
	}
	first, _, _ := strings.Cut(strings.TrimSuffix(args, "]"), ",")
	return first[strings.LastIndex(first, ".")+1:] + base
}
