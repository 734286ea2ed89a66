package pamhttp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/pamhttp"
)

func (e *env) form(user, path string, v url.Values) (int, string, http.Header) {
	e.t.Helper()
	return e.do(user, "POST", path, "application/x-www-form-urlencoded", v.Encode())
}

func (e *env) page(user, path string) string {
	e.t.Helper()
	st, page, _ := e.do(user, "GET", path, "", "")
	if st != 200 {
		e.t.Fatalf("GET %s as %s: %d\n%s", path, user, st, page)
	}
	return page
}

func contains(t *testing.T, what, page string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(page, w) {
			t.Errorf("%s: no %q in\n%s", what, w, page)
			return
		}
	}
}

func lacks(t *testing.T, what, page string, unwanted ...string) {
	t.Helper()
	for _, w := range unwanted {
		if strings.Contains(page, w) {
			t.Errorf("%s: %q in\n%s", what, w, page)
			return
		}
	}
}

// TestApproverPage: the day through the page's forms. alice asks, her
// reason escaped and its invisible characters shown; bob finds it
// waiting, opens its page (the notifications' link), sees what he needs
// and approves with a comment; alice cannot approve her own; a stranger
// is told nothing; alice ends her access early.
func TestApproverPage(t *testing.T) {
	e := newEnv(t)
	st, _, h := e.form("alice", "/requests", url.Values{"policy_id": {"move"}, "reason": {"<img src=x onerror=alert(1)> leaver \u202egnp.exe"}, "hours": {"2"}, "ticket": {"INC-9"}})
	if st != http.StatusSeeOther || !regexp.MustCompile(`^\./requests/req_[0-9a-z]+\?done=submitted$`).MatchString(h.Get("Location")) {
		t.Fatalf("submit form: %d, Location %q", st, h.Get("Location"))
	}
	mine, _, _ := e.m.Requests(pam.WithActor(context.Background(), "alice"), pam.RequestFilter{Requester: "alice"})
	if len(mine) != 1 || mine[0].Duration != 2*time.Hour || !strings.Contains(mine[0].Reason, "\u202e") {
		t.Fatalf("requests %+v", mine)
	}
	id := mine[0].ID
	page := e.page("alice", "/requests/"+id+"?done=submitted")
	contains(t, "alice's request page", page, "Your request was sent to its approvers.", "Approvals: 0 of 1", "approvers: 0 of 1", "Cancel the request")
	lacks(t, "alice's request page", page, `value="approve"`)

	// Bob's list: the request, escaped, its bidi override made visible.
	page = e.page("bob", "/")
	contains(t, "bob's list", page, `<h1>Waiting for me</h1>`, `id="req-`+id+`"`, "&lt;img src=x onerror=alert(1)&gt; leaver &lt;U&#43;202E&gt;gnp.exe",
		`href="./requests/`+id+`"`, `href="./assets/style.css"`, `<nav aria-label="Sections">`, `<main id="main">`, `name="id" value="`+id+`"`)
	lacks(t, "bob's list", page, "<img src=x", "\u202e")
	// The request's page is where he acts: everything he needs.
	page = e.page("bob", "/requests/"+id)
	contains(t, "bob's request page", page, "<h1>alice: New-MoveRequest</h1>", "Approvals: 0 of 1", "Your decision", `value="approve"`, `value="deny"`,
		"<dt>Ticket</dt><dd>INC-9</dd>", "<dt>Duration</dt><dd>2 hours</dd>", "under “Mailbox moves”", "Needs 1 approval from approvers; the requester cannot approve.",
		"Access for at most 8 hours.", `<time datetime="2026-11-02T09:00:00Z">2 Nov 2026, 09:00 UTC</time>`, `href="../assets/style.css"`, "&lt;U&#43;202E&gt;")
	lacks(t, "bob's request page", page, "2h0m0s", "Revoke")

	// Alice cannot approve her own request through the page, nor a
	// verdict the page does not offer.
	st, page, _ = e.form("alice", "/requests/"+id+"/decide", url.Values{"verdict": {"approve"}, "comment": {"mine"}})
	if st != 403 {
		t.Fatalf("self-approval through the page: %d", st)
	}
	contains(t, "self-approval", page, "You cannot decide your own request")
	if st, page, _ := e.form("bob", "/requests/"+id+"/decide", url.Values{"verdict": {"bless"}}); st != 400 {
		t.Errorf("unknown verdict: %d\n%s", st, page)
	}

	// Bob approves with a comment, and lands back on the request.
	st, _, h = e.form("bob", "/requests/"+id+"/decide", url.Values{"verdict": {"approve"}, "comment": {"checked INC-9"}})
	if st != http.StatusSeeOther || h.Get("Location") != "../../requests/"+id+"?done=approve" {
		t.Fatalf("approve form: %d, Location %q", st, h.Get("Location"))
	}
	page = e.page("bob", "/requests/"+id+"?done=approve")
	contains(t, "after approving", page, "You approved the request.", "bob: approve, “checked INC-9”", "Revoke the access")
	lacks(t, "after approving", page, "Your decision")
	lacks(t, "bob's list after approving", e.page("bob", "/"), `id="req-`+id+`"`)
	contains(t, "bob's history", e.page("bob", "/?tab=history"), `id="req-`+id+`"`)
	if err := e.m.Guard(pam.WithActor(context.Background(), "alice"), pam.Op{Task: "New-MoveRequest"}, func(context.Context) error { return nil }); err != nil {
		t.Errorf("Guard after the approval: %v", err)
	}
	// Alice's active access, with its end in words and with its zone.
	contains(t, "alice's active access", e.page("alice", "/?tab=active"), `id="req-`+id+`"`, `ends <time datetime="2026-11-02T11:00:00Z">2 Nov 2026, 11:00 UTC</time> (in 2 hours)`)
	contains(t, "alice's request page, active", e.page("alice", "/requests/"+id), "End my access now", "Ask for more time")

	if st, page, _ := e.do("erin", "GET", "/requests/"+id, "", ""); st != 404 || !strings.Contains(page, "There is no such request, or you may not see it.") {
		t.Errorf("a stranger's request page: %d\n%s", st, page)
	}
	if st, page, _ := e.do("", "GET", "/", "", ""); st != 401 || !strings.Contains(page, "You are not signed in.") || strings.Contains(page, "pam: ") {
		t.Errorf("no user: %d\n%s", st, page)
	}
	if st, _, h := e.do("bob", "GET", "/assets/style.css", "", ""); st != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/css") {
		t.Errorf("stylesheet: %d %s", st, h.Get("Content-Type"))
	}
	if st, _, h := e.do("bob", "GET", "/assets/page.js", "", ""); st != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/javascript") {
		t.Errorf("script: %d %s", st, h.Get("Content-Type"))
	}
	if st, _, _ := e.do("bob", "GET", "/assets/page.html", "", ""); st != 404 {
		t.Errorf("the template is not served: %d", st)
	}

	// Bob cannot end alice's access as her; alice ends it.
	if st, page, _ := e.form("bob", "/requests/"+id+"/decide", url.Values{"verdict": {"relinquish"}}); st != 403 || !strings.Contains(page, "You may not do that.") {
		t.Errorf("bob relinquishing alice's grant: %d\n%s", st, page)
	}
	st, _, h = e.form("alice", "/requests/"+id+"/decide", url.Values{"verdict": {"relinquish"}})
	if st != http.StatusSeeOther || h.Get("Location") != "../../requests/"+id+"?done=relinquish" {
		t.Fatalf("relinquish form: %d, Location %q", st, h.Get("Location"))
	}
	contains(t, "after relinquishing", e.page("alice", "/requests/"+id+"?done=relinquish"), "You ended your access.", `state-relinquished`)
	contains(t, "alice's requests", e.page("alice", "/?tab=mine&state=relinquished"), `id="req-`+id+`"`)
	lacks(t, "alice's active access", e.page("alice", "/?tab=active"), `id="req-`+id+`"`)
}

