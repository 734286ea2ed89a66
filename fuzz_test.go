package pam_test

import (
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/zerostanding/pam"
)

func FuzzNewRequestValidate(f *testing.F) {
	f.Add("task", "New-MoveRequest", "", "move a mailbox", int64(time.Hour), "INC-1")
	f.Add("role", "Mail Recipients", "pol_1", "", int64(0), "")
	f.Add("cmdlet", "x\x00", "", "a\xffb", int64(-1), "a\nb")
	f.Add("", "", "pol_1", "r", int64(1), "")
	f.Fuzz(func(t *testing.T, kind, name, policyID, reason string, d int64, ticket string) {
		n := pam.RequestInput{Scope: pam.Scope{Kind: pam.ScopeKind(kind), Name: name}, PolicyID: policyID, Reason: reason, Duration: time.Duration(d), Ticket: ticket}
		err := n.Validate()
		if err != nil {
			if !errors.Is(err, pam.ErrInvalid) {
				t.Fatalf("Validate = %v, not ErrInvalid", err)
			}
			return
		}
		if reason == "" || len(reason) > pam.MaxReasonLen || !utf8.ValidString(reason) || strings.ContainsRune(reason, 0) {
			t.Fatalf("accepted reason %q", reason)
		}
		if d < 0 {
			t.Fatalf("accepted negative duration %d", d)
		}
		if n.Scope != (pam.Scope{}) && (name == "" || !utf8.ValidString(name) || strings.ContainsRune(name, 0)) {
			t.Fatalf("accepted scope name %q", name)
		}
		if policyID == "" && kind != "task" && kind != "role" && kind != "role_group" {
			t.Fatalf("accepted scope kind %q", kind)
		}
	})
}

func FuzzPolicyValidate(f *testing.F) {
	f.Add("task", "New-MoveRequest", "manual", "mailbox-managers", 1, int64(0), int64(0), "input.op.params.x == 1")
	f.Add("role_group", "Recipient Management", "auto", "", 0, int64(time.Hour), int64(2*time.Hour), "")
	f.Add("x", "\x00", "sometimes", "g\ng", -1, int64(-1), int64(1), "\xff")
	f.Fuzz(func(t *testing.T, kind, name, approval, group string, min int, def, maxd int64, cond string) {
		p := pam.Policy{Scope: pam.Scope{Kind: pam.ScopeKind(kind), Name: name}, Approval: pam.Approval(approval),
			DefaultDuration: time.Duration(def), MaxDuration: time.Duration(maxd), Condition: cond}
		if group != "" {
			p.ApproverGroups = []pam.ApproverGroup{{Group: group, MinApprovals: min}}
		}
		err := p.Validate()
		if err != nil {
			if !errors.Is(err, pam.ErrInvalid) {
				t.Fatalf("Validate = %v, not ErrInvalid", err)
			}
			return
		}
		if p.Approval == pam.Manual && len(p.ApproverGroups) == 0 {
			t.Fatal("accepted a manual policy without approvers")
		}
		if def < 0 || maxd < 0 || (maxd > 0 && def > maxd) {
			t.Fatalf("accepted durations %d, %d", def, maxd)
		}
		if !utf8.ValidString(cond) || strings.ContainsRune(cond, 0) || !utf8.ValidString(name) || strings.ContainsRune(name, 0) {
			t.Fatal("accepted invalid text")
		}
	})
}

// FuzzSubmit pushes untrusted text through the whole engine: either the
// request is stored and audited, or a sentinel error comes back and
// nothing is written.
func FuzzSubmit(f *testing.F) {
	f.Add("Alice", "New-MoveRequest", "leaver", "INC-1")
	f.Add("ａｌｉｃｅ", "New-MoveRequest", "x\x00", "")
	f.Add("a b", "Set-Mailbox", "\xff", "t")
	f.Fuzz(func(t *testing.T, who, task, reason, ticket string) {
		e := newEnv(t)
		e.policy(movePolicy())
		before := e.lastSeq()
		r, err := e.m.Submit(e.as(who), pam.RequestInput{Scope: pam.TaskScope(task), Reason: reason, Ticket: ticket})
		if err != nil {
			if !errors.Is(err, pam.ErrInvalid) && !errors.Is(err, pam.ErrNoActor) && !errors.Is(err, pam.ErrNoPolicy) {
				t.Fatalf("Submit = %v, not a sentinel", err)
			}
			if e.lastSeq() != before {
				t.Fatal("a rejected submission was audited")
			}
			return
		}
		got, err := e.m.Request(e.admin(), r.ID)
		if err != nil || got.Reason != reason {
			t.Fatalf("stored request %+v, %v", got, err)
		}
		if c, _ := pam.CanonicalIdentity(who); got.Requester != c {
			t.Fatalf("requester %q, want canonical %q", got.Requester, c)
		}
		if n := e.lastSeq() - before; n != 1 {
			t.Fatalf("%d events for one submission", n)
		}
	})
}

// FuzzDecodeDetail: DecodeDetail's fast path and its token-by-token one
// agree; what it accepts, encoding/json reads alike, and it survives a
// round trip through json.Marshal.
func FuzzDecodeDetail(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":"x","b":"y"}`, `{"a":"x","a":"y"}`, `{"a":1}`, `{"a":null}`, `{"a":"x"} {}`, `[]`, `null`,
		`{"\u00e9":"\ud800","\u00e9":"\udfff"}`, `{"a\"":"x:,","b":"\\"}`, `{"\ud800":"a","\udfff":"b"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := pam.DecodeDetail(b)
		if slow, serr := pam.DecodeDetailTokens(b); (err == nil) != (serr == nil) || !maps.Equal(m, slow) {
			t.Fatalf("DecodeDetail(%q) = %v, %v; token by token %v, %v", b, m, err, slow, serr)
		}
		if err != nil {
			if !errors.Is(err, pam.ErrInvalid) || m != nil {
				t.Fatalf("DecodeDetail = %v, %v", m, err)
			}
			return
		}
		var lenient map[string]string
		if err := json.Unmarshal(b, &lenient); err != nil || !maps.Equal(m, lenient) {
			t.Fatalf("DecodeDetail(%q) = %v; json.Unmarshal = %v, %v", b, m, lenient, err)
		}
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if again, err := pam.DecodeDetail(out); err != nil || !maps.Equal(m, again) {
			t.Fatalf("round trip of %q: %v, %v", out, again, err)
		}
	})
}
