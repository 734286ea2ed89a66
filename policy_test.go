package pam_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/zerostanding/pam"
)

func TestCreatePolicy(t *testing.T) {
	e := newEnv(t)
	p := e.policy(movePolicy())
	want := movePolicy()
	want.Version, want.MinGrantVersion, want.Revision = 1, 1, 2 // the catalog's write took revision 1
	want.CreatedAt, want.UpdatedAt, want.CreatedBy, want.UpdatedBy = epoch, epoch, "admin", "admin"
	if d := cmp.Diff(want, p); d != "" {
		t.Errorf("CreatePolicy (-want +got):\n%s", d)
	}
	got, err := e.m.Policy(e.as("alice"), "move")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(p, got); d != "" {
		t.Errorf("Policy (-want +got):\n%s", d)
	}
	evs := e.events()
	if len(evs) != 1 || evs[0].Type != pam.EventPolicyCreated || evs[0].Actor != "admin" || evs[0].PolicyID != "move" {
		t.Errorf("audit trail: %+v", evs)
	}
	eventually(t, "the sink", func() bool { return len(e.sink.Events()) == 1 })
	if d := cmp.Diff(evs, e.sink.Events()); d != "" {
		t.Errorf("sink (-want +got):\n%s", d)
	}
}

func TestPolicyChangesNeedAdmin(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	p2 := movePolicy()
	p2.ID = "other"
	for name, ctx := range map[string]struct {
		who  string
		want error
	}{
		"approver":  {"bob", pam.ErrForbidden},
		"requester": {"alice", pam.ErrForbidden},
		"no actor":  {"", pam.ErrNoActor},
		"bad actor": {"al ice", pam.ErrNoActor},
	} {
		t.Run(name, func(t *testing.T) {
			c := e.as(ctx.who)
			if ctx.who == "" {
				c = t.Context()
			}
			if _, err := e.m.CreatePolicy(c, p2); !errors.Is(err, ctx.want) {
				t.Errorf("CreatePolicy = %v, want %v", err, ctx.want)
			}
			cur, _ := e.m.Policy(c, "move")
			if _, err := e.m.UpdatePolicy(c, cur); !errors.Is(err, ctx.want) {
				t.Errorf("UpdatePolicy = %v, want %v", err, ctx.want)
			}
			if err := e.m.DeletePolicy(c, "move"); !errors.Is(err, ctx.want) {
				t.Errorf("DeletePolicy = %v, want %v", err, ctx.want)
			}
		})
	}
	if ps, _ := e.m.Policies(e.admin()); len(ps) != 1 || ps[0].Version != 1 {
		t.Errorf("policies changed by non-admins: %+v", ps)
	}
	if n := len(e.events()); n != 1 {
		t.Errorf("%d audit events, want 1", n)
	}
}

