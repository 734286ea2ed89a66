package pam

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// JSON: every type that crosses a boundary (the HTTP API, policy files,
// the stores' rows, notifications) has snake_case names, and a
// time.Duration is a Go duration string: "2h0m0s" on output, anything
// time.ParseDuration takes ("2h", "90m") on input. Integer nanoseconds,
// the encoding before durations were strings, are still accepted on
// input, so rows and files written then read back unchanged. The Go
// fields stay time.Duration; the methods below swap them for the
// duration type through an alias of the struct.

// duration is a time.Duration as JSON.
type duration time.Duration

// MarshalJSON writes d as a Go duration string.
func (d duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a Go duration string or integer nanoseconds. null
// leaves d as it is, as for other types.
func (d *duration) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case string(b) == "null":
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("%w: duration %s: %v", ErrInvalid, b, err)
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%w: duration %q: want a Go duration such as \"2h\" or \"90m\"", ErrInvalid, s)
		}
		*d = duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("%w: duration %s: want a Go duration string such as \"2h\", or integer nanoseconds", ErrInvalid, b)
	}
	*d = duration(n)
	return nil
}

// MarshalJSON writes p with its durations as Go duration strings.
func (p Policy) MarshalJSON() ([]byte, error) {
	type plain Policy
	return json.Marshal(struct {
		plain
		DefaultDuration duration `json:"default_duration,omitempty"`
		MaxDuration     duration `json:"max_duration,omitempty"`
		PendingTTL      duration `json:"pending_ttl,omitempty"`
		MaxStartDelay   duration `json:"max_start_delay,omitempty"`
		MaxExtended     duration `json:"max_extended_duration,omitempty"`
		RemindAfter     duration `json:"remind_after,omitempty"`
		EscalateAfter   duration `json:"escalate_after,omitempty"`
	}{plain(p), duration(p.DefaultDuration), duration(p.MaxDuration), duration(p.PendingTTL), duration(p.MaxStartDelay), duration(p.MaxExtendedDuration),
		duration(p.RemindAfter), duration(p.EscalateAfter)})
}

// UnmarshalJSON reads p, its durations as Go duration strings or integer
// nanoseconds. Members absent from b leave p's fields as they are.
func (p *Policy) UnmarshalJSON(b []byte) error {
	type plain Policy
	v := struct {
		*plain
		DefaultDuration duration `json:"default_duration"`
		MaxDuration     duration `json:"max_duration"`
		PendingTTL      duration `json:"pending_ttl"`
		MaxStartDelay   duration `json:"max_start_delay"`
		MaxExtended     duration `json:"max_extended_duration"`
		RemindAfter     duration `json:"remind_after"`
		EscalateAfter   duration `json:"escalate_after"`
	}{(*plain)(p), duration(p.DefaultDuration), duration(p.MaxDuration), duration(p.PendingTTL), duration(p.MaxStartDelay), duration(p.MaxExtendedDuration),
		duration(p.RemindAfter), duration(p.EscalateAfter)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	p.DefaultDuration, p.MaxDuration, p.PendingTTL = time.Duration(v.DefaultDuration), time.Duration(v.MaxDuration), time.Duration(v.PendingTTL)
	p.MaxStartDelay, p.MaxExtendedDuration = time.Duration(v.MaxStartDelay), time.Duration(v.MaxExtended)
	p.RemindAfter, p.EscalateAfter = time.Duration(v.RemindAfter), time.Duration(v.EscalateAfter)
	return nil
}

// MarshalJSON writes r with its duration as a Go duration string.
func (r Request) MarshalJSON() ([]byte, error) {
	type plain Request
	return json.Marshal(struct {
		plain
		Duration duration `json:"duration"`
	}{plain(r), duration(r.Duration)})
}

// UnmarshalJSON reads r, its duration as a Go duration string or integer
// nanoseconds. Members absent from b leave r's fields as they are.
func (r *Request) UnmarshalJSON(b []byte) error {
	type plain Request
	v := struct {
		*plain
		Duration duration `json:"duration"`
	}{(*plain)(r), duration(r.Duration)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	r.Duration = time.Duration(v.Duration)
	return nil
}

// MarshalJSON writes n with its duration as a Go duration string.
func (n RequestInput) MarshalJSON() ([]byte, error) {
	type plain RequestInput
	return json.Marshal(struct {
		plain
		Duration duration `json:"duration,omitempty"`
	}{plain(n), duration(n.Duration)})
}

// UnmarshalJSON reads n, its duration as a Go duration string or integer
// nanoseconds. Members absent from b leave n's fields as they are.
func (n *RequestInput) UnmarshalJSON(b []byte) error {
	type plain RequestInput
	v := struct {
		*plain
		Duration duration `json:"duration"`
	}{(*plain)(n), duration(n.Duration)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	n.Duration = time.Duration(v.Duration)
	return nil
}

// MarshalJSON writes x with its duration as a Go duration string.
func (x Extension) MarshalJSON() ([]byte, error) {
	type plain Extension
	return json.Marshal(struct {
		plain
		By duration `json:"by"`
	}{plain(x), duration(x.By)})
}

// UnmarshalJSON reads x, its duration as a Go duration string or integer
// nanoseconds. Members absent from b leave x's fields as they are.
func (x *Extension) UnmarshalJSON(b []byte) error {
	type plain Extension
	v := struct {
		*plain
		By duration `json:"by"`
	}{(*plain)(x), duration(x.By)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	x.By = time.Duration(v.By)
	return nil
}
