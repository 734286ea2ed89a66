package pamhttp_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/pamhttp"
	"github.com/zerostanding/pam/store/memory"
)

var epoch = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)

type env struct {
	t   *testing.T
	m   *pam.Manager
	h   *pamhttp.Handler
	clk *clock.Mock
	srv *httptest.Server
}

// newEnv serves the handler under /pam/. The test's Authenticate reads
// the user from a cookie, as a host's session would.
func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, nil)
}

// newEnvWith is newEnv with the handler's options changed by configure.
func newEnvWith(t *testing.T, configure func(*pamhttp.Options)) *env {
	t.Helper()
	clk := clock.NewMock()
	clk.Set(epoch)
	dir, _ := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin"}, "approvers": {"bob", "carol"}})
	m, err := pam.New(memory.New(), dir, &pam.Options{Clock: clk, AdminGroup: "pam-admins",
		Catalog: pam.Catalog{Roles: map[string][]string{"Mail": {"New-MoveRequest"}}}})
	if err != nil {
		t.Fatal(err)
	}
	opts := pamhttp.Options{Now: clk.Now, MaxBodyBytes: 4096, Authenticate: func(r *http.Request) (string, error) {
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			if u, ok := strings.CutPrefix(tok, "token-"); ok {
				return u, nil
			}
			return "", errors.New("unknown token")
		}
		c, err := r.Cookie("user")
		if err != nil {
			return "", err
		}
		return c.Value, nil
	}}
	if configure != nil {
		configure(&opts)
	}
	h, err := pamhttp.New(m, opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/pam/", http.StripPrefix("/pam", h))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	e := &env{t: t, m: m, h: h, clk: clk, srv: srv}
	if _, err := m.CreatePolicy(pam.WithActor(context.Background(), "admin"), pam.Policy{ID: "move", Name: "Mailbox moves",
		Scope: pam.TaskScope("New-MoveRequest"), Approval: pam.Manual, ApproverGroups: []pam.ApproverGroup{{Group: "approvers"}}, MaxDuration: 8 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	return e
}

// do sends a request as user ("" for nobody) and returns the status and
// body.
func (e *env) do(user, method, path, contentType, body string, header ...string) (int, string, http.Header) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+"/pam"+path, strings.NewReader(body))
	if user != "" {
		req.AddCookie(&http.Cookie{Name: "user", Value: user})
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func (e *env) json(user, method, path, body string) (int, string) {
	e.t.Helper()
	st, b, _ := e.do(user, method, path, "application/json", body)
	return st, b
}

func code(t *testing.T, body string) string {
	t.Helper()
	var p pamhttp.Problem
	json.Unmarshal([]byte(body), &p)
	return p.Code
}

func TestAPI(t *testing.T) {
	e := newEnv(t)
	var req pam.Request
	steps := []struct {
		name, user, method, path, body string
		status                         int
		code                           string
		then                           func(body string)
	}{
		{name: "no user", method: "GET", path: "/api/v1/me", status: 401, code: "no_actor"},
		{name: "me", user: "Admin", method: "GET", path: "/api/v1/me", status: 200, then: func(b string) {
			if !strings.Contains(b, `"actor":"admin"`) || !strings.Contains(b, `"admin":true`) {
				t.Errorf("me: %s", b)
			}
		}},
		{name: "policies are for admins", user: "alice", method: "POST", path: "/api/v1/policies", body: `{"scope":{"kind":"task","name":"X"},"approval":"auto"}`, status: 403, code: "forbidden"},
		{name: "policy with an unknown field", user: "admin", method: "POST", path: "/api/v1/policies", body: `{"scope":{"kind":"task","name":"X"},"approval":"auto","nope":1}`, status: 400, code: "invalid"},
		{name: "policy with bad Rego", user: "admin", method: "POST", path: "/api/v1/policies", body: `{"scope":{"kind":"task","name":"X"},"approval":"auto","condition":"input.op ==="}`, status: 400, code: "invalid"},
		{name: "policy with an unknown field inside", user: "admin", method: "POST", path: "/api/v1/policies", body: `{"scope":{"kind":"task","name":"X","nope":1},"approval":"auto"}`, status: 400, code: "invalid"},
		{name: "policy with a bad duration", user: "admin", method: "POST", path: "/api/v1/policies", body: `{"scope":{"kind":"task","name":"X"},"approval":"auto","max_duration":"a while"}`, status: 400, code: "invalid"},
		{name: "create policy", user: "admin", method: "POST", path: "/api/v1/policies", body: `{"id":"x","scope":{"kind":"task","name":"X"},"approval":"auto","max_duration":"90m","default_duration":3600000000000}`, status: 201, then: func(b string) {
			if !strings.Contains(b, `"max_duration":"1h30m0s"`) || !strings.Contains(b, `"default_duration":"1h0m0s"`) || !strings.Contains(b, `"created_by":"admin"`) {
				t.Errorf("created %s", b)
			}
		}},
		{name: "the same id again", user: "admin", method: "POST", path: "/api/v1/policies", body: `{"id":"x","scope":{"kind":"task","name":"X"},"approval":"auto"}`, status: 409, code: "exists"},
		{name: "update with another id", user: "admin", method: "PUT", path: "/api/v1/policies/x", body: `{"id":"y","scope":{"kind":"task","name":"X"},"approval":"auto"}`, status: 400, code: "invalid"},
		{name: "delete policy", user: "admin", method: "DELETE", path: "/api/v1/policies/x", status: 200},
		{name: "get a deleted policy", user: "admin", method: "GET", path: "/api/v1/policies/x", status: 404, code: "not_found"},
		{name: "submit without a reason", user: "alice", method: "POST", path: "/api/v1/requests", body: `{"task":"New-MoveRequest"}`, status: 400, code: "invalid"},
		{name: "submit too long", user: "alice", method: "POST", path: "/api/v1/requests", body: `{"task":"New-MoveRequest","reason":"r","duration":"9h"}`, status: 422, code: "duration_too_long"},
		{name: "submit a bad duration", user: "alice", method: "POST", path: "/api/v1/requests", body: `{"task":"New-MoveRequest","reason":"r","duration":"soon"}`, status: 400, code: "invalid"},
		{name: "submit for nothing covered", user: "alice", method: "POST", path: "/api/v1/requests", body: `{"task":"Other","reason":"r"}`, status: 422, code: "no_policy"},
		{name: "submit with task and scope", user: "alice", method: "POST", path: "/api/v1/requests", body: `{"task":"New-MoveRequest","scope":{"kind":"task","name":"New-MoveRequest"},"reason":"r"}`, status: 400, code: "invalid"},
		{name: "submit, duration in nanoseconds", user: "alice", method: "POST", path: "/api/v1/requests", body: `{"scope":{"kind":"task","name":"New-MoveRequest"},"reason":"r","duration":5400000000000}`, status: 201, then: func(b string) {
			if !strings.Contains(b, `"duration":"1h30m0s"`) {
				t.Errorf("submitted %s", b)
			}
		}},
		{name: "submit", user: "alice", method: "POST", path: "/api/v1/requests", body: `{"task":"New-MoveRequest","reason":"<script>alert(1)</script>","duration":"2h"}`, status: 201, then: func(b string) {
			json.Unmarshal([]byte(b), &req)
			if req.State != pam.Pending || req.Duration != 2*time.Hour || strings.Contains(b, "<script>") {
				t.Errorf("submitted %s", b)
			}
		}},
	}
	for _, s := range steps {
		st, b := e.json(s.user, s.method, s.path, s.body)
		if st != s.status || s.code != "" && code(t, b) != s.code {
			t.Fatalf("%s: %d %s; want %d %s", s.name, st, b, s.status, s.code)
		}
		if s.then != nil {
			s.then(b)
		}
	}
	id := req.ID
	for _, s := range []struct {
		name, user, method, path, body string
		status                         int
		code                           string
	}{
		{"a stranger cannot see it", "erin", "GET", "/api/v1/requests/" + id, "", 404, "not_found"},
		{"nor act on it", "erin", "POST", "/api/v1/requests/" + id + "/approve", "", 404, "not_found"},
		{"an approver can see it", "bob", "GET", "/api/v1/requests/" + id, "", 200, ""},
		{"it waits for bob", "bob", "GET", "/api/v1/reviewable", "", 200, ""},
		{"no self-approval", "alice", "POST", "/api/v1/requests/" + id + "/approve", `{"comment":"me"}`, 403, "self_approval"},
		{"unknown action", "bob", "POST", "/api/v1/requests/" + id + "/bless", "", 404, "not_found"},
		{"approve", "bob", "POST", "/api/v1/requests/" + id + "/approve", `{"comment":"ok"}`, 200, ""},
		{"twice", "carol", "POST", "/api/v1/requests/" + id + "/approve", "", 409, "wrong_state"},
		{"check", "alice", "POST", "/api/v1/check", `{"task":"New-MoveRequest","params":{"identity":"x"}}`, 200, ""},
		{"my requests", "alice", "GET", "/api/v1/requests?state=approved", "", 200, ""},
		{"everyone's requests are for admins", "alice", "GET", "/api/v1/requests?requester=all", "", 403, "forbidden"},
		{"the trail is for admins", "alice", "GET", "/api/v1/audit", "", 403, "forbidden"},
		{"audit", "admin", "GET", "/api/v1/audit?request_id=" + id + "&order=desc&limit=10", "", 200, ""},
		{"audit with a bad cursor", "admin", "GET", "/api/v1/audit?after=x", "", 400, "invalid"},
		{"audit after a negative cursor", "admin", "GET", "/api/v1/audit?after=-1", "", 200, ""},
		{"verify", "admin", "GET", "/api/v1/audit/verify", "", 200, ""},
		{"messages", "admin", "GET", "/api/v1/messages?state=failed", "", 200, ""},
		{"policies", "alice", "GET", "/api/v1/policies", "", 200, ""},
		{"a policy", "alice", "GET", "/api/v1/policies/move", "", 200, ""},
		{"update a policy: admins only", "alice", "PUT", "/api/v1/policies/move", `{"id":"move","scope":{"kind":"task","name":"New-MoveRequest"},"approval":"auto"}`, 403, "forbidden"},
		{"update a policy", "admin", "PUT", "/api/v1/policies/move", `{"id":"move","scope":{"kind":"task","name":"New-MoveRequest"},"approval":"manual","approver_groups":[{"group":"approvers"}],"max_duration":28800000000000,"version":1}`, 200, ""},
		{"delete a policy: admins only", "alice", "DELETE", "/api/v1/policies/move", "", 403, "forbidden"},
		{"check with an unknown field", "alice", "POST", "/api/v1/check", `{"task":"New-MoveRequest","who":"me"}`, 400, "invalid"},
		{"verify is for admins", "alice", "GET", "/api/v1/audit/verify", "", 403, "forbidden"},
		{"the outbox is for admins", "alice", "GET", "/api/v1/messages", "", 403, "forbidden"},
		{"messages with a bad limit", "admin", "GET", "/api/v1/messages?limit=x", "", 400, "invalid"},
		{"a stranger cannot relinquish", "erin", "POST", "/api/v1/requests/" + id + "/relinquish", "", 404, "not_found"},
		{"only the holder relinquishes", "bob", "POST", "/api/v1/requests/" + id + "/relinquish", "", 403, "forbidden"},
		{"a stranger cannot revoke", "erin", "POST", "/api/v1/requests/" + id + "/revoke", "", 404, "not_found"},
		{"revoke", "admin", "POST", "/api/v1/requests/" + id + "/revoke", `{"comment":"done"}`, 200, ""},
		{"cancel a revoked one", "alice", "POST", "/api/v1/requests/" + id + "/cancel", "", 409, "wrong_state"},
	} {
		st, b := e.json(s.user, s.method, s.path, s.body)
		if st != s.status || s.code != "" && code(t, b) != s.code {
			t.Fatalf("%s: %d %s; want %d %s", s.name, st, b, s.status, s.code)
		}
		switch s.name {
		case "it waits for bob":
			if !strings.Contains(b, id) {
				t.Errorf("reviewable: %s", b)
			}
		case "check":
			if !strings.Contains(b, `"allowed":true`) {
				t.Errorf("check: %s", b)
			}
		case "audit":
			if !strings.Contains(b, `"type":"request.approved"`) || !strings.Contains(b, `"hash":"`) {
				t.Errorf("audit: %s", b)
			}
		case "verify":
			if !strings.Contains(b, `"ok":true`) {
				t.Errorf("verify: %s", b)
			}
		}
	}
}

func TestCrossOriginAndBodyLimits(t *testing.T) {
	e := newEnv(t)
	body := `{"task":"New-MoveRequest","reason":"r"}`
	for name, h := range map[string][]string{
		"Sec-Fetch-Site cross-site": {"Sec-Fetch-Site", "cross-site"},
		"another Origin":            {"Origin", "https://evil.example"},
	} {
		st, b, _ := e.do("alice", "POST", "/api/v1/requests", "application/json", body, h...)
		if st != 403 || code(t, b) != "cross_origin" {
			t.Errorf("%s: %d %s", name, st, b)
		}
		st, _, _ = e.do("bob", "POST", "/requests/x/decide", "application/x-www-form-urlencoded", "verdict=approve", h...)
		if st != 403 {
			t.Errorf("%s, form: %d", name, st)
		}
	}
	if st, _, _ := e.do("alice", "GET", "/api/v1/me", "", "", "Sec-Fetch-Site", "cross-site"); st != 200 {
		t.Errorf("a cross-site GET is harmless and allowed: %d", st)
	}
	big := `{"task":"New-MoveRequest","reason":"` + strings.Repeat("x", 5000) + `"}`
	if st, b := e.json("alice", "POST", "/api/v1/requests", big); st != 413 || code(t, b) != "too_large" {
		t.Errorf("a large body: %d %s", st, b)
	}
	if st, b, _ := e.do("alice", "POST", "/api/v1/requests", "text/plain", body); st != 400 {
		t.Errorf("text/plain body: %d %s", st, b)
	}
	if st, b := e.json("alice", "POST", "/api/v1/requests", body+body); st != 400 {
		t.Errorf("two JSON values: %d %s", st, b)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := pamhttp.New(nil, pamhttp.Options{}); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("New(nil) = %v", err)
	}
}
