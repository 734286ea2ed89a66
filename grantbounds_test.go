package pam_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/zerostanding/pam"
)

// boundEnv is an env whose catalog declares New-MoveRequest's
// parameters: identity and target_database (strings), batch_size (a
// number), suspend (a boolean).
func boundEnv(t *testing.T) *env {
	return newEnv(t, func(o *pam.Options) {
		cat := testCatalog.Clone()
		cat.Tasks = map[string]pam.TaskSpec{"New-MoveRequest": {Params: []pam.ParamSpec{
			{Name: "identity", Type: pam.ParamString, Required: true}, {Name: "target_database", Type: pam.ParamString},
			{Name: "batch_size", Type: pam.ParamNumber}, {Name: "suspend", Type: pam.ParamBoolean},
		}}}
		o.Catalog = cat
	})
}

// TestBoundGrant: a grant bound to parameter values covers the
// operations whose parameters equal them, and no other; a policy can
// require the binding; bound values are checked against the catalog's
// declarations at submission, and approvers read them.
func TestBoundGrant(t *testing.T) {
	e := boundEnv(t)
	p := movePolicy()
	p.RequireBind = []string{"identity"}
	e.policy(p)
	move := pam.TaskScope("New-MoveRequest")
	count := func() int {
		rs, _, err := e.m.Requests(e.admin(), pam.RequestFilter{})
		if err != nil {
			t.Fatal(err)
		}
		return len(rs)
	}

	for _, tc := range []struct {
		name string
		bind map[string]any
		want string
	}{
		{"nothing bound", nil, "requires binding identity"},
		{"another parameter only", map[string]any{"target_database": "DB02"}, "requires binding identity"},
		{"undeclared", map[string]any{"identity": "ceo@contoso.com", "mailbox": "x"}, "declares a parameter mailbox"},
		{"wrong type", map[string]any{"identity": 7}, "declares identity as a string, not a number"},
		{"an array", map[string]any{"identity": []any{"a", "b"}}, "must be a string, a number or a boolean"},
		{"null", map[string]any{"identity": nil}, "must be a string, a number or a boolean"},
		{"an integer past 2^53", map[string]any{"identity": "x", "batch_size": int64(1) << 60}, "within ±2^53"},
	} {
		_, err := e.m.Submit(e.as("alice"), pam.RequestInput{Scope: move, Reason: "INC-1", Bind: tc.bind})
		if !errors.Is(err, pam.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Submit = %v, want ErrInvalid saying %q", tc.name, err, tc.want)
		}
	}
	if n := count(); n != 0 {
		t.Fatalf("%d requests stored by refused submissions", n)
	}

	r := e.grant("alice", pam.RequestInput{Scope: move, Bind: map[string]any{"identity": "ceo@contoso.com", "batch_size": 50, "suspend": true}})
	if want := map[string]any{"identity": "ceo@contoso.com", "batch_size": 50.0, "suspend": true}; !equalJSON(r.Bind, want) {
		t.Errorf("Bind stored as %v, want %v", r.Bind, want)
	}
	if got, want := r.Bounds(), `bound to batch_size = 50, identity = "ceo@contoso.com", suspend = true`; got != want {
		t.Errorf("Bounds = %q, want %q", got, want)
	}
	// The operation bound: numbers of any Go type that equal the bound
	// value, extra parameters not bound.
	for _, params := range []map[string]any{
		{"identity": "ceo@contoso.com", "batch_size": 50, "suspend": true},
		{"identity": "ceo@contoso.com", "batch_size": 50.0, "suspend": true, "target_database": "DB02"},
		{"identity": "ceo@contoso.com", "batch_size": json.Number("50"), "suspend": true},
		{"identity": "ceo@contoso.com", "batch_size": uint8(50), "suspend": true},
	} {
		if ran, err := e.guard("alice", "New-MoveRequest", params); !ran || err != nil {
			t.Errorf("Guard(%v): ran %v, %v", params, ran, err)
		}
	}
	// Any other operation of the task.
	for _, params := range []map[string]any{
		{"identity": "cfo@contoso.com", "batch_size": 50, "suspend": true},
		{"identity": "ceo@contoso.com", "batch_size": 51, "suspend": true},
		{"identity": "ceo@contoso.com", "batch_size": "50", "suspend": true},
		{"identity": "ceo@contoso.com", "batch_size": 50, "suspend": false},
		{"identity": "ceo@contoso.com", "batch_size": 50},
		nil,
	} {
		ran, err := e.guard("alice", "New-MoveRequest", params)
		var nae *pam.NotApprovedError
		if ran || !errors.As(err, &nae) || !strings.Contains(nae.Reason, "is bound to") {
			t.Errorf("Guard(%v): ran %v, %v; want ErrNotApproved naming the binding", params, ran, err)
		}
	}
	res, err := e.m.Check(e.as("alice"), pam.Op{Task: "New-MoveRequest", Params: map[string]any{"identity": "cfo@contoso.com", "batch_size": 50, "suspend": true}})
	if err != nil || res.Allowed || !strings.Contains(res.Policies[0].Missing, `request `+r.ID+` is bound to identity = "ceo@contoso.com"`) {
		t.Errorf("Check of another mailbox: %+v, %v", res, err)
	}

	// The trail and the approvers say what is bound.
	events, _, err := e.m.Audit(e.admin(), pam.EventFilter{RequestID: r.ID, Types: []pam.EventType{pam.EventRequestSubmitted}})
	if err != nil || len(events) != 1 || events[0].Detail["bind"] != `batch_size = 50, identity = "ceo@contoso.com", suspend = true` {
		t.Errorf("request.submitted: %+v, %v", events, err)
	}
	var toApprovers []pam.Notification
	for _, n := range e.delivered() {
		if n.Type == pam.EventRequestSubmitted && n.Request.ID == r.ID {
			toApprovers = append(toApprovers, n)
		}
	}
	if len(toApprovers) == 0 || !strings.Contains(toApprovers[0].Request.Bounds(), "ceo@contoso.com") {
		t.Errorf("the approvers' notifications do not carry the binding: %+v", toApprovers)
	}
}

