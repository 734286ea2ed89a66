package pam_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/zerostanding/pam"
)

func TestJSONDurationsAreGoDurationStrings(t *testing.T) {
	at := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	r := pam.Request{ID: "req_1", Requester: "alice", Scope: pam.TaskScope("T"), PolicyID: "p", Reason: "r",
		Duration: 2 * time.Hour, State: pam.Pending, CreatedAt: at, PendingUntil: at.Add(24 * time.Hour), Version: 1}
	for _, c := range []struct {
		name string
		v    any
		want []string
	}{
		{"policy", pam.Policy{ID: "p", DefaultDuration: time.Hour, MaxDuration: 90 * time.Minute, PendingTTL: 24 * time.Hour},
			[]string{`"default_duration":"1h0m0s"`, `"max_duration":"1h30m0s"`, `"pending_ttl":"24h0m0s"`}},
		{"a policy's reminders and escalation", pam.Policy{ID: "p", RemindAfter: time.Hour, EscalateAfter: 4 * time.Hour, EscalationGroup: "leads"},
			[]string{`"remind_after":"1h0m0s"`, `"escalate_after":"4h0m0s"`, `"escalation_group":"leads"`}},
		{"a policy's zero durations are left out", &pam.Policy{ID: "p"}, nil},
		{"request", r, []string{`"duration":"2h0m0s"`}},
		{"request by pointer", &r, []string{`"duration":"2h0m0s"`}},
		{"message", pam.Message{ID: "m", Request: r}, []string{`"request":{"id":"req_1"`, `"duration":"2h0m0s"`}},
		{"notification", pam.Notification{ID: "m", Request: r}, []string{`"duration":"2h0m0s"`}},
		{"request input", pam.RequestInput{Scope: pam.TaskScope("T"), Reason: "r", Duration: 90 * time.Second},
			[]string{`"scope":{"kind":"task","name":"T"}`, `"duration":"1m30s"`}},
		{"slices use the methods too", []pam.Request{r}, []string{`"duration":"2h0m0s"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := json.Marshal(c.v)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range c.want {
				if !strings.Contains(string(b), w) {
					t.Errorf("%s lacks %s", b, w)
				}
			}
			if c.want == nil && strings.Contains(string(b), "duration") {
				t.Errorf("zero durations written: %s", b)
			}
			if strings.Contains(string(b), "000000000") {
				t.Errorf("a duration in nanoseconds: %s", b)
			}
		})
	}
}

func TestJSONDurationsIn(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
	}{
		{`"2h"`, 2 * time.Hour},
		{`"90m"`, 90 * time.Minute},
		{`"2h0m0s"`, 2 * time.Hour},
		{`"1.5h"`, 90 * time.Minute},
		{`7200000000000`, 2 * time.Hour}, // integer nanoseconds, as written before
		{` 60000000000 `, time.Minute},
		{`0`, 0},
		{`"0s"`, 0},
	} {
		t.Run(c.in, func(t *testing.T) {
			var p pam.Policy
			if err := json.Unmarshal([]byte(`{"id":"p","max_duration":`+c.in+`,"pending_ttl":`+c.in+`,"default_duration":`+c.in+`}`), &p); err != nil {
				t.Fatal(err)
			}
			if p.MaxDuration != c.want || p.PendingTTL != c.want || p.DefaultDuration != c.want || p.ID != "p" {
				t.Errorf("policy %+v", p)
			}
			var r pam.Request
			if err := json.Unmarshal([]byte(`{"id":"r","duration":`+c.in+`}`), &r); err != nil || r.Duration != c.want || r.ID != "r" {
				t.Errorf("request %+v, %v", r, err)
			}
			var n pam.RequestInput
			if err := json.Unmarshal([]byte(`{"reason":"x","duration":`+c.in+`}`), &n); err != nil || n.Duration != c.want || n.Reason != "x" {
				t.Errorf("request input %+v, %v", n, err)
			}
		})
	}
	for _, bad := range []string{`"soon"`, `"2"`, `""`, `1.5`, `true`, `{}`, `[]`, `"9999999999h"`, `1e30`} {
		t.Run("refuses "+bad, func(t *testing.T) {
			var r pam.Request
			err := json.Unmarshal([]byte(`{"duration":`+bad+`}`), &r)
			if !errors.Is(err, pam.ErrInvalid) {
				t.Errorf("err = %v, want ErrInvalid", err)
			}
		})
	}
	t.Run("null and absent members leave the field as it is", func(t *testing.T) {
		p := pam.Policy{ID: "p", Name: "n", MaxDuration: time.Hour, PendingTTL: time.Minute}
		if err := json.Unmarshal([]byte(`{"max_duration":null,"name":"m"}`), &p); err != nil {
			t.Fatal(err)
		}
		if p.ID != "p" || p.Name != "m" || p.MaxDuration != time.Hour || p.PendingTTL != time.Minute {
			t.Errorf("merged: %+v", p)
		}
	})
}

// TestJSONReadsRowsWrittenBefore decodes a request and a policy as the
// stores wrote them when durations were integer nanoseconds.
func TestJSONReadsRowsWrittenBefore(t *testing.T) {
	const request = `{"id":"req_06h1","requester":"alice","scope":{"kind":"task","name":"New-MoveRequest"},"policy_id":"move","reason":"r","duration":7200000000000,"state":"approved","decisions":[{"approver":"bob","verdict":"approve","at":"2026-11-02T09:05:00Z","policy_version":1}],"policy_version":1,"created_at":"2026-11-02T09:00:00Z","pending_until":"2026-11-03T09:00:00Z","approved_at":"2026-11-02T09:05:00Z","expires_at":"2026-11-02T11:05:00Z","version":2}`
	const policy = `{"id":"move","scope":{"kind":"task","name":"New-MoveRequest"},"approval":"manual","approver_groups":[{"group":"approvers"}],"max_duration":28800000000000,"pending_ttl":3600000000000,"version":1,"min_grant_version":1,"created_at":"2026-11-02T09:00:00Z","created_by":"admin","updated_at":"2026-11-02T09:00:00Z","updated_by":"admin","revision":1}`
	var r pam.Request
	if err := json.Unmarshal([]byte(request), &r); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	want := pam.Request{ID: "req_06h1", Requester: "alice", Scope: pam.TaskScope("New-MoveRequest"), PolicyID: "move", Reason: "r",
		Duration: 2 * time.Hour, State: pam.Approved, PolicyVersion: 1, CreatedAt: at, PendingUntil: at.Add(24 * time.Hour),
		ApprovedAt: at.Add(5 * time.Minute), ExpiresAt: at.Add(2*time.Hour + 5*time.Minute), Version: 2,
		Decisions: []pam.Decision{{Approver: "bob", Verdict: pam.Approve, At: at.Add(5 * time.Minute), PolicyVersion: 1}}}
	if d := cmp.Diff(want, r); d != "" {
		t.Errorf("request (-want +got):\n%s", d)
	}
	var p pam.Policy
	if err := json.Unmarshal([]byte(policy), &p); err != nil {
		t.Fatal(err)
	}
	if p.MaxDuration != 8*time.Hour || p.PendingTTL != time.Hour || p.ApproverGroups[0].Group != "approvers" || p.Revision != 1 || p.CreatedBy != "admin" {
		t.Errorf("policy %+v", p)
	}
	// Written again, it reads back the same.
	for _, v := range []any{&r, &p} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		back := reflect.New(reflect.TypeOf(v).Elem())
		if err := json.Unmarshal(b, back.Interface()); err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(v, back.Interface()); d != "" {
			t.Errorf("round trip (-want +got):\n%s", d)
		}
	}
}

// snakeCase is the form of every JSON member name.
var snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// TestJSONNamesAreSnakeCase checks the tag of every exported field of the
// types that cross a boundary, and of the root types they hold.
func TestJSONNamesAreSnakeCase(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var check func(t reflect.Type, path string)
	check = func(typ reflect.Type, path string) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Map {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || typ.PkgPath() != reflect.TypeFor[pam.Policy]().PkgPath() || seen[typ] {
			return
		}
		seen[typ] = true
		for i := range typ.NumField() {
			f := typ.Field(i)
			if !f.IsExported() {
				continue
			}
			tag := f.Tag.Get("json")
			name, _, _ := strings.Cut(tag, ",")
			switch {
			case tag == "":
				t.Errorf("%s.%s has no json tag", path, f.Name)
			case name == "-":
			case !snakeCase.MatchString(name):
				t.Errorf("%s.%s is %q in JSON, not snake_case", path, f.Name, name)
			default:
				check(f.Type, path+"."+f.Name)
			}
		}
	}
	for _, v := range []any{
		pam.Policy{}, pam.Catalog{}, pam.Request{}, pam.RequestInput{}, pam.Decision{}, pam.Event{}, pam.Message{},
		pam.Op{}, pam.CheckResult{}, pam.PolicyCheck{}, pam.VerifyResult{}, pam.TamperError{}, pam.Checkpoint{},
		pam.SinkStatus{}, pam.Grant{}, pam.Notification{},
	} {
		check(reflect.TypeOf(v), reflect.TypeOf(v).Name())
	}
}

func TestJSONOfResults(t *testing.T) {
	for _, c := range []struct {
		v    any
		want string
	}{
		{pam.VerifyResult{From: 1, To: 2, Events: 2, Head: "ab", Checkpoints: 1}, `{"from":1,"to":2,"events":2,"head":"ab","checkpoints":1}`},
		{&pam.TamperError{Seq: 3, Reason: pam.ReasonGap, Detail: "d"}, `{"seq":3,"reason":"gap","detail":"d"}`},
		{pam.CheckResult{Allowed: false, Outcome: pam.OutcomeNotApproved, Actor: "alice", Task: "T", Err: errors.New("not sent"),
			Policies: []pam.PolicyCheck{{PolicyID: "p", Covered: true, Missing: "no grant"}}, At: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
			`{"allowed":false,"outcome":"not_approved","actor":"alice","task":"T","policies":[{"policy_id":"p","covered":true,"missing":"no grant"}],"at":"2026-01-02T03:04:05Z"}`},
		{pam.SinkStatus{Name: "file", Healthy: true, Cursor: 4, Delivered: 4}, `{"name":"file","required":false,"healthy":true,"cursor":4,"delivered":4,"failures":0}`},
		{pam.Op{Task: "T", Params: map[string]any{"n": 1}}, `{"task":"T","params":{"n":1}}`},
	} {
		b, err := json.Marshal(c.v)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != c.want {
			t.Errorf("got  %s\nwant %s", b, c.want)
		}
	}
}

// FuzzRequestInputJSON: whatever decodes writes back to JSON that decodes
// to the same value.
func FuzzRequestInputJSON(f *testing.F) {
	for _, s := range []string{`{"scope":{"kind":"task","name":"T"},"reason":"r","duration":"2h"}`, `{"duration":7200000000000}`,
		`{"duration":"-2562047h47m16.854775808s"}`, `{"duration":null,"policy_id":"p"}`, `{"duration":"1.000000001s"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var n pam.RequestInput
		if json.Unmarshal([]byte(s), &n) != nil {
			return
		}
		b, err := json.Marshal(n)
		if err != nil {
			t.Fatal(err)
		}
		var back pam.RequestInput
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if d := cmp.Diff(n, back); d != "" {
			t.Errorf("%s (-first +second):\n%s", b, d)
		}
	})
}