func TestPolicyValidation(t *testing.T) {
	e := newEnv(t)
	for name, tc := range map[string]struct {
		change func(*pam.Policy)
		field  string
	}{
		"unknown scope kind":     {func(p *pam.Policy) { p.Scope.Kind = "cmdlet" }, "Scope.Kind"},
		"empty task":             {func(p *pam.Policy) { p.Scope.Name = "" }, "Scope.Name"},
		"task too long":          {func(p *pam.Policy) { p.Scope.Name = strings.Repeat("x", pam.MaxNameLen+1) }, "Scope.Name"},
		"task with NUL":          {func(p *pam.Policy) { p.Scope.Name = "New-Move\x00Request" }, "Scope.Name"},
		"task invalid UTF-8":     {func(p *pam.Policy) { p.Scope.Name = "New-\xffMove" }, "Scope.Name"},
		"unknown role":           {func(p *pam.Policy) { p.Scope = pam.RoleScope("No Such Role") }, "Scope.Name"},
		"unknown role group":     {func(p *pam.Policy) { p.Scope = pam.RoleGroupScope("Nope") }, "Scope.Name"},
		"unknown approval":       {func(p *pam.Policy) { p.Approval = "sometimes" }, "Approval"},
		"empty approval":         {func(p *pam.Policy) { p.Approval = "" }, "Approval"},
		"manual without groups":  {func(p *pam.Policy) { p.ApproverGroups = nil }, "ApproverGroups"},
		"empty group":            {func(p *pam.Policy) { p.ApproverGroups = []pam.ApproverGroup{{Group: ""}} }, "ApproverGroups[0].Group"},
		"group twice":            {func(p *pam.Policy) { p.ApproverGroups = append(p.ApproverGroups, p.ApproverGroups[0]) }, "ApproverGroups[1].Group"},
		"negative quorum":        {func(p *pam.Policy) { p.ApproverGroups[0].MinApprovals = -1 }, "ApproverGroups[0].MinApprovals"},
		"negative duration":      {func(p *pam.Policy) { p.DefaultDuration = -time.Hour }, "DefaultDuration"},
		"negative max":           {func(p *pam.Policy) { p.MaxDuration = -1 }, "MaxDuration"},
		"negative pending ttl":   {func(p *pam.Policy) { p.PendingTTL = -1 }, "PendingTTL"},
		"default above max":      {func(p *pam.Policy) { p.DefaultDuration = 9 * time.Hour }, "DefaultDuration"},
		"huge duration":          {func(p *pam.Policy) { p.MaxDuration = 10000 * time.Hour }, "MaxDuration"},
		"condition with NUL":     {func(p *pam.Policy) { p.Condition = "true\x00" }, "Condition"},
		"condition invalid utf8": {func(p *pam.Policy) { p.Condition = "\xff" }, "Condition"},
		"condition too long":     {func(p *pam.Policy) { p.Condition = strings.Repeat(" ", pam.MaxRegoLen+1) }, "Condition"},
		"id with newline":        {func(p *pam.Policy) { p.ID = "a\nb" }, "ID"},
		"name too long":          {func(p *pam.Policy) { p.Name = strings.Repeat("n", 300) }, "Name"},
	} {
		t.Run(name, func(t *testing.T) {
			p := movePolicy()
			tc.change(&p)
			_, err := e.m.CreatePolicy(e.admin(), p)
			var ve *pam.ValidationError
			if !errors.Is(err, pam.ErrInvalid) || !errors.As(err, &ve) {
				t.Fatalf("CreatePolicy = %v, want a ValidationError", err)
			}
			if ve.Field != tc.field {
				t.Errorf("error names field %q, want %q (%v)", ve.Field, tc.field, err)
			}
		})
	}
	if ps, _ := e.m.Policies(e.admin()); len(ps) != 0 {
		t.Errorf("invalid policies stored: %+v", ps)
	}
	if evs := e.events(); len(evs) != 0 {
		t.Errorf("invalid policies audited: %+v", evs)
	}
}

// TestPolicyMaxDurationOnly: a policy that sets only a maximum shorter
// than the default window is valid, and a request that names no
// duration gets the maximum; a default set above the maximum is still
// refused, naming the field that was set.
func TestPolicyMaxDurationOnly(t *testing.T) {
	e := newEnv(t)
	p := movePolicy()
	p.MaxDuration = 2 * time.Hour
	if _, err := e.m.CreatePolicy(e.admin(), p); err != nil {
		t.Fatalf("CreatePolicy with only MaxDuration 2h: %v", err)
	}
	r := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	if r.Duration != 2*time.Hour {
		t.Errorf("request without a duration: %v, want the policy's maximum 2h", r.Duration)
	}
	if _, err := e.m.Submit(e.as("zoe"), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "r", Duration: 2*time.Hour + time.Nanosecond}); !errors.Is(err, pam.ErrDurationTooLong) {
		t.Errorf("one nanosecond past the maximum: %v, want ErrDurationTooLong", err)
	}
	// A maximum above the default window leaves the default as it is.
	long := pam.Policy{ID: "journal", Scope: pam.RoleScope("Journaling"), Approval: pam.Auto, MaxDuration: 12 * time.Hour}
	e.policy(long)
	if r := e.submit("alice", pam.RequestInput{PolicyID: "journal"}); r.Duration != pam.DefaultDuration {
		t.Errorf("request under a 12h maximum: %v, want %v", r.Duration, pam.DefaultDuration)
	}
	// Set explicitly above the maximum, the default is refused by name.
	p = movePolicy()
	p.ID, p.Scope, p.MaxDuration, p.DefaultDuration = "reset", pam.TaskScope("Set-Password"), time.Hour, 2*time.Hour
	var ve *pam.ValidationError
	if _, err := e.m.CreatePolicy(e.admin(), p); !errors.As(err, &ve) || ve.Field != "DefaultDuration" {
		t.Errorf("DefaultDuration 2h over MaxDuration 1h: %v, want a ValidationError of DefaultDuration", err)
	}
}

