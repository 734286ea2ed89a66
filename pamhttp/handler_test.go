package pamhttp_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
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
	clk := clock.NewMock()
	clk.Set(epoch)
	dir, _ := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin"}, "approvers": {"bob", "carol"}})
	m, err := pam.New(memory.New(), dir, &pam.Options{Clock: clk, AdminGroup: "pam-admins",
		Catalog: pam.Catalog{Roles: map[string][]string{"Mail": {"New-MoveRequest"}}}})
	if err != nil {
		t.Fatal(err)
	}
	h, err := pamhttp.New(m, pamhttp.Options{Now: clk.Now, MaxBodyBytes: 4096, Authenticate: func(r *http.Request) (string, error) {
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
	}})
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

func TestApproverPage(t *testing.T) {
	e := newEnv(t)
	form := func(user, path string, v url.Values) (int, string, http.Header) {
		return e.do(user, "POST", path, "application/x-www-form-urlencoded", v.Encode())
	}
	// Alice asks through the page's form.
	st, _, h := form("alice", "/requests", url.Values{"policy_id": {"move"}, "reason": {`<img src=x onerror=alert(1)> leaver`}, "hours": {"2"}, "ticket": {"INC-9"}})
	if st != http.StatusSeeOther || h.Get("Location") != "./?done=submitted" {
		t.Fatalf("submit form: %d, Location %q", st, h.Get("Location"))
	}
	mine, _, _ := e.m.Requests(pam.WithActor(context.Background(), "alice"), pam.RequestFilter{Requester: "alice"})
	if len(mine) != 1 || mine[0].Duration != 2*time.Hour {
		t.Fatalf("requests %+v", mine)
	}
	id := mine[0].ID
	// Bob sees it waiting, escaped.
	st, page, _ := e.do("bob", "GET", "/", "", "")
	if st != 200 || !strings.Contains(page, `id="req-`+id+`"`) || !strings.Contains(page, "&lt;img src=x onerror=alert(1)&gt; leaver") || strings.Contains(page, "<img src=x") {
		t.Fatalf("bob's page: %d\n%s", st, page)
	}
	if !strings.Contains(page, `action="./requests/`+id+`/decide"`) || !strings.Contains(page, `href="./assets/style.css"`) {
		t.Errorf("links are not relative to the mount point:\n%s", page)
	}
	// Alice cannot approve her own request through the page.
	st, page, _ = form("alice", "/requests/"+id+"/decide", url.Values{"verdict": {"approve"}})
	if st != 403 || !strings.Contains(page, "requester cannot decide their own request") {
		t.Fatalf("self-approval through the page: %d\n%s", st, page)
	}
	// Bob approves with a comment.
	st, _, h = form("bob", "/requests/"+id+"/decide", url.Values{"verdict": {"approve"}, "comment": {"checked INC-9"}})
	if st != http.StatusSeeOther || h.Get("Location") != "../../?done=approve" {
		t.Fatalf("approve form: %d, Location %q", st, h.Get("Location"))
	}
	st, page, _ = e.do("bob", "GET", "/?done=approve", "", "")
	if st != 200 || !strings.Contains(page, "You approved the request.") || strings.Contains(page, `id="req-`+id+`"`) {
		t.Errorf("after approving: %d\n%s", st, page)
	}
	if err := e.m.Guard(pam.WithActor(context.Background(), "alice"), pam.Op{Task: "New-MoveRequest"}, func(context.Context) error { return nil }); err != nil {
		t.Errorf("Guard after the approval: %v", err)
	}
	// Alice's page shows it active, with the time left; the detail page
	// shows bob's comment.
	_, page, _ = e.do("alice", "GET", "/", "", "")
	if !strings.Contains(page, `id="mine-`+id+`"`) || !strings.Contains(page, "active, 2h 0m left") {
		t.Errorf("alice's page:\n%s", page)
	}
	st, page, _ = e.do("alice", "GET", "/requests/"+id, "", "")
	if st != 200 || !strings.Contains(page, "bob: approve (checked INC-9)") || !strings.Contains(page, `href="../"`) {
		t.Errorf("detail page: %d\n%s", st, page)
	}
	if st, _, _ := e.do("erin", "GET", "/requests/"+id, "", ""); st != 404 {
		t.Errorf("a stranger's detail page: %d", st)
	}
	if st, page, _ := e.do("", "GET", "/", "", ""); st != 401 || strings.Contains(page, "Request access") {
		t.Errorf("no user: %d", st)
	}
	if st, _, _ := form("bob", "/requests/"+id+"/decide", url.Values{"verdict": {"bless"}}); st != 400 {
		t.Errorf("unknown verdict: %d", st)
	}
	if st, _, h := e.do("bob", "GET", "/assets/style.css", "", ""); st != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/css") {
		t.Errorf("stylesheet: %d %s", st, h.Get("Content-Type"))
	}
	if st, _, _ := e.do("bob", "GET", "/assets/page.html", "", ""); st != 404 {
		t.Errorf("the template is not served: %d", st)
	}
	// Alice ends her access early from her page; bob cannot end it for her.
	if !strings.Contains(func() string { _, p, _ := e.do("alice", "GET", "/", "", ""); return p }(), `<button name="verdict" value="relinquish">End now</button>`) {
		t.Error("alice's page offers no way to end her active grant")
	}
	if st, page, _ := form("bob", "/requests/"+id+"/decide", url.Values{"verdict": {"relinquish"}}); st != 403 || !strings.Contains(page, "only the holder") {
		t.Errorf("bob relinquishing alice's grant: %d\n%s", st, page)
	}
	st, _, h = form("alice", "/requests/"+id+"/decide", url.Values{"verdict": {"relinquish"}})
	if st != http.StatusSeeOther || h.Get("Location") != "../../?done=relinquish" {
		t.Fatalf("relinquish form: %d, Location %q", st, h.Get("Location"))
	}
	if _, page, _ := e.do("alice", "GET", "/?done=relinquish", "", ""); !strings.Contains(page, "You ended your access.") || !strings.Contains(page, `class="req state-relinquished"`) {
		t.Errorf("after relinquishing:\n%s", page)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := pamhttp.New(nil, pamhttp.Options{}); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("New(nil) = %v", err)
	}
}

