package pam_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/zerostanding/pam"
)

var hmacKey = []byte("audit-key-kept-by-the-auditors")

// guardDetails runs Guard for alice with params and returns the param.*
// entries of the events it recorded, by event type.
func guardDetails(t *testing.T, e *env, params map[string]any) map[pam.EventType]map[string]string {
	t.Helper()
	before := e.lastSeq()
	e.guard("alice", "New-MoveRequest", params)
	out := map[pam.EventType]map[string]string{}
	for _, ev := range e.eventsSince(before) {
		d := map[string]string{}
		for k, v := range ev.Detail {
			if strings.HasPrefix(k, "param.") {
				d[k] = v
			}
		}
		out[ev.Type] = d
	}
	return out
}

func TestParametersAreRedactedByDefault(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	params := map[string]any{"mailbox": "ceo@contoso.com", "password": "hunter2"}
	want := map[string]string{"param.mailbox": pam.Redacted, "param.password": pam.Redacted}
	// Denied, then allowed and finished: every guard event records them.
	got := guardDetails(t, e, params)
	if d := cmp.Diff(map[pam.EventType]map[string]string{pam.EventGuardDenied: want}, got); d != "" {
		t.Errorf("denied (-want +got):\n%s", d)
	}
	e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	got = guardDetails(t, e, params)
	if d := cmp.Diff(map[pam.EventType]map[string]string{pam.EventGuardAllowed: want, pam.EventGuardFinished: want}, got); d != "" {
		t.Errorf("allowed (-want +got):\n%s", d)
	}
}

func TestParameterModes(t *testing.T) {
	e := newEnv(t, func(o *pam.Options) {
		o.ParamAudit = pam.ParamAudit{Default: pam.ParamFull, Params: map[string]pam.ParamMode{"token": pam.ParamRedacted}}
		o.ParamHMACKey = hmacKey
	})
	p := movePolicy()
	p.ParamAudit = pam.ParamAudit{Params: map[string]pam.ParamMode{"password": pam.ParamHMAC}}
	e.policy(p)
	e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	long := strings.Repeat("é", pam.MaxReasonLen)
	got := guardDetails(t, e, map[string]any{
		"mailbox": "ceo@contoso.com", "password": "hunter2", "token": "t0k3n", "count": 3,
		"opts": map[string]any{"b": true, "a": nil}, "long": long, "nul": "a\x00b",
	})[pam.EventGuardAllowed]
	want := map[string]string{
		"param.mailbox":  "ceo@contoso.com",                                                                       // global default
		"param.password": pam.ParamDigest(hmacKey, "hunter2"),                                                     // the policy's mode
		"param.token":    pam.Redacted,                                                                            // global, by name
		"param.count":    "3",                                                                                     // JSON
		"param.opts":     `{"a":null,"b":true}`,                                                                   // JSON, keys sorted
		"param.long":     strings.ToValidUTF8(long[:pam.MaxReasonLen-len("…(8192 bytes)")], "") + "…(8192 bytes)", // cut
		"param.nul":      "a\uFFFDb",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if !strings.HasPrefix(got["param.password"], "hmac-sha256:") || got["param.password"] == pam.ParamDigest(hmacKey, "hunter3") ||
		got["param.password"] == pam.ParamDigest([]byte("another key"), "hunter2") {
		t.Errorf("the digest does not tell values or keys apart: %s", got["param.password"])
	}
	for _, ev := range e.events() {
		for k, v := range ev.Detail {
			if strings.Contains(v, "hunter2") || strings.Contains(v, "t0k3n") {
				t.Errorf("event %d %s: %s = %q holds a secret", ev.Seq, ev.Type, k, v)
			}
		}
	}
}

func TestTheStrictestCoveringPolicyWins(t *testing.T) {
	e := newEnv(t, func(o *pam.Options) { o.ParamHMACKey = hmacKey })
	p := movePolicy()
	p.ParamAudit = pam.ParamAudit{Default: pam.ParamFull}
	e.policy(p)
	e.policy(pam.Policy{ID: "recipients", Scope: pam.RoleScope("Mail Recipients"), Approval: pam.Auto,
		ParamAudit: pam.ParamAudit{Default: pam.ParamHMAC, Params: map[string]pam.ParamMode{"secret": pam.ParamRedacted}}})
	got := guardDetails(t, e, map[string]any{"mailbox": "ceo", "secret": "s"})[pam.EventGuardDenied]
	want := map[string]string{"param.mailbox": pam.ParamDigest(hmacKey, "ceo"), "param.secret": pam.Redacted}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

func TestParameterModesAreValidated(t *testing.T) {
	e := newEnv(t)
	for name, pa := range map[string]pam.ParamAudit{
		"unknown mode":       {Default: "plain"},
		"unknown by name":    {Params: map[string]pam.ParamMode{"x": "Full"}},
		"bad name":           {Params: map[string]pam.ParamMode{"a\x00": pam.ParamFull}},
		"hmac without a key": {Default: pam.ParamHMAC},
	} {
		p := movePolicy()
		p.ParamAudit = pa
		if _, err := e.m.CreatePolicy(e.admin(), p); !errors.Is(err, pam.ErrInvalid) {
			t.Errorf("%s: CreatePolicy = %v, want ErrInvalid", name, err)
		}
	}
	dir, _ := pam.NewStaticDirectory(testGroups)
	if _, err := pam.New(e.store, dir, &pam.Options{AdminGroup: "pam-admins", ParamAudit: pam.ParamAudit{Params: map[string]pam.ParamMode{"p": pam.ParamHMAC}}}); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("New with ParamHMAC and no key = %v, want ErrInvalid", err)
	}
}