func TestPolicyRegoErrorsHavePositions(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name, field string
		change      func(*pam.Policy, string)
		src         string
		line, col   int
	}{
		{"condition syntax", "Condition", func(p *pam.Policy, s string) { p.Condition = s }, "input.op.params.size >", 1, 22},
		{"condition unknown function", "Condition", func(p *pam.Policy, s string) { p.Condition = s }, "input.op.task == \"x\"\n    nosuch(input.op.task)", 2, 5},
		{"condition http.send", "Condition", func(p *pam.Policy, s string) { p.Condition = s }, `http.send({"method": "get", "url": "http://127.0.0.1"}).status_code == 200`, 1, 1},
		{"request rule syntax", "RequestRule", func(p *pam.Policy, s string) { p.RequestRule = s }, "deny contains msg if {\n\tmsg := \"x\"\n\tmsg ==\n}", 4, 1},
		{"request rule without deny", "RequestRule", func(p *pam.Policy, s string) { p.RequestRule = s }, "allow if true", 0, 0},
		{"auto rule type error", "AutoApproveRule", func(p *pam.Policy, s string) { p.AutoApproveRule = s }, "approve if {\n  count(1) > 0\n}", 2, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := movePolicy()
			tc.change(&p, tc.src)
			_, err := e.m.CreatePolicy(e.admin(), p)
			var re *pam.RegoError
			if !errors.As(err, &re) || !errors.Is(err, pam.ErrInvalid) {
				t.Fatalf("CreatePolicy = %v, want a RegoError", err)
			}
			if re.Field != tc.field || re.Line != tc.line || re.Col != tc.col {
				t.Errorf("RegoError %s at %d:%d (%v), want %s at %d:%d", re.Field, re.Line, re.Col, re, tc.field, tc.line, tc.col)
			}
		})
	}
	// The same on update, and nothing changes.
	p := e.policy(movePolicy())
	p.Condition = "input.op.params.x >"
	if _, err := e.m.UpdatePolicy(e.admin(), p); !errors.As(err, new(*pam.RegoError)) {
		t.Fatalf("UpdatePolicy = %v, want a RegoError", err)
	}
	if got, _ := e.m.Policy(e.admin(), "move"); got.Version != 1 || got.Condition != "" {
		t.Errorf("failed update changed the policy: %+v", got)
	}
}