// TestBoundRequestThroughThePage: the form's "Only for" lines bind the
// grant and "Runs" limits it; the approver's page shows both; a bad line
// is refused and nothing is stored. The JSON API takes and returns the
// same fields.
func TestBoundRequestThroughThePage(t *testing.T) {
	e := newEnv(t)
	form := func(user, path string, v url.Values) (int, string, http.Header) {
		return e.do(user, "POST", path, "application/x-www-form-urlencoded", v.Encode())
	}
	if st, page, _ := form("alice", "/requests", url.Values{"policy_id": {"move"}, "reason": {"INC-9"}, "bind": {"identity"}}); st != 400 || !strings.Contains(page, "is not NAME=VALUE") {
		t.Errorf("a bind line without =: %d\n%s", st, page)
	}
	if st, _, _ := form("alice", "/requests", url.Values{"policy_id": {"move"}, "reason": {"INC-9"}, "uses": {"0"}}); st != 400 {
		t.Errorf("0 runs: %d", st)
	}
	st, _, h := form("alice", "/requests", url.Values{"policy_id": {"move"}, "reason": {"INC-9"}, "bind": {"identity = ceo@contoso.com\r\n\r\n"}, "uses": {"1"}})
	if st != http.StatusSeeOther {
		t.Fatalf("submit form: %d, %v", st, h)
	}
	mine, _, _ := e.m.Requests(pam.WithActor(context.Background(), "alice"), pam.RequestFilter{Requester: "alice"})
	if len(mine) != 1 || mine[0].Bind["identity"] != "ceo@contoso.com" || mine[0].MaxUses != 1 {
		t.Fatalf("requests %+v", mine)
	}
	if _, page, _ := e.do("bob", "GET", "/", "", ""); !strings.Contains(page, `<dt>Limits</dt><dd>bound to identity = &#34;ceo@contoso.com&#34;; 1 run (0 used)</dd>`) {
		t.Errorf("bob's page does not show the limits:\n%s", page)
	}
	st, body, _ := e.do("alice", "POST", "/api/v1/requests", "application/json", `{"task":"New-MoveRequest","reason":"r","bind":{"identity":"cfo@contoso.com","batch":5},"max_uses":2}`)
	if st != 201 || !strings.Contains(body, `"bind":{"batch":5,"identity":"cfo@contoso.com"}`) || !strings.Contains(body, `"max_uses":2`) {
		t.Errorf("submit through the API: %d %s", st, body)
	}
}

