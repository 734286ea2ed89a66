package pam

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
)

// ParamMode says how an operation parameter's value is recorded in the
// audit trail. Guard records every parameter of a covered operation as a
// Detail entry "param.NAME" of its guard.* events.
type ParamMode string

// Parameter modes. The empty mode inherits: a policy's parameter from the
// policy's Default, that from Options.ParamAudit, and that from its
// Default, which is ParamRedacted when empty.
const (
	// ParamFull records the value (JSON, or the string itself), cut at
	// MaxReasonLen bytes.
	ParamFull ParamMode = "full"
	// ParamRedacted records "[redacted]".
	ParamRedacted ParamMode = "redacted"
	// ParamHMAC records "hmac-sha256:" and the hexadecimal HMAC-SHA256 of
	// the value with Options.ParamHMACKey: an auditor holding the key can
	// check whether it was a given value (ParamDigest) without the trail
	// holding the value.
	ParamHMAC ParamMode = "hmac"
)

// Redacted is what a redacted parameter is recorded as.
const Redacted = "[redacted]"

// MaxParams bounds the per-parameter modes of a ParamAudit.
const MaxParams = 256

// ParamAudit chooses how parameters are recorded: Params by name,
// Default for the others.
type ParamAudit struct {
	Default ParamMode            `json:"default,omitempty"`
	Params  map[string]ParamMode `json:"params,omitempty"`
}

// Validate checks the modes and names.
func (a *ParamAudit) Validate(field string) error {
	if err := a.Default.check(field + ".Default"); err != nil {
		return err
	}
	if len(a.Params) > MaxParams {
		return invalid(field+".Params", "more than %d parameters", MaxParams)
	}
	for name, mode := range a.Params {
		if err := checkName(field+".Params", name); err != nil {
			return err
		}
		if err := mode.check(field + ".Params[" + name + "]"); err != nil {
			return err
		}
	}
	return nil
}

func (m ParamMode) check(field string) error {
	switch m {
	case "", ParamFull, ParamRedacted, ParamHMAC:
		return nil
	}
	return invalid(field, "must be %q, %q or %q, got %q", ParamFull, ParamRedacted, ParamHMAC, m)
}

func (a *ParamAudit) uses(m ParamMode) bool {
	if a.Default == m {
		return true
	}
	for _, v := range a.Params {
		if v == m {
			return true
		}
	}
	return false
}

// mode returns a's mode for name, "" when a leaves it open.
func (a *ParamAudit) mode(name string) ParamMode {
	if m := a.Params[name]; m != "" {
		return m
	}
	return a.Default
}

// strictness orders modes: when several policies cover an operation, the
// strictest mode of each parameter wins.
func strictness(m ParamMode) int {
	switch m {
	case ParamRedacted:
		return 2
	case ParamHMAC:
		return 1
	}
	return 0
}

// paramDetail adds the recorded form of params to d, under the modes the
// covering policies and the global settings give.
func (r *paramRecorder) detail(d map[string]string, params map[string]any, policies []*ParamAudit) {
	names := make([]string, 0, len(params))
	for k := range params {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		mode := ParamMode("")
		for _, p := range policies {
			pm := p.mode(name)
			if pm == "" {
				pm = r.defaults.mode(name)
			}
			if pm == "" {
				pm = ParamRedacted
			}
			if mode == "" || strictness(pm) > strictness(mode) {
				mode = pm
			}
		}
		if mode == "" { // no covering policy: the global setting
			if mode = r.defaults.mode(name); mode == "" {
				mode = ParamRedacted
			}
		}
		key := "param." + cleanText(name)
		switch mode {
		case ParamFull:
			v := cleanText(renderParam(params[name]))
			if n := len(renderParam(params[name])); len(v) < n || n > MaxReasonLen {
				// Cut, leaving room to say so.
				suffix := fmt.Sprintf("…(%d bytes)", n)
				v = strings.ToValidUTF8(v[:min(len(v), MaxReasonLen-len(suffix))], "") + suffix
			}
			d[key] = v
		case ParamHMAC:
			d[key] = paramDigest(r.key, renderParam(params[name]))
		default:
			d[key] = Redacted
		}
	}
}

// renderParam is a parameter's recorded form: a string as it is, any
// other value as JSON.
func renderParam(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("[unencodable %T]", v)
	}
	return string(b)
}

func paramDigest(key []byte, rendered string) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(rendered))
	return "hmac-sha256:" + hex.EncodeToString(h.Sum(nil))
}

// ParamDigest returns what ParamHMAC records for value under key: compare
// it with a trail's entry to check whether the operation ran with value.
func ParamDigest(key []byte, value any) string {
	return paramDigest(key, renderParam(value))
}

// paramRecorder records operation parameters in guard events, by the
// covering policies' ParamAudit and Options.ParamAudit.
type paramRecorder struct {
	defaults ParamAudit // Options.ParamAudit
	key      []byte     // Options.ParamHMACKey
}

func newParamRecorder(opts *Options) (*paramRecorder, error) {
	if err := opts.ParamAudit.Validate("Options.ParamAudit"); err != nil {
		return nil, err
	}
	if opts.ParamAudit.uses(ParamHMAC) && len(opts.ParamHMACKey) == 0 {
		return nil, invalid("Options.ParamHMACKey", "is required by ParamHMAC")
	}
	return &paramRecorder{
		defaults: ParamAudit{Default: opts.ParamAudit.Default, Params: maps.Clone(opts.ParamAudit.Params)},
		key:      slices.Clone(opts.ParamHMACKey),
	}, nil
}