func TestUpdatePolicyVersions(t *testing.T) {
	e := newEnv(t)
	p := e.policy(movePolicy())

	// A change that does not touch access keeps old grants valid.
	p.MaxDuration = 12 * time.Hour
	p2, err := e.m.UpdatePolicy(e.admin(), p)
	if err != nil {
		t.Fatal(err)
	}
	if p2.Version != 2 || p2.MinGrantVersion != 1 || p2.UpdatedBy != "admin" {
		t.Errorf("after duration change: version %d, min grant version %d", p2.Version, p2.MinGrantVersion)
	}
	// A stale version is a conflict.
	if _, err := e.m.UpdatePolicy(e.admin(), p); !errors.Is(err, pam.ErrConflict) {
		t.Errorf("update from a stale version = %v, want ErrConflict", err)
	}
	// Changing the approvers invalidates older grants.
	p2.ApproverGroups = append(p2.ApproverGroups, pam.ApproverGroup{Group: "security"})
	p3, err := e.m.UpdatePolicy(e.admin(), p2)
	if err != nil {
		t.Fatal(err)
	}
	if p3.Version != 3 || p3.MinGrantVersion != 3 {
		t.Errorf("after approver change: version %d, min grant version %d; want 3, 3", p3.Version, p3.MinGrantVersion)
	}
	if err := e.m.DeletePolicy(e.admin(), "move"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Policy(e.admin(), "move"); !errors.Is(err, pam.ErrNotFound) {
		t.Errorf("Policy after delete = %v, want ErrNotFound", err)
	}
	if err := e.m.DeletePolicy(e.admin(), "move"); !errors.Is(err, pam.ErrNotFound) {
		t.Errorf("second delete = %v, want ErrNotFound", err)
	}
	if _, err := e.m.UpdatePolicy(e.admin(), p3); !errors.Is(err, pam.ErrNotFound) {
		t.Errorf("update after delete = %v, want ErrNotFound", err)
	}
	want := []pam.EventType{pam.EventPolicyCreated, pam.EventPolicyUpdated, pam.EventPolicyUpdated, pam.EventPolicyDeleted}
	if d := cmp.Diff(want, types(e.events())); d != "" {
		t.Errorf("audit (-want +got):\n%s", d)
	}
	if _, err := e.m.CreatePolicy(e.admin(), movePolicy()); !errors.Is(err, pam.ErrExists) || errors.Is(err, pam.ErrConflict) {
		t.Errorf("reusing a deleted policy's ID = %v, want ErrExists (and not ErrConflict)", err)
	}
}

func TestSetCatalog(t *testing.T) {
	e := newEnv(t)
	e.policy(pam.Policy{ID: "recip", Scope: pam.RoleGroupScope("Recipient Management"), Approval: pam.Auto})
	if ran, _ := e.guard("alice", "Remove-MoveRequest", nil); ran {
		t.Fatal("Remove-MoveRequest ran without a grant")
	}
	if ran, _ := e.guard("alice", "Set-Password", nil); !ran {
		t.Fatal("uncovered Set-Password did not run")
	}
	// Moving Set-Password into a covered role covers it from the next Guard.
	cat := testCatalog
	cat.Roles = map[string][]string{"Mail Recipients": {"Set-Mailbox", "Set-Password"}, "Move Mailboxes": {"New-MoveRequest"}}
	cat.RoleGroups = map[string][]string{"Recipient Management": {"Mail Recipients", "Move Mailboxes"}}
	if err := e.m.SetCatalog(e.admin(), cat); err != nil {
		t.Fatal(err)
	}
	if ran, err := e.guard("alice", "Set-Password", nil); ran || !errors.Is(err, pam.ErrNotApproved) {
		t.Errorf("Set-Password after catalog change: ran %v, %v", ran, err)
	}
	if ran, _ := e.guard("alice", "Remove-MoveRequest", nil); !ran {
		t.Errorf("Remove-MoveRequest, no longer in any role, did not run")
	}
	// A catalog that drops a role group a policy uses is refused whole.
	bad := pam.Catalog{Roles: cat.Roles}
	if err := e.m.SetCatalog(e.admin(), bad); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("SetCatalog dropping a used role group = %v, want ErrInvalid", err)
	}
	if ran, _ := e.guard("alice", "Set-Password", nil); ran {
		t.Errorf("refused catalog took effect")
	}
	if err := e.m.SetCatalog(e.admin(), pam.Catalog{RoleGroups: map[string][]string{"x": {"missing"}}}); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("role group with unknown role = %v, want ErrInvalid", err)
	}
	if err := e.m.SetCatalog(e.admin(), pam.Catalog{Roles: cat.Roles, RoleGroups: cat.RoleGroups, Data: map[string]any{"roles": 1}}); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("reserved data key = %v, want ErrInvalid", err)
	}
	n := 0
	for _, ev := range e.events() {
		if ev.Type == pam.EventCatalogSet {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d catalog.set events, want 1", n)
	}
}