// TestApproverPageScheduleAndExtend: the page asks for a start, shows
// it to the approver and the scheduled window to the holder; the holder
// asks for more time from the page, and the approver sees the extension
// waiting, with its reason, and approves it there.
func TestApproverPageScheduleAndExtend(t *testing.T) {
	e := newEnv(t)
	form := func(user, path string, v url.Values) (int, string, http.Header) {
		return e.do(user, "POST", path, "application/x-www-form-urlencoded", v.Encode())
	}
	st, page, _ := form("alice", "/requests", url.Values{"policy_id": {"move"}, "reason": {"leaver"}, "hours": {"1"}, "start": {"2026-11-02T11:30"}})
	if st != http.StatusSeeOther {
		t.Fatalf("submit with a start: %d\n%s", st, page)
	}
	if st, page, _ := form("alice", "/requests", url.Values{"policy_id": {"move"}, "reason": {"x"}, "start": {"tomorrow"}}); st != 400 || !strings.Contains(page, "start") {
		t.Errorf("a start the form cannot read: %d\n%s", st, page)
	}
	mine, _, _ := e.m.Requests(pam.WithActor(context.Background(), "alice"), pam.RequestFilter{Requester: "alice"})
	if len(mine) != 1 || !mine[0].Start.Equal(epoch.Add(150*time.Minute)) {
		t.Fatalf("requests %+v", mine)
	}
	id := mine[0].ID
	if _, page, _ := e.do("bob", "GET", "/", "", ""); !strings.Contains(page, "<dt>Starts</dt><dd>2026-11-02 11:30 UTC, or when approved if later</dd>") {
		t.Errorf("bob's page does not show the start:\n%s", page)
	}
	if st, _, _ := form("bob", "/requests/"+id+"/decide", url.Values{"verdict": {"approve"}}); st != http.StatusSeeOther {
		t.Fatalf("approve: %d", st)
	}
	_, page, _ = e.do("alice", "GET", "/", "", "")
	if !strings.Contains(page, "approved, opens in 2h 30m for 1h 0m") || strings.Contains(page, `action="./requests/`+id+`/extend"`) {
		t.Errorf("alice's page, scheduled:\n%s", page)
	}

	e.clk.Set(epoch.Add(3 * time.Hour))
	_, page, _ = e.do("alice", "GET", "/", "", "")
	if !strings.Contains(page, `action="./requests/`+id+`/extend"`) {
		t.Fatalf("alice's page offers no extension of her active grant:\n%s", page)
	}
	if st, page, _ := form("alice", "/requests/"+id+"/extend", url.Values{"hours": {"x"}, "reason": {"more"}}); st != 400 {
		t.Errorf("extend by x hours: %d\n%s", st, page)
	}
	st, _, h := form("alice", "/requests/"+id+"/extend", url.Values{"hours": {"0.5"}, "reason": {"<b>slow</b> move"}})
	if st != http.StatusSeeOther || h.Get("Location") != "../../?done=extend" {
		t.Fatalf("extend form: %d, Location %q", st, h.Get("Location"))
	}
	if _, page, _ := e.do("alice", "GET", "/?done=extend", "", ""); !strings.Contains(page, "You asked for more time.") || !strings.Contains(page, "30m more asked") {
		t.Errorf("after extending:\n%s", page)
	}
	_, page, _ = e.do("bob", "GET", "/", "", "")
	if !strings.Contains(page, "alice asks to extend task:New-MoveRequest by 30m0s") || !strings.Contains(page, "&lt;b&gt;slow&lt;/b&gt; move") ||
		!strings.Contains(page, `action="./requests/`+id+`/decide"`) {
		t.Fatalf("bob's page does not show the extension waiting:\n%s", page)
	}
	if st, _, _ := form("bob", "/requests/"+id+"/decide", url.Values{"verdict": {"approve"}, "comment": {"fine"}}); st != http.StatusSeeOther {
		t.Fatalf("approve the extension: %d", st)
	}
	r, _ := e.m.Request(pam.WithActor(context.Background(), "alice"), id)
	if r.Extension.State != pam.Approved || !r.ExpiresAt.Equal(epoch.Add(4*time.Hour)) {
		t.Errorf("after the page's approval: %+v, ends %v", r.Extension, r.ExpiresAt)
	}
	if _, page, _ := e.do("alice", "GET", "/requests/"+id, "", ""); !strings.Contains(page, "<dt>Extension</dt><dd>30m0s more, approved") {
		t.Errorf("the request's page:\n%s", page)
	}
}