// TestBindWithoutDeclarations: over a catalog that declares none of the
// scope's parameters, any name can be bound; the grant still covers only
// operations that match.
func TestBindWithoutDeclarations(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Bind: map[string]any{"mailbox": "ceo@contoso.com"}})
	if ran, err := e.guard("alice", "New-MoveRequest", map[string]any{"mailbox": "ceo@contoso.com"}); !ran || err != nil {
		t.Errorf("the bound mailbox: ran %v, %v", ran, err)
	}
	if ran, err := e.guard("alice", "New-MoveRequest", map[string]any{"mailbox": "cfo@contoso.com"}); ran || !errors.Is(err, pam.ErrNotApproved) {
		t.Errorf("another mailbox: ran %v, %v", ran, err)
	}
}

// TestUseLimitedGrant: a grant of N runs allows N Guards; the last
// writes request.spent in its start's commit, the next Guard is refused
// with the reason, and a policy caps the runs a request may ask for.
func TestUseLimitedGrant(t *testing.T) {
	e := newEnv(t)
	p := movePolicy()
	p.MaxUses = 2
	e.policy(p)
	move := pam.TaskScope("New-MoveRequest")
	if _, err := e.m.Submit(e.as("alice"), pam.RequestInput{Scope: move, Reason: "INC-1", MaxUses: 3}); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("3 runs under a policy of 2: %v, want ErrInvalid", err)
	}
	if _, err := e.m.Submit(e.as("alice"), pam.RequestInput{Scope: move, Reason: "INC-1", MaxUses: -1}); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("-1 runs: %v, want ErrInvalid", err)
	}
	r := e.grant("alice", pam.RequestInput{Scope: move})
	if r.MaxUses != 2 {
		t.Fatalf("MaxUses = %d, want the policy's 2", r.MaxUses)
	}
	for i := range 2 {
		before := e.lastSeq()
		if ran, err := e.guard("alice", "New-MoveRequest", nil); !ran || err != nil {
			t.Fatalf("run %d: ran %v, %v", i+1, ran, err)
		}
		var types []pam.EventType
		for _, ev := range e.eventsSince(before) {
			types = append(types, ev.Type)
		}
		want := []pam.EventType{pam.EventGuardAllowed, pam.EventGuardFinished}
		if i == 1 {
			want = []pam.EventType{pam.EventGuardAllowed, pam.EventRequestSpent, pam.EventGuardFinished}
		}
		if !equalJSON(types, want) {
			t.Errorf("run %d wrote %v, want %v", i+1, types, want)
		}
	}
	ran, err := e.guard("alice", "New-MoveRequest", nil)
	var nae *pam.NotApprovedError
	if ran || !errors.As(err, &nae) || !strings.Contains(nae.Reason, "has used its 2 runs") {
		t.Errorf("a third run: ran %v, %v; want ErrNotApproved saying the runs are used", ran, err)
	}
	got, err := e.m.Request(e.as("alice"), r.ID)
	if err != nil || got.Uses != 2 || got.State != pam.Approved || got.Bounds() != "2 runs (2 used)" {
		t.Errorf("the request after its runs: %+v, %v", got, err)
	}
	// A spent grant can still be revoked (it may have a run going).
	if _, err := e.m.Revoke(e.as("bob"), r.ID, "done"); err != nil {
		t.Errorf("Revoke of a spent grant: %v", err)
	}
}

// TestUseLimitedGrantRunsOn: the run that takes a grant's last use runs
// to its end; the grant stays approved until its window closes, so
// nothing cuts it.
func TestUseLimitedGrantRunsOn(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), MaxUses: 1})
	err := e.m.Guard(e.as("alice"), pam.Op{Task: "New-MoveRequest"}, func(ctx context.Context) error {
		// Another Guard now is refused, and this one's context lives.
		if ran, err := e.guard("alice", "New-MoveRequest", nil); ran || !errors.Is(err, pam.ErrNotApproved) {
			t.Errorf("a second run beside the last: ran %v, %v", ran, err)
		}
		if _, err := e.m.Sweep(context.Background()); err != nil {
			t.Error(err)
		}
		return ctx.Err()
	})
	if err != nil {
		t.Errorf("the last run: %v", err)
	}
}

// TestUnlimitedGrantPreferred: with a grant that counts runs and one that
// does not, Guard runs under the one that does not, and spends nothing.
func TestUnlimitedGrantPreferred(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	move := pam.TaskScope("New-MoveRequest")
	limited := e.grant("alice", pam.RequestInput{Scope: move, MaxUses: 1, Duration: 8 * time.Hour})
	e.grant("alice", pam.RequestInput{Scope: move, Duration: time.Hour})
	if ran, err := e.guard("alice", "New-MoveRequest", nil); !ran || err != nil {
		t.Fatalf("ran %v, %v", ran, err)
	}
	if got, _ := e.m.Request(e.as("alice"), limited.ID); got.Uses != 0 {
		t.Errorf("the limited grant lost a run to a Guard the unlimited one covers: %d used", got.Uses)
	}
}

// equalJSON compares a and b as JSON.
func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