func TestManyPolicies(t *testing.T) {
	e := newEnv(t)
	const n = 500 // no limit on the number of policies; the benchmarks go to 10,000
	for i := range n {
		p := movePolicy()
		p.ID = ""
		p.Scope = pam.TaskScope("task-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26))
		e.policy(p)
	}
	ps, err := e.m.Policies(e.admin())
	if err != nil || len(ps) != n {
		t.Fatalf("Policies: %d, %v", len(ps), err)
	}
}

func TestCreatePolicyWithATakenID(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	_, err := e.m.CreatePolicy(e.admin(), movePolicy())
	if !errors.Is(err, pam.ErrExists) || errors.Is(err, pam.ErrConflict) {
		t.Errorf("CreatePolicy with a live policy's ID = %v, want ErrExists (and not ErrConflict)", err)
	}
	if ps, _ := e.m.Policies(e.admin()); len(ps) != 1 {
		t.Errorf("%d policies, want 1", len(ps))
	}
}

// TestCatalogChangesCutGrants: changing a role's tasks, narrowed or
// widened, cuts the grants of every policy whose tasks changed and no
// other; removing or emptying a role a live policy uses is refused; only
// admins change the catalog; the event records the change itself.
func TestCatalogChangesCutGrants(t *testing.T) {
	e := newEnv(t)
	e.policy(pam.Policy{ID: "move-role", Scope: pam.RoleScope("Move Mailboxes"), Approval: pam.Auto})
	e.policy(pam.Policy{ID: "recip-group", Scope: pam.RoleGroupScope("Recipient Management"), Approval: pam.Auto})
	e.policy(pam.Policy{ID: "journal-role", Scope: pam.RoleScope("Journaling"), Approval: pam.Auto})
	e.policy(pam.Policy{ID: "password-task", Scope: pam.TaskScope("Set-Password"), Approval: pam.Auto})
	e.submit("alice", pam.RequestInput{PolicyID: "move-role"})
	e.submit("alice", pam.RequestInput{PolicyID: "recip-group"})
	e.submit("alice", pam.RequestInput{PolicyID: "journal-role"})
	e.submit("alice", pam.RequestInput{PolicyID: "password-task"})
	runs := func() map[string]bool {
		out := map[string]bool{}
		for _, task := range []string{"Remove-MoveRequest", "Set-JournalRule", "Set-Password"} {
			out[task], _ = e.guard("alice", task, nil)
		}
		return out
	}
	if d := cmp.Diff(map[string]bool{"Remove-MoveRequest": true, "Set-JournalRule": true, "Set-Password": true}, runs()); d != "" {
		t.Fatalf("before (-want +got):\n%s", d)
	}
	before := e.lastSeq()

	// Refused, nothing written: no actor, a non-admin, removing a used
	// role, emptying one.
	widened := testCatalog.Roles["Move Mailboxes"]
	cat := testCatalog
	cat.Roles = maps.Clone(testCatalog.Roles)
	cat.Roles["Move Mailboxes"] = append(slices.Clone(widened), "Drop-Database")
	if err := e.m.SetCatalog(context.Background(), cat); !errors.Is(err, pam.ErrNoActor) {
		t.Errorf("no actor: %v", err)
	}
	if err := e.m.SetCatalog(e.as("bob"), cat); !errors.Is(err, pam.ErrForbidden) {
		t.Errorf("non-admin: %v", err)
	}
	gone := cat
	gone.Roles = maps.Clone(cat.Roles)
	delete(gone.Roles, "Journaling")
	gone.RoleGroups = map[string][]string{"Recipient Management": {"Mail Recipients", "Move Mailboxes"}, "Compliance": {"Retention"}}
	if err := e.m.SetCatalog(e.admin(), gone); !errors.Is(err, pam.ErrInvalid) || !strings.Contains(err.Error(), "journal-role") {
		t.Errorf("removing a used role: %v", err)
	}
	empty := cat
	empty.Roles = maps.Clone(cat.Roles)
	empty.Roles["Journaling"] = nil
	if err := e.m.SetCatalog(e.admin(), empty); !errors.Is(err, pam.ErrInvalid) || !strings.Contains(err.Error(), "journal-role") {
		t.Errorf("emptying a used role: %v", err)
	}
	if n := len(e.eventsSince(before)); n != 0 {
		t.Fatalf("refused changes wrote %d events", n)
	}
	if stored, err := e.m.Catalog(e.admin()); err != nil || stored.Version != 1 || len(stored.Roles["Move Mailboxes"]) != len(widened) {
		t.Fatalf("refused changes changed the stored catalog: version %d, %v", stored.Version, err)
	}

	// Widening Move Mailboxes changes the tasks of move-role and of
	// recip-group (through the role): both are cut, the others are not.
	if err := e.m.SetCatalog(e.admin(), cat); err != nil {
		t.Fatal(err)
	}
	evs := e.eventsSince(before)
	if len(evs) != 3 || evs[0].Type != pam.EventCatalogSet {
		t.Fatalf("events: %+v", evs)
	}
	want := map[string]string{"role:Move Mailboxes.tasks_added": "Drop-Database", "policies_cut": "move-role,recip-group"}
	if d := cmp.Diff(want, evs[0].Detail); d != "" {
		t.Errorf("catalog.set detail (-want +got):\n%s", d)
	}
	for i, id := range []string{"move-role", "recip-group"} {
		if ev := evs[i+1]; ev.Type != pam.EventPolicyUpdated || ev.PolicyID != id || ev.Detail["cause"] != "catalog" {
			t.Errorf("event %d: %+v", i+1, ev)
		}
	}
	// The old grant does not run the new task, nor the old one.
	if ran, _ := e.guard("alice", "Drop-Database", nil); ran {
		t.Error("a grant approved before the role widened runs the task it gained")
	}
	if d := cmp.Diff(map[string]bool{"Remove-MoveRequest": false, "Set-JournalRule": true, "Set-Password": true}, runs()); d != "" {
		t.Errorf("after widening (-want +got):\n%s", d)
	}

	// Narrowing Journaling is a change too; a task-scoped policy is
	// never cut by the catalog.
	e.submit("alice", pam.RequestInput{PolicyID: "move-role"})
	e.submit("alice", pam.RequestInput{PolicyID: "recip-group"})
	narrowed := cat
	narrowed.Roles = maps.Clone(cat.Roles)
	narrowed.Roles["Journaling"] = []string{"Set-JournalRule"}
	narrowed.Roles["Reset Passwords"] = nil // no policy uses it
	narrowed.Roles["Retention"] = []string{"Set-RetentionPolicy", "Set-JournalRule"}
	before = e.lastSeq()
	if err := e.m.SetCatalog(e.admin(), narrowed); err != nil {
		t.Fatal(err)
	}
	if got := e.eventsSince(before)[0].Detail["policies_cut"]; got != "" {
		t.Errorf("policies cut by an unchanged role's neighbours: %q", got)
	}
	narrowed.Roles["Journaling"] = []string{"Set-JournalRule", "Set-Password"}
	if err := e.m.SetCatalog(e.admin(), narrowed); err != nil {
		t.Fatal(err)
	}
	narrowed.Roles["Journaling"] = []string{"Set-JournalRule"}
	before = e.lastSeq()
	if err := e.m.SetCatalog(e.admin(), narrowed); err != nil {
		t.Fatal(err)
	}
	if got := e.eventsSince(before)[0].Detail; got["policies_cut"] != "journal-role" || got["role:Journaling.tasks_removed"] != "Set-Password" {
		t.Errorf("narrowing: %v", got)
	}
	if d := cmp.Diff(map[string]bool{"Remove-MoveRequest": true, "Set-JournalRule": false, "Set-Password": true}, runs()); d != "" {
		t.Errorf("after narrowing (-want +got):\n%s", d)
	}
}

// TestPolicyIndexFollowsWrites: through many creates, updates and deletes
// (enough to fold the index's overlay into its base several times), the
// policies Check finds for each task are exactly those whose scope covers
// it.
func TestPolicyIndexFollowsWrites(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		e := newEnv(rt)
		tasks := []string{"Set-Mailbox", "New-MoveRequest", "Remove-MoveRequest", "Set-JournalRule", "Set-Password", "T1", "T2"}
		scopes := []pam.Scope{pam.RoleScope("Mail Recipients"), pam.RoleScope("Move Mailboxes"), pam.RoleGroupScope("Recipient Management"),
			pam.RoleScope("Journaling"), pam.TaskScope("Set-Password"), pam.TaskScope("T1"), pam.TaskScope("T2")}
		live := map[string]pam.Policy{}
		n := 0
		for range rapid.IntRange(50, 150).Draw(rt, "steps") {
			ids := slices.Sorted(maps.Keys(live))
			switch op := rapid.IntRange(0, 2).Draw(rt, "op"); {
			case op == 0 || len(ids) == 0:
				n++
				p, err := e.m.CreatePolicy(e.admin(), pam.Policy{ID: fmt.Sprint("p", n), Scope: rapid.SampledFrom(scopes).Draw(rt, "scope"),
					Approval: pam.Auto, Condition: fmt.Sprintf("input.op.params.n != %d", n)})
				if err != nil {
					rt.Fatal(err)
				}
				live[p.ID] = p
			case op == 1:
				p := live[rapid.SampledFrom(ids).Draw(rt, "update")]
				p.Scope = rapid.SampledFrom(scopes).Draw(rt, "new scope")
				p, err := e.m.UpdatePolicy(e.admin(), p)
				if err != nil {
					rt.Fatal(err)
				}
				live[p.ID] = p
			default:
				id := rapid.SampledFrom(ids).Draw(rt, "delete")
				if err := e.m.DeletePolicy(e.admin(), id); err != nil {
					rt.Fatal(err)
				}
				delete(live, id)
			}
			task := rapid.SampledFrom(tasks).Draw(rt, "task")
			res, err := e.m.Check(e.as("alice"), pam.Op{Task: task})
			if err != nil {
				rt.Fatal(err)
			}
			var got, want []string
			for _, pc := range res.Policies {
				got = append(got, pc.PolicyID)
			}
			for id, p := range live {
				if covers(p.Scope, task) {
					want = append(want, id)
				}
			}
			slices.Sort(want)
			if !slices.Equal(got, want) {
				rt.Fatalf("candidates of %s: %v, want %v", task, got, want)
			}
		}
	})
}