// TestBreakGlassThroughTheAPIAndPage: break-glass through the JSON API,
// the review list, and the review through the approver page's forms.
func TestBreakGlassThroughTheAPIAndPage(t *testing.T) {
	e := newEnv(t)
	admin := pam.WithActor(context.Background(), "admin")
	p, err := e.m.Policy(admin, "move")
	if err != nil {
		t.Fatal(err)
	}
	p.BreakGlass = &pam.BreakGlass{Group: "pam-admins", ReviewWithin: time.Hour}
	if _, err := e.m.UpdatePolicy(admin, p); err != nil {
		t.Fatal(err)
	}
	if st, body := e.json("alice", "POST", "/api/v1/breakglass", `{"policy_id":"move","reason":"outage"}`); st != 403 {
		t.Errorf("alice breaks glass: %d %s", st, body)
	}
	st, body := e.json("admin", "POST", "/api/v1/breakglass", `{"task":"New-MoveRequest","reason":"outage"}`)
	var r pam.Request
	if err := json.Unmarshal([]byte(body), &r); st != 201 || err != nil || r.BreakGlass == nil || r.State != pam.Approved || r.Duration != time.Hour {
		t.Fatalf("admin breaks glass: %d %s", st, body)
	}
	if st, body := e.json("admin", "POST", "/api/v1/breakglass", `{"policy_id":"move","reason":"again"}`); st != 429 || code(t, body) != "limit" {
		t.Errorf("a second time: %d %s", st, body)
	}
	if st, body := e.json("bob", "GET", "/api/v1/breakglass/reviews", ""); st != 200 || !strings.Contains(body, r.ID) {
		t.Errorf("bob's reviews: %d %s", st, body)
	}
	if st, body := e.json("bob", "GET", "/api/v1/breakglass/reviews?state=bogus", ""); st != 400 {
		t.Errorf("a bogus state: %d %s", st, body)
	}
	if st, body := e.json("alice", "GET", "/api/v1/breakglass/reviews", ""); st != 200 || body != "[]\n" && body != "[]" {
		t.Errorf("alice's reviews: %d %q", st, body)
	}
	e.clk.Add(2 * time.Hour)
	_, page, _ := e.do("bob", "GET", "/", "", "")
	if !strings.Contains(page, `id="bg-`+r.ID+`"`) || !strings.Contains(page, "overdue by 1h 0m") || !strings.Contains(page, `value="flag"`) {
		t.Fatalf("bob's page does not offer the review:\n%s", page)
	}
	if _, page, _ := e.do("admin", "GET", "/", "", ""); strings.Contains(page, `value="confirm"`) {
		t.Error("the activator is offered their own review")
	}
	form := url.Values{"verdict": {"flag"}, "comment": {"no incident"}}
	if st, _, h := e.do("bob", "POST", "/requests/"+r.ID+"/decide", "application/x-www-form-urlencoded", form.Encode()); st != http.StatusSeeOther || !strings.HasSuffix(h.Get("Location"), "?done=flag") {
		t.Fatalf("flag through the page: %d %v", st, h)
	}
	got, err := e.m.Request(admin, r.ID)
	if err != nil || got.BreakGlass.State != pam.ReviewFlagged || got.BreakGlass.By != "bob" {
		t.Fatalf("after the flag: %+v, %v", got.BreakGlass, err)
	}
	if _, page, _ := e.do("bob", "GET", "/?done=flag", "", ""); !strings.Contains(page, "You flagged the break-glass use.") || !strings.Contains(page, "bob (no incident)") {
		t.Errorf("the page after the flag:\n%s", page)
	}
	if st, body := e.json("carol", "POST", "/api/v1/requests/"+r.ID+"/confirm", `{}`); st != 409 {
		t.Errorf("a second review: %d %s", st, body)
	}
}
