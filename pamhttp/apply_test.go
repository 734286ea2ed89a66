package pamhttp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/pamhttp"
)

// TestCatalogAndApplyRoutes: GET and PUT /catalog and POST /apply over
// HTTP, with who may, the dry run, and the status of each refusal.
func TestCatalogAndApplyRoutes(t *testing.T) {
	e := newEnv(t)
	// A grant under move, which deleting move cuts.
	r, err := e.m.Submit(pam.WithActor(context.Background(), "alice"), pam.RequestInput{PolicyID: "move", Reason: "r"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Approve(pam.WithActor(context.Background(), "bob"), r.ID, "ok"); err != nil {
		t.Fatal(err)
	}
	policies := func() string {
		t.Helper()
		ps, err := e.m.Policies(pam.WithActor(context.Background(), "admin"))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range ps {
			out = append(out, fmt.Sprintf("%s@%d", p.ID, p.Version))
		}
		return strings.Join(out, " ")
	}
	const (
		catalog = `{"roles":{"Mail":["New-MoveRequest","Set-Mailbox"]},"tasks":{"Set-Mailbox":{"params":[{"name":"identity","type":"string","required":true}]}}}`
		mail    = `"mail":{"scope":{"kind":"role","name":"Mail"},"approval":"auto","max_duration":"4h"}`
		move    = `"move":{"name":"Mailbox moves","scope":{"kind":"task","name":"New-MoveRequest"},"approval":"manual","approver_groups":[{"group":"approvers"}],"max_duration":"8h"}`
	)
	for _, s := range []struct {
		name, user, method, path, body string
		status                         int
		code                           string
		answer                         string // the whole answer, when given
		detail                         string // in the problem's detail, when given
		policies                       string // the live policies after, when given
	}{
		{name: "the catalog needs a sign-in", method: "GET", path: "/api/v1/catalog", status: 401, code: "no_actor"},
		{name: "anyone signed in reads the catalog", user: "alice", method: "GET", path: "/api/v1/catalog", status: 200,
			answer: `{"version":1,"revision":1,"roles":{"Mail":["New-MoveRequest"]}}`},
		{name: "setting it is for admins", user: "alice", method: "PUT", path: "/api/v1/catalog", body: catalog, status: 403, code: "forbidden"},
		{name: "a catalog with an unknown field", user: "admin", method: "PUT", path: "/api/v1/catalog", body: `{"roles":{},"groups":{}}`, status: 400, code: "invalid"},
		{name: "a catalog with a bad parameter type", user: "admin", method: "PUT", path: "/api/v1/catalog", body: `{"tasks":{"T":{"params":[{"name":"n","type":"text"}]}}}`, status: 400, code: "invalid"},
		{name: "set the catalog", user: "admin", method: "PUT", path: "/api/v1/catalog", body: catalog, status: 200, answer: `{}`},
		{name: "read it back, at the next version", user: "alice", method: "GET", path: "/api/v1/catalog", status: 200,
			answer: `{"version":2,"revision":3,` + catalog[1:]},

		{name: "apply is for admins", user: "alice", method: "POST", path: "/api/v1/apply", body: `{"config":{"policies":{` + move + `}}}`, status: 403, code: "forbidden"},
		{name: "apply without a config", user: "admin", method: "POST", path: "/api/v1/apply", body: `{"dry_run":true}`, status: 400, code: "invalid", policies: "move@1"},
		{name: "apply with an unknown field in a policy", user: "admin", method: "POST", path: "/api/v1/apply",
			body: `{"config":{"policies":{"move":{"scope":{"kind":"task","name":"New-MoveRequest"},"aproval":"auto"}}}}`, status: 400, code: "invalid",
			detail: `unknown field "aproval" in config.policies.move`},
		{name: "apply with an unknown field in a task declaration", user: "admin", method: "POST", path: "/api/v1/apply",
			body: `{"config":{"catalog":{"tasks":{"Set Mailbox":{"params":[{"name":"n","type":"string","optional":true}]}}}}}`, status: 400, code: "invalid",
			detail: `unknown field "optional" in config.catalog.tasks["Set Mailbox"].params[0]`},
		{name: "apply a scope the catalog does not define", user: "admin", method: "POST", path: "/api/v1/apply",
			body: `{"config":{"policies":{"x":{"scope":{"kind":"role","name":"Nope"},"approval":"auto"}}}}`, status: 400, code: "invalid"},
		{name: "dry run", user: "admin", method: "POST", path: "/api/v1/apply", body: `{"config":{"policies":{` + mail + `,` + move + `}},"dry_run":true}`, status: 200,
			answer: `{"policies":[{"action":"create","policy_id":"mail"}],"applied":false}`, policies: "move@1"},
		{name: "apply", user: "admin", method: "POST", path: "/api/v1/apply", body: `{"config":{"policies":{` + mail + `,` + move + `}}}`, status: 200,
			answer: `{"policies":[{"action":"create","policy_id":"mail"}],"applied":true}`, policies: "mail@1 move@1"},
		{name: "again: nothing to do", user: "admin", method: "POST", path: "/api/v1/apply", body: `{"config":{"policies":{` + mail + `,` + move + `}}}`, status: 200,
			answer: `{"applied":false}`, policies: "mail@1 move@1"},
		{name: "dry run of a delete, with the grant it cuts", user: "admin", method: "POST", path: "/api/v1/apply", body: `{"config":{"policies":{` + mail + `}},"dry_run":true}`, status: 200,
			answer: `{"policies":[{"action":"delete","policy_id":"move","cuts_grants":true,"active_grants":1}],"applied":false}`, policies: "mail@1 move@1"},
		{name: "a catalog change that cuts a policy", user: "admin", method: "POST", path: "/api/v1/apply",
			body: `{"config":{"catalog":{"roles":{"Mail":["Set-Mailbox"]}},"policies":{` + mail + `,` + move + `}},"dry_run":true}`, status: 200,
			answer: `{"catalog":{"role:Mail.tasks_removed":"New-MoveRequest","task:Set-Mailbox.params":"undeclared"},"policies":[{"action":"update","policy_id":"mail","changed":["catalog"],"cuts_grants":true}],"applied":false}`},
		{name: "delete", user: "admin", method: "POST", path: "/api/v1/apply", body: `{"config":{"policies":{` + mail + `}}}`, status: 200, policies: "mail@1"},
		{name: "a deleted policy's name again", user: "admin", method: "POST", path: "/api/v1/apply", body: `{"config":{"policies":{` + mail + `,` + move + `}},"dry_run":true}`,
			status: 409, code: "exists"},
		{name: "two policies with one scope", user: "admin", method: "POST", path: "/api/v1/apply",
			body: `{"config":{"policies":{` + mail + `,"mail2":{"scope":{"kind":"role","name":"Mail"},"approval":"auto"}}}}`, status: 409, code: "exists"},
		{name: "two policies with one scope, meant", user: "admin", method: "POST", path: "/api/v1/apply",
			body: `{"config":{"policies":{` + mail + `,"mail2":{"scope":{"kind":"role","name":"Mail"},"approval":"auto"}},"same_scope":["mail2"]},"dry_run":true}`, status: 200,
			answer: `{"policies":[{"action":"create","policy_id":"mail2"}],"applied":false}`},
		{name: "a catalog that empties a role a policy uses", user: "admin", method: "PUT", path: "/api/v1/catalog", body: `{"roles":{"Mail":[]}}`, status: 400, code: "invalid"},
		{name: "delete everything, explicitly", user: "admin", method: "POST", path: "/api/v1/apply", body: `{"config":{}}`, status: 200, policies: ""},
	} {
		st, b := e.json(s.user, s.method, s.path, s.body)
		if st != s.status || s.code != "" && code(t, b) != s.code {
			t.Fatalf("%s: %d %s; want %d %s", s.name, st, b, s.status, s.code)
		}
		if s.detail != "" && !strings.Contains(b, strings.ReplaceAll(s.detail, `"`, `\"`)) {
			t.Errorf("%s: %s does not say %s", s.name, b, s.detail)
		}
		if s.answer != "" && strings.TrimSpace(b) != s.answer {
			t.Errorf("%s: answered\n%s\nwant\n%s", s.name, strings.TrimSpace(b), s.answer)
		}
		if s.policies != "" || s.name == "delete everything, explicitly" {
			if got := policies(); got != s.policies {
				t.Errorf("%s: policies %q, want %q", s.name, got, s.policies)
			}
		}
	}
}

// TestConfigBodies: a config may be larger than MaxBodyBytes, up to
// MaxConfigBytes; other bodies stay capped at MaxBodyBytes.
func TestConfigBodies(t *testing.T) {
	e := newEnv(t)
	h, err := pamhttp.New(e.m, pamhttp.Options{MaxBodyBytes: 1024, MaxConfigBytes: 8192,
		Authenticate: func(*http.Request) (string, error) { return "admin", nil }})
	if err != nil {
		t.Fatal(err)
	}
	config := func(n int) string {
		ps := map[string]pam.Policy{}
		for i := range n {
			ps[fmt.Sprintf("p%03d", i)] = pam.Policy{Scope: pam.TaskScope(fmt.Sprintf("Task-%03d", i)), Approval: pam.Auto}
		}
		b, _ := json.Marshal(pamhttp.ApplyRequest{Config: &pam.Config{Policies: ps}, DryRun: true})
		return string(b)
	}
	post := func(path, body string) int {
		req := httptest.NewRequest("POST", path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Code
	}
	if body := config(20); len(body) <= 1024 || len(body) > 8192 {
		t.Fatalf("20 policies are %d bytes", len(body))
	} else if st := post("/api/v1/apply", body); st != 200 {
		t.Errorf("a %d-byte config: %d", len(body), st)
	}
	if body := config(200); post("/api/v1/apply", body) != http.StatusRequestEntityTooLarge {
		t.Errorf("a %d-byte config passed MaxConfigBytes", len(body))
	}
	if st := post("/api/v1/requests", `{"task":"New-MoveRequest","reason":"`+strings.Repeat("x", 2000)+`"}`); st != http.StatusRequestEntityTooLarge {
		t.Errorf("a 2 KB request: %d", st)
	}
	if _, err := pamhttp.New(e.m, pamhttp.Options{MaxConfigBytes: -1, Authenticate: func(*http.Request) (string, error) { return "", nil }}); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("a negative MaxConfigBytes: %v", err)
	}
}

// TestCatalogAndApplyBothWays: the Manager and the Client answer Catalog,
// SetCatalog and Apply alike, errors by sentinel.
func TestCatalogAndApplyBothWays(t *testing.T) {
	for _, way := range ways {
		t.Run(way.name, func(t *testing.T) {
			e := newEnv(t)
			adminCtx, admin := way.as(t, e, "admin")
			aliceCtx, alice := way.as(t, e, "alice")

			cat, err := alice.Catalog(aliceCtx)
			ok(t, "catalog", err)
			if diff := cmp.Diff(pam.Catalog{Version: 1, Roles: map[string][]string{"Mail": {"New-MoveRequest"}}}, cat, emptyMaps, cmpopts.IgnoreFields(pam.Catalog{}, "Revision")); diff != "" {
				t.Errorf("catalog (-want +got):\n%s", diff)
			}
			next := pam.Catalog{
				Roles:      map[string][]string{"Mail": {"New-MoveRequest", "Set-Mailbox"}, "Export": {"New-MailboxExportRequest"}},
				RoleGroups: map[string][]string{"Exchange": {"Mail", "Export"}},
				Tasks:      map[string]pam.TaskSpec{"Set-Mailbox": {Params: []pam.ParamSpec{{Name: "identity", Type: pam.ParamString, Required: true}}}},
				Data:       map[string]any{"vip": []any{"ceo@contoso.com"}},
			}
			is(t, "set as a non-admin", alice.SetCatalog(aliceCtx, next), pam.ErrForbidden)
			is(t, "set an invalid catalog", admin.SetCatalog(adminCtx, pam.Catalog{RoleGroups: map[string][]string{"G": {"Nope"}}}), pam.ErrInvalid)
			ok(t, "set", admin.SetCatalog(adminCtx, next))
			cat, err = alice.Catalog(aliceCtx)
			ok(t, "catalog", err)
			next.Version = 2
			if diff := cmp.Diff(next, cat, emptyMaps, cmpopts.IgnoreFields(pam.Catalog{}, "Revision")); diff != "" {
				t.Errorf("catalog as set (-want +got):\n%s", diff)
			}

			cfg := pam.Config{Policies: map[string]pam.Policy{
				"move": {Name: "Mailbox moves", Scope: pam.TaskScope("New-MoveRequest"), Approval: pam.Manual,
					ApproverGroups: []pam.ApproverGroup{{Group: "approvers"}}, MaxDuration: 4 * time.Hour},
				"exchange": {Scope: pam.RoleGroupScope("Exchange"), Approval: pam.Manual,
					ApproverGroups: []pam.ApproverGroup{{Group: "approvers", MinApprovals: 2}}, DefaultDuration: time.Hour,
					Condition: "input.op.params.identity in data.pam.vip\n"},
			}}
			_, err = alice.Apply(aliceCtx, cfg, pam.ApplyOptions{DryRun: true})
			is(t, "apply as a non-admin", err, pam.ErrForbidden)
			want := pam.Plan{Policies: []pam.PolicyChange{
				{Action: pam.PlanCreate, PolicyID: "exchange"},
				{Action: pam.PlanUpdate, PolicyID: "move", Changed: []string{"max_duration"}},
			}}
			plan, err := admin.Apply(adminCtx, cfg, pam.ApplyOptions{DryRun: true})
			ok(t, "dry run", err)
			if diff := cmp.Diff(want, plan); diff != "" {
				t.Errorf("dry run (-want +got):\n%s", diff)
			}
			if p, err := admin.Policy(adminCtx, "move"); err != nil || p.Version != 1 {
				t.Errorf("after the dry run: %+v %v", p, err)
			}
			want.Applied = true
			plan, err = admin.Apply(adminCtx, cfg, pam.ApplyOptions{})
			ok(t, "apply", err)
			if diff := cmp.Diff(want, plan); diff != "" {
				t.Errorf("apply (-want +got):\n%s", diff)
			}
			p, err := alice.Policy(aliceCtx, "exchange")
			ok(t, "the policy applied", err)
			if p.Condition != cfg.Policies["exchange"].Condition || p.DefaultDuration != time.Hour || p.ApproverGroups[0].MinApprovals != 2 {
				t.Errorf("applied %+v", p)
			}
			plan, err = admin.Apply(adminCtx, cfg, pam.ApplyOptions{})
			ok(t, "apply again", err)
			if !plan.Empty() || plan.Applied {
				t.Errorf("apply again: %+v", plan)
			}
			is(t, "a catalog that removes a role a policy uses", admin.SetCatalog(adminCtx, pam.Catalog{Roles: next.Roles}), pam.ErrInvalid)

			// Delete move, then name it again.
			delete(cfg.Policies, "move")
			plan, err = admin.Apply(adminCtx, cfg, pam.ApplyOptions{})
			ok(t, "delete", err)
			if diff := cmp.Diff(pam.Plan{Policies: []pam.PolicyChange{{Action: pam.PlanDelete, PolicyID: "move", CutsGrants: true}}, Applied: true}, plan); diff != "" {
				t.Errorf("delete (-want +got):\n%s", diff)
			}
			cfg.Policies["move"] = pam.Policy{Scope: pam.TaskScope("New-MoveRequest"), Approval: pam.Auto}
			_, err = admin.Apply(adminCtx, cfg, pam.ApplyOptions{DryRun: true})
			is(t, "a deleted policy's name", err, pam.ErrExists)
			cfg.Policies = map[string]pam.Policy{"a": {Scope: pam.TaskScope("X"), Approval: pam.Auto}, "b": {Scope: pam.TaskScope("X"), Approval: pam.Auto}}
			_, err = admin.Apply(adminCtx, cfg, pam.ApplyOptions{DryRun: true})
			is(t, "two policies with one scope", err, pam.ErrExists)
		})
	}
}

// emptyMaps: an absent map and an empty one are the same catalog.
var emptyMaps = cmp.FilterValues(func(x, y any) bool {
	return isEmptyMap(x) && isEmptyMap(y)
}, cmp.Ignore())

func isEmptyMap(v any) bool {
	switch m := v.(type) {
	case map[string][]string:
		return len(m) == 0
	case map[string]pam.TaskSpec:
		return len(m) == 0
	case map[string]any:
		return len(m) == 0
	}
	return false
}