// covers is the test's own reading of testCatalog.
func covers(s pam.Scope, task string) bool {
	switch s.Kind {
	case pam.KindTask:
		return s.Name == task
	case pam.KindRole:
		return slices.Contains(testCatalog.Roles[s.Name], task)
	}
	for _, r := range testCatalog.RoleGroups[s.Name] {
		if slices.Contains(testCatalog.Roles[r], task) {
			return true
		}
	}
	return false
}

// TestCatalogDataAndDeclarationsCutConditions: what a condition reads
// changing (the catalog's data, its task's parameter declaration) cuts
// the grants of the policies with a condition, and of no other.
func TestCatalogDataAndDeclarationsCutConditions(t *testing.T) {
	e := newEnv(t)
	e.policy(pam.Policy{ID: "vip", Scope: pam.TaskScope("New-MoveRequest"), Approval: pam.Auto, Condition: "input.op.params.mailbox in data.pam.vip"})
	e.policy(pam.Policy{ID: "plain", Scope: pam.TaskScope("Set-Password"), Approval: pam.Auto})
	cut := func(change func(*pam.Catalog)) string {
		t.Helper()
		cat, err := e.m.Catalog(e.admin())
		if err != nil {
			t.Fatal(err)
		}
		change(&cat)
		before := e.lastSeq()
		if err := e.m.SetCatalog(e.admin(), cat); err != nil {
			t.Fatal(err)
		}
		return e.eventsSince(before)[0].Detail["policies_cut"]
	}
	if got := cut(func(c *pam.Catalog) { c.Data = map[string]any{"vip": []any{"ceo@contoso.com", "cto@contoso.com"}} }); got != "vip" {
		t.Errorf("the data changed: cut %q, want vip", got)
	}
	if got := cut(func(c *pam.Catalog) {
		c.Tasks = map[string]pam.TaskSpec{"New-MoveRequest": {Params: []pam.ParamSpec{{Name: "mailbox", Type: pam.ParamString}}}}
	}); got != "vip" {
		t.Errorf("the declaration of its task changed: cut %q, want vip", got)
	}
	if got := cut(func(c *pam.Catalog) {
		c.Tasks["Set-Password"] = pam.TaskSpec{Params: []pam.ParamSpec{{Name: "user", Type: pam.ParamString}}}
	}); got != "" {
		t.Errorf("the declaration of a task no condition reads changed: cut %q", got)
	}
}