// TestApproverPageRevoke: an approver revokes a grant from its page,
// with a reason; the holder's page says who and when.
func TestApproverPageRevoke(t *testing.T) {
	e := newEnv(t)
	alice := pam.WithActor(context.Background(), "alice")
	r, err := e.m.Submit(alice, pam.RequestInput{PolicyID: "move", Reason: "leaver"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Approve(pam.WithActor(context.Background(), "bob"), r.ID, ""); err != nil {
		t.Fatal(err)
	}
	contains(t, "carol's page of a grant", e.page("carol", "/requests/"+r.ID), "Revoke the access")
	lacks(t, "alice's page of her grant", e.page("alice", "/requests/"+r.ID), "Revoke the access")
	st, _, _ := e.form("carol", "/requests/"+r.ID+"/decide", url.Values{"verdict": {"revoke"}, "comment": {"incident closed"}})
	if st != http.StatusSeeOther {
		t.Fatalf("revoke: %d", st)
	}
	contains(t, "alice's page after the revocation", e.page("alice", "/requests/"+r.ID), "state-revoked", "<dt>Closed by</dt><dd>carol")
	if st, page, _ := e.form("carol", "/requests/"+r.ID+"/decide", url.Values{"verdict": {"revoke"}, "comment": {"again"}}); st != 409 ||
		!strings.Contains(page, "no longer in a state that allows that") || !strings.Contains(page, `value="again"`) && strings.Contains(page, "Revoke the access") {
		t.Errorf("revoking twice: %d\n%s", st, page)
	}
}

// TestApproverPageTwoApprovers: a request that needs two approvals
// shows "1 of 2" after the first, with who; the second approver is
// offered the decision, the first is not.
func TestApproverPageTwoApprovers(t *testing.T) {
	e := newEnv(t)
	admin := pam.WithActor(context.Background(), "admin")
	if _, err := e.m.CreatePolicy(admin, pam.Policy{ID: "drop", Name: "Drop a table", Scope: pam.TaskScope("Drop-Table"), Approval: pam.Manual,
		ApproverGroups: []pam.ApproverGroup{{Group: "approvers", MinApprovals: 2}}}); err != nil {
		t.Fatal(err)
	}
	r, err := e.m.Submit(pam.WithActor(context.Background(), "alice"), pam.RequestInput{PolicyID: "drop", Reason: "CHG-2"})
	if err != nil {
		t.Fatal(err)
	}
	if st, _, _ := e.form("bob", "/requests/"+r.ID+"/decide", url.Values{"verdict": {"approve"}}); st != http.StatusSeeOther {
		t.Fatalf("bob approves: %d", st)
	}
	page := e.page("carol", "/requests/"+r.ID)
	contains(t, "carol's page", page, "Approvals: 1 of 2", "approvers: 1 of 2 (bob)", "Your decision", "Needs 2 approvals from approvers")
	page = e.page("bob", "/requests/"+r.ID)
	contains(t, "bob's page", page, "Approvals: 1 of 2")
	lacks(t, "bob's page", page, "Your decision")
}

// TestApproverPageFormKeepsInput: a refused request shows the form
// again with what was typed and the problem as a sentence next to its
// field; no policy is chosen for the user; a refused operation's link
// opens the form with its policy chosen.
func TestApproverPageFormKeepsInput(t *testing.T) {
	e := newEnv(t)
	page := e.page("alice", "/new")
	contains(t, "the empty form", page, `<option value="">Choose access…</option>`, `<select id="policy_id" name="policy_id" required>`)
	lacks(t, "the empty form", page, " selected>")
	contains(t, "the form from a refusal's link", e.page("alice", "/new?policy=move&reason=INC-4"), `<option value="move" selected>Mailbox moves</option>`, ">INC-4</textarea>")

	st, page, _ := e.form("alice", "/requests", url.Values{"policy_id": {"move"}, "reason": {"INC-7: a long move"}, "hours": {"20"}, "ticket": {"INC-7"}, "bind": {"identity=ceo@contoso.com"}})
	if st != http.StatusUnprocessableEntity {
		t.Fatalf("20 hours of at most 8: %d\n%s", st, page)
	}
	contains(t, "too long", page, `<p class="field-error" id="hours-err">That is longer than this access allows: at most 8 hours.</p>`, `aria-invalid="true"`,
		`<option value="move" selected>`, ">INC-7: a long move</textarea>", `value="INC-7"`, `value="20"`, ">identity=ceo@contoso.com</textarea>",
		"The request was not sent: see below.")
	lacks(t, "too long", page, "20h0m0s", "8h0m0s", "pam: ")

	st, page, _ = e.form("alice", "/requests", url.Values{"reason": {"no policy chosen"}})
	if st != 400 {
		t.Fatalf("no policy: %d", st)
	}
	contains(t, "no policy", page, `id="policy_id-err">The policyid is not chosen: choose the access you need.</p>`, ">no policy chosen</textarea>")
	st, page, _ = e.form("alice", "/requests", url.Values{"policy_id": {"move"}, "reason": {"x"}, "bind": {"identity"}})
	contains(t, "a bind line without =", page, `id="bind-err">The bind needs one NAME=VALUE per line.</p>`)
	if st != 400 {
		t.Errorf("a bind line without =: %d", st)
	}
	if st, page, _ := e.form("alice", "/requests", url.Values{"policy_id": {"move"}, "reason": {"x"}, "uses": {"0"}}); st != 400 || !strings.Contains(page, `id="uses-err"`) {
		t.Errorf("0 runs: %d\n%s", st, page)
	}
	if st, page, _ := e.form("alice", "/requests", url.Values{"policy_id": {"move"}, "reason": {"x"}, "start": {"tomorrow"}}); st != 400 || !strings.Contains(page, `id="start-err"`) {
		t.Errorf("a start the form cannot read: %d\n%s", st, page)
	}
	if n, _, _ := e.m.Requests(pam.WithActor(context.Background(), "alice"), pam.RequestFilter{Requester: "alice"}); len(n) != 0 {
		t.Errorf("refused forms stored %d requests", len(n))
	}
	// The start is taken in the viewer's zone when the page's script
	// says it (minutes east of UTC), in UTC otherwise.
	if st, _, _ := e.form("alice", "/requests", url.Values{"policy_id": {"move"}, "reason": {"x"}, "start": {"2026-11-02T12:30"}, "tz": {"60"}}); st != http.StatusSeeOther {
		t.Fatalf("a start in UTC+1: %d", st)
	}
	rs, _, _ := e.m.Requests(pam.WithActor(context.Background(), "alice"), pam.RequestFilter{Requester: "alice"})
	if len(rs) != 1 || !rs[0].Start.Equal(epoch.Add(150*time.Minute).Truncate(time.Minute)) {
		t.Errorf("the start of 12:30 at UTC+1: %+v", rs)
	}
}

// TestApproverPageListsPageAndSearch: lists are newest first and paged
// by cursor, so the newest of 1,200 requests is on the first page and
// the oldest is reached; search finds by ticket and requester; a state
// outside the list is refused in a sentence.
func TestApproverPageListsPageAndSearch(t *testing.T) {
	e := newEnv(t)
	// 60 requesters of 20 pending requests each (the most one may have).
	var ids []string
	for i := range 1200 {
		who := pam.WithActor(context.Background(), fmt.Sprintf("user%02d", i%60))
		r, err := e.m.Submit(who, pam.RequestInput{PolicyID: "move", Reason: "bulk", Ticket: fmt.Sprintf("T-%04d", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
		e.clk.Add(time.Millisecond)
	}
	newest, oldest := ids[len(ids)-1], ids[0]
	page := e.page("bob", "/")
	contains(t, "bob's first page", page, `id="req-`+newest+`"`, `rel="next"`)
	lacks(t, "bob's first page", page, `id="req-`+oldest+`"`, `rel="first"`)
	if n := strings.Count(page, `class="card selectable"`); n != 50 {
		t.Errorf("the first page holds %d requests, want 50", n)
	}
	if len(page) > 150_000 {
		t.Errorf("the first page is %d bytes", len(page))
	}
	// Follow "Older" to the end.
	pages, seen := 1, map[string]bool{}
	next := regexp.MustCompile(`<a href="([^"]+)" rel="next">`)
	for {
		for _, m := range regexp.MustCompile(`id="req-(req_[0-9a-z]+)"`).FindAllStringSubmatch(page, -1) {
			seen[m[1]] = true
		}
		m := next.FindStringSubmatch(page)
		if m == nil {
			break
		}
		u := strings.ReplaceAll(strings.TrimPrefix(m[1], "./"), "&amp;", "&")
		page = e.page("bob", "/"+u)
		pages++
	}
	if len(seen) != 1200 || !seen[oldest] || pages != 24 {
		t.Errorf("paged through %d requests in %d pages", len(seen), pages)
	}
	contains(t, "the last page", page, `rel="first"`)
	contains(t, "its requester's newest first", e.page("user59", "/?tab=mine"), `id="req-`+newest+`"`)

	page = e.page("bob", "/?tab=waiting&q=t-0042")
	contains(t, "search by ticket", page, `id="req-`+ids[42]+`"`, `value="t-0042"`)
	if n := strings.Count(page, `class="card selectable"`); n != 1 {
		t.Errorf("search by ticket found %d", n)
	}
	lacks(t, "search by a requester with none", e.page("bob", "/?tab=waiting&requester=carol"), `class="card selectable"`)
	if n := strings.Count(e.page("bob", "/?tab=waiting&requester=user07"), `class="card selectable"`); n != 20 {
		t.Errorf("user07's waiting: %d, want 20", n)
	}
	if st, page, _ := e.do("user01", "GET", "/?tab=mine&state=bogus", "", ""); st != 400 || !strings.Contains(page, "Choose a state from the list.") {
		t.Errorf("a bogus state: %d\n%s", st, page)
	}
	if st, page, _ := e.do("user01", "GET", "/?tab=mine&q="+url.QueryEscape("a\x01b"), "", ""); st != 400 || !strings.Contains(page, "The filter is not valid") {
		t.Errorf("a search with a control character: %d\n%s", st, page)
	}
}

// TestApproverPageBulk: approve several requests with one comment; one
// that cannot be decided fails alone, in a sentence.
func TestApproverPageBulk(t *testing.T) {
	e := newEnv(t)
	var ids []string
	for _, who := range []string{"alice", "dave", "carol"} {
		r, err := e.m.Submit(pam.WithActor(context.Background(), who), pam.RequestInput{PolicyID: "move", Reason: "move " + who})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	// carol's own request is among bob's selection: carol may not decide
	// it, but bob may; cancel alice's first, so it fails.
	if _, err := e.m.Cancel(pam.WithActor(context.Background(), "alice"), ids[0], ""); err != nil {
		t.Fatal(err)
	}
	st, page, _ := e.form("bob", "/bulk?tab=waiting", url.Values{"id": ids, "verdict": {"approve"}, "comment": {"batch of moves"}})
	if st != 200 {
		t.Fatalf("bulk approve: %d\n%s", st, page)
	}
	contains(t, "bulk results", page, "1 request of 3 could not be approved: see below.", `<li class="failed"><a href="./requests/`+ids[0]+`">`,
		"no longer in a state that allows that", `<li class="ok"><a href="./requests/`+ids[1]+`">`)
	for _, id := range ids[1:] {
		r, err := e.m.Request(pam.WithActor(context.Background(), "bob"), id)
		if err != nil || r.State != pam.Approved || r.Decisions[0].Comment != "batch of moves" {
			t.Errorf("%s after the bulk approval: %+v, %v", id, r, err)
		}
	}
	if st, page, _ := e.form("bob", "/bulk", url.Values{"verdict": {"approve"}}); st != 400 || !strings.Contains(page, "Select the requests to decide first.") {
		t.Errorf("nothing selected: %d\n%s", st, page)
	}
	if st, _, _ := e.form("bob", "/bulk", url.Values{"id": {ids[1]}, "verdict": {"revoke"}}); st != 400 {
		t.Errorf("a bulk revoke: %d", st)
	}
}

// TestApproverPageSignIn: with Options.SignInURL a signed-out visitor
// is sent there with the way back, a local path only; the API still
// answers 401.
func TestApproverPageSignIn(t *testing.T) {
	e := newEnvWith(t, func(o *pamhttp.Options) { o.SignInURL = "/login" })
	for path, want := range map[string]string{
		"/requests/req_1?x=1": "/login?next=" + url.QueryEscape("/pam/requests/req_1?x=1"),
		"/":                   "/login?next=" + url.QueryEscape("/pam/"),
	} {
		st, _, h := e.do("", "GET", path, "", "")
		if st != http.StatusSeeOther || h.Get("Location") != want {
			t.Errorf("GET %s signed out: %d, Location %q, want %q", path, st, h.Get("Location"), want)
		}
	}
	if st, _, h := e.do("", "POST", "/requests", "application/x-www-form-urlencoded", "reason=x", "Sec-Fetch-Site", "same-origin"); st != http.StatusSeeOther || h.Get("Location") != "/login?next="+url.QueryEscape("/pam/requests") {
		t.Errorf("POST signed out: %d, %q", st, h.Get("Location"))
	}
	if st, body := e.json("", "GET", "/api/v1/me", ""); st != 401 {
		t.Errorf("the API signed out: %d %s", st, body)
	}
	// next never leaves the host, whatever the request line says.
	for target, want := range map[string]string{
		"//evil.example/x":          "/evil.example/x",
		"/\\evil.example/x":         "/%5Cevil.example/x", // escaped: no browser reads it as a host
		"http://evil.example/a?b=c": "/a?b=c",
		"/pam/requests/r?tab=mine":  "/pam/requests/r?tab=mine",
		"*":                         "/",
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RequestURI = target
		got := pamhttp.SignIn("https://sso.example/login?app=pam", r)
		if got != "https://sso.example/login?app=pam&next="+url.QueryEscape(want) {
			t.Errorf("signed out at %q: %s, want next %q", target, got, want)
		}
	}
}

// TestBreakGlassThroughTheAPIAndPage: break-glass through the JSON API,
// the review list, and the review through the request's page.
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
	contains(t, "bob's list", e.page("bob", "/"), `id="bg-`+r.ID+`"`, "Review pending, due", "(1 hour ago)")
	contains(t, "bob's page of the use", e.page("bob", "/requests/"+r.ID), "Review the break-glass use", `value="flag"`)
	lacks(t, "the activator's page of the use", e.page("admin", "/requests/"+r.ID), `value="confirm"`)
	st, _, h := e.form("bob", "/requests/"+r.ID+"/decide", url.Values{"verdict": {"flag"}, "comment": {"no incident"}})
	if st != http.StatusSeeOther || !strings.HasSuffix(h.Get("Location"), "?done=flag") {
		t.Fatalf("flag through the page: %d %v", st, h)
	}
	got, err := e.m.Request(admin, r.ID)
	if err != nil || got.BreakGlass.State != pam.ReviewFlagged || got.BreakGlass.By != "bob" {
		t.Fatalf("after the flag: %+v, %v", got.BreakGlass, err)
	}
	contains(t, "the page after the flag", e.page("bob", "/requests/"+r.ID+"?done=flag"), "You flagged the break-glass use.", "review flagged by bob, “no incident”")
	if st, body := e.json("carol", "POST", "/api/v1/requests/"+r.ID+"/confirm", `{}`); st != 409 {
		t.Errorf("a second review: %d %s", st, body)
	}
}

// TestApproverPageExtend: the holder asks for more time from the
// request's page; an approver sees the extension's progress and
// approves it there.
func TestApproverPageExtend(t *testing.T) {
	e := newEnv(t)
	r, err := e.m.Submit(pam.WithActor(context.Background(), "alice"), pam.RequestInput{PolicyID: "move", Reason: "leaver", Duration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Approve(pam.WithActor(context.Background(), "bob"), r.ID, ""); err != nil {
		t.Fatal(err)
	}
	if st, page, _ := e.form("alice", "/requests/"+r.ID+"/extend", url.Values{"hours": {"x"}, "reason": {"more"}}); st != 400 ||
		!strings.Contains(page, "must be a number of hours") || !strings.Contains(page, `value="more"`) {
		t.Errorf("extend by x hours: %d\n%s", st, page)
	}
	st, _, h := e.form("alice", "/requests/"+r.ID+"/extend", url.Values{"hours": {"0.5"}, "reason": {"<b>slow</b> move"}})
	if st != http.StatusSeeOther || h.Get("Location") != "../../requests/"+r.ID+"?done=extend" {
		t.Fatalf("extend form: %d, Location %q", st, h.Get("Location"))
	}
	contains(t, "alice after asking", e.page("alice", "/requests/"+r.ID+"?done=extend"), "You asked for more time.", "30 minutes more asked")
	page := e.page("carol", "/requests/"+r.ID)
	contains(t, "carol's page of the extension", page, "Extension: 0 of 1", "30 minutes more, pending: &lt;b&gt;slow&lt;/b&gt; move", "Your decision")
	if st, _, _ := e.form("carol", "/requests/"+r.ID+"/decide", url.Values{"verdict": {"approve"}, "comment": {"fine"}}); st != http.StatusSeeOther {
		t.Fatalf("approve the extension: %d", st)
	}
	got, _ := e.m.Request(pam.WithActor(context.Background(), "alice"), r.ID)
	if got.Extension.State != pam.Approved || !got.ExpiresAt.Equal(epoch.Add(90*time.Minute)) {
		t.Errorf("after the page's approval: %+v, ends %v", got.Extension, got.ExpiresAt)
	}
}
