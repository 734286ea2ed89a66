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
		{"wrong type", map[string]any{"identity": 7}, "declares identity of New-MoveRequest as a string, not a number"},
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

// TestBindOverSeveralTasks: over a scope of several tasks, a binding
// needs every task to declare the bound name (a name means one target in
// one task and another, or nothing, in the next), and a grant bound so
// covers no task that, by the catalog of now, does not declare it.
func TestBindOverSeveralTasks(t *testing.T) {
	declare := func(tasks map[string]pam.TaskSpec) func(*pam.Options) {
		return func(o *pam.Options) {
			cat := testCatalog.Clone()
			cat.Tasks = tasks
			o.Catalog = cat
		}
	}
	identity := pam.TaskSpec{Params: []pam.ParamSpec{{Name: "identity", Type: pam.ParamString, Required: true}}}
	mailbox := pam.TaskSpec{Params: []pam.ParamSpec{{Name: "mailbox", Type: pam.ParamString, Required: true}}}
	role := pam.RoleScope("Move Mailboxes") // New-MoveRequest, Remove-MoveRequest

	// Remove-MoveRequest names its target otherwise: refused, nothing stored.
	e := newEnv(t, declare(map[string]pam.TaskSpec{"New-MoveRequest": identity, "Remove-MoveRequest": mailbox}))
	p := movePolicy()
	p.Scope, p.RequireBind = role, []string{"identity"}
	e.policy(p)
	_, err := e.m.Submit(e.as("alice"), pam.RequestInput{Scope: role, Reason: "INC-1", Bind: map[string]any{"identity": "ceo@contoso.com"}})
	if !errors.Is(err, pam.ErrInvalid) || !strings.Contains(err.Error(), "Remove-MoveRequest, which does not declare a parameter identity") {
		t.Errorf("a binding one task of the scope does not declare: %v", err)
	}
	// A task of the scope the catalog does not declare at all: refused.
	e = newEnv(t, declare(map[string]pam.TaskSpec{"New-MoveRequest": identity}))
	e.policy(p)
	if _, err := e.m.Submit(e.as("alice"), pam.RequestInput{Scope: role, Reason: "INC-1", Bind: map[string]any{"identity": "ceo@contoso.com"}}); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("a binding over a task with no declarations: %v", err)
	}
	// Both declare it: the grant covers each task for the bound target
	// only, extra parameters or not.
	e = newEnv(t, declare(map[string]pam.TaskSpec{"New-MoveRequest": identity, "Remove-MoveRequest": identity}))
	e.policy(p)
	e.grant("alice", pam.RequestInput{Scope: role, Bind: map[string]any{"identity": "ceo@contoso.com"}})
	for task, want := range map[string]bool{"New-MoveRequest": true, "Remove-MoveRequest": true} {
		if ran, err := e.guard("alice", task, map[string]any{"identity": "ceo@contoso.com"}); ran != want {
			t.Errorf("%s on the bound mailbox: ran %v, %v", task, ran, err)
		}
		if ran, _ := e.guard("alice", task, map[string]any{"identity": "cfo@contoso.com", "mailbox": "ceo@contoso.com"}); ran {
			t.Errorf("%s on another mailbox ran", task)
		}
	}
	// The catalog changes: Remove-MoveRequest no longer declares it, and
	// the grant no longer covers it.
	cat, err := e.m.Catalog(e.admin())
	if err != nil {
		t.Fatal(err)
	}
	cat.Tasks["Remove-MoveRequest"] = mailbox
	if err := e.m.SetCatalog(e.admin(), cat); err != nil {
		t.Fatal(err)
	}
	ran, err := e.guard("alice", "Remove-MoveRequest", map[string]any{"mailbox": "cfo@contoso.com", "identity": "ceo@contoso.com"})
	var nae *pam.NotApprovedError
	if ran || !errors.As(err, &nae) || !strings.Contains(nae.Reason, "which Remove-MoveRequest does not declare") {
		t.Errorf("a task that no longer declares the bound name: ran %v, %v", ran, err)
	}
}

// TestBindNamesAndNumbersAreExact: what approvers read is what is bound.
// A name is an identifier (one that could read as another binding is
// refused), and a number is one a float64 holds exactly within ±2^53:
// beyond, from any Go type or json.Number, it is refused at submission
// and never matches at Guard, so no two integers share a grant.
func TestBindNamesAndNumbersAreExact(t *testing.T) {
	e := boundEnv(t)
	e.policy(movePolicy())
	move := pam.TaskScope("New-MoveRequest")
	for _, bind := range []map[string]any{
		{`identity = "ceo@contoso.com", note`: "x"},
		{"identity\u202e": "x"},
		{"9lives": "x"},
		{"identity": "ceo@contoso.com", "batch_size": json.Number("9007199254740993")},
		{"identity": "ceo@contoso.com", "batch_size": json.Number("0.1000000000000000000001")},
		{"identity": "ceo@contoso.com", "batch_size": float64(1 << 60)},
		{"identity": "ceo@contoso.com", "batch_size": uint64(1) << 60},
	} {
		if _, err := e.m.Submit(e.as("mallory"), pam.RequestInput{Scope: move, Reason: "INC-1", Bind: bind}); !errors.Is(err, pam.ErrInvalid) {
			t.Errorf("Bind %v: %v, want ErrInvalid", bind, err)
		}
	}
	e.grant("alice", pam.RequestInput{Scope: move, Bind: map[string]any{"identity": "ceo@contoso.com", "batch_size": json.Number("9007199254740991")}})
	for params, want := range map[string]bool{
		"9007199254740991":   true,
		"9007199254740993":   false, // rounds onto 2^53 as a float64
		"9007199254740992.5": false,
	} {
		ran, _ := e.guard("alice", "New-MoveRequest", map[string]any{"identity": "ceo@contoso.com", "batch_size": json.Number(params)})
		if ran != want {
			t.Errorf("batch_size %s: ran %v, want %v", params, ran, want)
		}
	}
	if ran, _ := e.guard("alice", "New-MoveRequest", map[string]any{"identity": "ceo@contoso.com", "batch_size": float64(1 << 60)}); ran {
		t.Error("a float64 beyond 2^53 matched")
	}
}
