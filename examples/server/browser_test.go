package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/zerostanding/pam"
)

// chromium returns the path of a headless-capable Chromium, or skips.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("PAM_REQUIRE_BROWSER") != "" {
		t.Fatal("no Chromium found, and PAM_REQUIRE_BROWSER is set")
	}
	t.Skip("no Chromium found: install Debian's chromium package (.ci/run does) to run the browser test")
	return ""
}

// axeSource returns axe-core's script (the npm package's axe.min.js),
// from $PAM_AXE_JS or node_modules/axe-core beside this test, or ""
// when there is none and the browser is not required (the accessibility
// checks are then skipped, and said so).
func axeSource(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("PAM_AXE_JS"), filepath.Join("node_modules", "axe-core", "axe.min.js")} {
		if p == "" {
			continue
		}
		b, err := os.ReadFile(p)
		if err == nil {
			return string(b)
		}
	}
	if os.Getenv("PAM_REQUIRE_BROWSER") != "" {
		t.Fatal("no axe-core: set PAM_AXE_JS to axe.min.js of the npm package axe-core (.ci/run installs it)")
	}
	t.Log("no axe-core (set PAM_AXE_JS to axe.min.js of the npm package axe-core): the accessibility checks are skipped")
	return ""
}

// widths are the viewports every page is checked at: a laptop and a
// phone.
var widths = []struct{ w, h int64 }{{1280, 900}, {390, 844}}

// TestBrowserDay walks an approver's day in headless Chromium, through
// the demo's login and the approver page: alice is refused and follows
// the refusal's link to the request form, its policy chosen; a form
// error keeps what she typed; bob, signed out, opens the request from
// its notification link, signs in, lands on it and approves; a request
// that needs two approvals shows carol "1 of 2"; alice's grants are
// under active access; bob revokes one; his history and alice's list
// show it all; paging past 1,100 requests reaches the oldest; search
// finds by ticket; bob approves two at once with one comment; a reason
// with U+202E is shown with it made visible; in Europe/Berlin the times
// are shown in the viewer's zone; alice ends her own access; bob flags a
// break-glass use on its page. Every page passes axe-core (no serious or critical
// violation) at 1280 and 390 px, with no horizontal scroll at 390 px,
// and is saved as a screenshot at both widths ($PAM_SCREENSHOTS, by
// default a temporary directory removed after the test).
func TestBrowserDay(t *testing.T) {
	path := chromium(t)
	axe := axeSource(t)
	shots := os.Getenv("PAM_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := New(context.Background(), filepath.Join(t.TempDir(), "pam.db"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	srv := httptest.NewServer(s)
	defer srv.Close()

	// 1,100 requests waiting for bob before the day starts, from 55
	// people (20 pending each, the most one may have).
	var seeded []string
	for i := range 1100 {
		r, err := s.m.Submit(pam.WithActor(context.Background(), fmt.Sprintf("user%02d", i%55)),
			pam.RequestInput{PolicyID: "move", Reason: "mailbox move", Ticket: fmt.Sprintf("BULK-%04d", i)})
		if err != nil {
			t.Fatal(err)
		}
		seeded = append(seeded, r.ID)
	}
	// Lists run by ID, which follows the time of creation; requests
	// created within one tick of the ID's clock come in ID order, so the
	// newest and oldest are the greatest and least ID.
	newest, oldest := slices.Max(seeded), slices.Min(seeded)

	alloc, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.WindowSize(1280, 900))...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	if err := chromedp.Do(ctx); err != nil { // start the browser
		t.Fatal(err)
	}

	do := func(step string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		t.Log(step)
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			where, _ := chromedp.Run(ctx, chromedp.Location())
			body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
			t.Fatalf("%s: %v\nat %s:\n%s", step, err, where, body)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	eval := func(js string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("evaluate %.60s: %v", js, err)
		}
		return s
	}
	here := func() string {
		t.Helper()
		u, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	login := func(user string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(
			chromedp.Navigate(srv.URL+"/"),
			chromedp.SetValue(chromedp.CSS(`select[name=user]`), user),
			chromedp.Click(chromedp.CSS(`form[action="/login"] button`)),
			chromedp.WaitVisible(chromedp.CSS(`nav[aria-label="Sections"]`)), // the approver page, after the redirect
		)
	}
	logout := chromedp.Steps(chromedp.Navigate(srv.URL+"/"), chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)),
		chromedp.WaitNotPresent(chromedp.CSS(`form[action="/logout"]`)))
	runOp := func(task string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(
			chromedp.Navigate(srv.URL+"/"),
			chromedp.SendKeys(chromedp.CSS(`form[action="/ops/`+task+`"] input[name=arg]`), "leaver@contoso.com"),
			chromedp.Click(chromedp.CSS(`form[action="/ops/`+task+`"] button`)),
			chromedp.WaitVisible(chromedp.CSS(`#result`)),
		)
	}
	requestID := func() string {
		t.Helper()
		m := regexp.MustCompile(`/requests/(req_[0-9a-z]+)`).FindStringSubmatch(here())
		if m == nil {
			t.Fatalf("not on a request's page: %s", here())
		}
		return m[1]
	}
	// check runs axe-core and the scroll check on the page shown, at
	// both widths, and saves its screenshots.
	pages := 0
	check := func(name string) {
		t.Helper()
		pages++
		for _, v := range widths {
			do(fmt.Sprintf("   %s at %d px", name, v.w), chromedp.EmulateViewport(v.w, v.h))
			if v.w == 390 {
				if got := eval(`String(document.documentElement.scrollWidth) + "/" + String(document.documentElement.clientWidth)`); func() bool {
					var sw, cw int
					fmt.Sscanf(got, "%d/%d", &sw, &cw)
					return sw > cw
				}() {
					t.Errorf("%s scrolls sideways at 390 px: scroll/client width %s", name, got)
				}
			}
			shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(shots, fmt.Sprintf("%02d-%s-%d.png", pages, name, v.w))
			if err := os.WriteFile(file, shot, 0o644); err != nil {
				t.Fatal(err)
			}
			abs, _ := filepath.Abs(file)
			t.Logf("   screenshot %s", abs)
			if axe == "" {
				continue
			}
			if _, err := chromedp.Run(ctx, chromedp.Evaluate[any](axe+";true")); err != nil {
				t.Fatalf("inject axe-core: %v", err)
			}
			out := eval(`axe.run(document, {resultTypes: ["violations"]}).then(r => JSON.stringify(r.violations.map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help, target: v.nodes[0].target.join(" ")}))))`)
			var violations []struct {
				ID, Impact, Help, Target string
				Nodes                    int
			}
			if err := json.Unmarshal([]byte(out), &violations); err != nil {
				t.Fatalf("axe-core's answer %q: %v", out, err)
			}
			var serious []string
			for _, x := range violations {
				line := fmt.Sprintf("%s (%s, %d nodes: %s; first %s)", x.ID, x.Impact, x.Nodes, x.Help, x.Target)
				if x.Impact == "serious" || x.Impact == "critical" {
					serious = append(serious, line)
				}
			}
			t.Logf("   axe-core, %s at %d px: %d violations, %d serious or critical %v", name, v.w, len(violations), len(serious), violations)
			if len(serious) > 0 {
				t.Errorf("axe-core, %s at %d px: %s", name, v.w, strings.Join(serious, "; "))
			}
		}
		do("   back to 1280 px", chromedp.EmulateViewport(1280, 900))
	}

	do("1. alice runs Move mailbox without a grant: denied", login("alice"), runOp("New-MoveRequest"))
	if got := text(`#result`); !strings.Contains(got, "Denied") {
		t.Fatalf("without a grant: %q", got)
	}
	do("2. she follows the refusal's link: the request form, its policy chosen",
		chromedp.Click(chromedp.CSS(`#request-link`)), chromedp.WaitVisible(chromedp.CSS(`select[name=policy_id]`)))
	if got := eval(`document.querySelector("select[name=policy_id]").value`); got != "move" {
		t.Fatalf("the form's policy: %q", got)
	}
	check("request-form")
	do("3. she asks for 20 hours: refused next to the field, what she typed kept",
		chromedp.SendKeys(chromedp.CSS(`#reason`), "INC-1: move a leaver's mailbox"),
		chromedp.SendKeys(chromedp.CSS(`#ticket`), "INC-1"),
		chromedp.SendKeys(chromedp.CSS(`#hours`), "20"),
		chromedp.Click(chromedp.CSS(`form.stack button`)),
		chromedp.WaitVisible(chromedp.CSS(`#hours-err`)))
	if got := text(`#hours-err`); got != "That is longer than this access allows: at most 8 hours." {
		t.Errorf("the error next to hours: %q", got)
	}
	if got := eval(`document.querySelector("#reason").value + "|" + document.querySelector("#ticket").value + "|" + document.querySelector("select[name=policy_id]").value`); got != "INC-1: move a leaver's mailbox|INC-1|move" {
		t.Errorf("the form after the error: %q", got)
	}
	check("request-form-error")
	do("4. she asks for 1 hour: sent, and she is on the request's page",
		chromedp.SetValue(chromedp.CSS(`#hours`), "1"), chromedp.Click(chromedp.CSS(`form.stack button`)), chromedp.WaitVisible(chromedp.CSS(`.notice`)))
	move := requestID()

	link := srv.URL + "/pam/requests/" + move // the notifiers' link: BaseURL + "/requests/" + ID
	do("5. bob, signed out, opens the notification's link: the sign-in, then the request",
		logout, chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS(`select[name=user]`)))
	if u := here(); !strings.Contains(u, "next="+url.QueryEscape("/pam/requests/"+move)) {
		t.Errorf("the sign-in's address: %s", u)
	}
	do("   he signs in and lands on the request",
		chromedp.SetValue(chromedp.CSS(`select[name=user]`), "bob"),
		chromedp.Click(chromedp.CSS(`form[action="/login"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`#decide-h`)))
	if u := here(); u != link {
		t.Errorf("after signing in: %s, want %s", u, link)
	}
	if got := text(`main`); !strings.Contains(got, "INC-1: move a leaver's mailbox") || !strings.Contains(got, "Approvals: 0 of 1") || !strings.Contains(got, "1 hour") {
		t.Errorf("bob's view of the request: %q", got)
	}
	check("request-to-decide")
	do("   and approves it with a comment",
		chromedp.SendKeys(chromedp.CSS(`#decide-comment`), "checked INC-1"),
		chromedp.Click(chromedp.CSS(`button[value=approve]`)), chromedp.WaitVisible(chromedp.CSS(`.notice`)))
	if got := text(`.notice`); got != "You approved the request." {
		t.Errorf("after approving: %q", got)
	}

	do("6. alice runs Move mailbox: allowed", login("alice"), runOp("New-MoveRequest"))
	if got := text(`#result`); !strings.Contains(got, "New-MoveRequest ran on leaver@contoso.com") {
		t.Fatalf("after bob's approval: %q", got)
	}
	do("7. alice asks for Drop table, which needs two approvers",
		chromedp.Navigate(srv.URL+"/pam/new?policy=drop"),
		chromedp.SendKeys(chromedp.CSS(`#reason`), "CHG-2: drop the staging table"),
		chromedp.SendKeys(chromedp.CSS(`#ticket`), "CHG-2"),
		chromedp.Click(chromedp.CSS(`form.stack button`)), chromedp.WaitVisible(chromedp.CSS(`.notice`)))
	drop := requestID()
	do("8. bob approves it from its page", login("bob"), chromedp.Navigate(srv.URL+"/pam/requests/"+drop),
		chromedp.Click(chromedp.CSS(`button[value=approve]`)), chromedp.WaitVisible(chromedp.CSS(`.notice`)))
	do("9. carol sees 1 of 2", login("carol"), chromedp.Navigate(srv.URL+"/pam/requests/"+drop), chromedp.WaitVisible(chromedp.CSS(`#progress-h`)))
	if got := text(`#progress-h`); got != "Approvals: 1 of 2" {
		t.Errorf("carol's progress: %q", got)
	}
	if got := text(`.progress`); !strings.Contains(got, "approvers: 1 of 2 (bob)") {
		t.Errorf("carol's progress by group: %q", got)
	}
	check("request-one-of-two")
	do("   and approves", chromedp.Click(chromedp.CSS(`button[value=approve]`)), chromedp.WaitVisible(chromedp.CSS(`.notice`)))
	do("10. alice's active access lists both grants", login("alice"), chromedp.Navigate(srv.URL+"/pam/?tab=active"), chromedp.WaitVisible(chromedp.CSS(`#list`)))
	if got := text(`#list`); !strings.Contains(got, "New-MoveRequest") || !strings.Contains(got, "Drop-Table") || !strings.Contains(got, "ends ") {
		t.Errorf("alice's active access: %q", got)
	}
	check("active-access")
	do("11. bob revokes Drop table with a reason", login("bob"), chromedp.Navigate(srv.URL+"/pam/requests/"+drop),
		chromedp.SendKeys(chromedp.CSS(`#revoke-comment`), "the change was called off"),
		chromedp.Click(chromedp.CSS(`button[value=revoke]`)), chromedp.WaitVisible(chromedp.CSS(`.notice`)))
	do("12. alice runs Drop table: denied", login("alice"), runOp("Drop-Table"))
	if got := text(`#result`); !strings.Contains(got, "Denied") {
		t.Fatalf("after the revocation: %q", got)
	}
	do("13. bob's history shows both", login("bob"), chromedp.Navigate(srv.URL+"/pam/?tab=history"), chromedp.WaitVisible(chromedp.CSS(`#list`)))
	if got := text(`#list`); !strings.Contains(got, "New-MoveRequest") || !strings.Contains(got, "Drop-Table") || !strings.Contains(got, "revoked") {
		t.Errorf("bob's history: %q", got)
	}
	check("history")
	do("   and alice's requests say who revoked it", login("alice"), chromedp.Navigate(srv.URL+"/pam/requests/"+drop), chromedp.WaitVisible(chromedp.CSS(`#details-h`)))
	if got := text(`main`); !strings.Contains(got, "Closed by") || !strings.Contains(got, "bob") || !strings.Contains(got, "revoked") {
		t.Errorf("alice's view of the revoked grant: %q", got)
	}

	do("14. bob's waiting list: the newest first, 50 a page", login("bob"), chromedp.Navigate(srv.URL+"/pam/"), chromedp.WaitVisible(chromedp.CSS(`#list`)))
	if got := eval(`String(document.querySelectorAll("#list .card").length)`); got != "50" {
		t.Errorf("the first page holds %s requests", got)
	}
	if got := eval(`document.querySelector("#list .card").id`); got != "req-"+newest {
		t.Errorf("the first request listed: %s, want the newest, req-%s", got, newest)
	}
	check("waiting")
	n := 1
	for ; n < 40; n++ {
		more := eval(`document.querySelector('a[rel=next]') ? "yes" : ""`)
		if more == "" {
			break
		}
		first := eval(`document.querySelector("#list .card").id`)
		do(fmt.Sprintf("   older, page %d", n+1), chromedp.Click(chromedp.CSS(`a[rel=next]`)),
			chromedp.WaitNotPresent(chromedp.CSS(`#`+first)), chromedp.WaitVisible(chromedp.CSS(`#list`)))
	}
	if got := eval(`Array.from(document.querySelectorAll("#list .card")).map(e => e.id).pop() || ""`); got != "req-"+oldest || n != 22 {
		t.Errorf("after %d pages the last request listed is %s, want the oldest, req-%s", n, got, oldest)
	}
	do("15. search finds by ticket", chromedp.Navigate(srv.URL+"/pam/"),
		chromedp.SendKeys(chromedp.CSS(`#f-q`), "bulk-0042"), chromedp.Click(chromedp.CSS(`form.filters button`)),
		chromedp.WaitVisible(chromedp.CSS(`#f-q[value="bulk-0042"]`))) // the page that answered the search
	if got := eval(`Array.from(document.querySelectorAll("#list .card")).map(e => e.id).join(",")`); got != "req-"+seeded[42] {
		t.Errorf("search for bulk-0042: %q", got)
	}
	check("search")

	do("16. bob approves two waiting requests at once with one comment", chromedp.Navigate(srv.URL+"/pam/"),
		chromedp.WaitVisible(chromedp.CSS(`#bulk`)),
		chromedp.Click(chromedp.CSS(`#list .card:nth-of-type(1) input[name=id]`)),
		chromedp.Click(chromedp.CSS(`#list .card:nth-of-type(2) input[name=id]`)),
		chromedp.SendKeys(chromedp.CSS(`#bulk-comment`), "batch checked"),
		chromedp.Click(chromedp.CSS(`#bulk button[value=approve]`)), chromedp.WaitVisible(chromedp.CSS(`.results`)))
	if got := eval(`String(document.querySelectorAll(".results li.ok").length) + " " + String(document.querySelectorAll(".results li.failed").length)`); got != "2 0" {
		t.Errorf("bulk approval: %s succeeded and failed, want 2 0: %q", got, text(`main`))
	}
	t.Logf("   the page says: %q", text(`.results ul`))
	check("bulk-results")

	// A reason with a right-to-left override is shown with it made
	// visible, never applied.
	rlo, err := s.m.Submit(pam.WithActor(context.Background(), "alice"), pam.RequestInput{PolicyID: "drop", Reason: "invoice \u202egpj.exe"})
	if err != nil {
		t.Fatal(err)
	}
	do("17. bob opens a request whose reason holds U+202E", chromedp.Navigate(srv.URL+"/pam/requests/"+rlo.ID), chromedp.WaitVisible(chromedp.CSS(`#details-h`)))
	if got := text(`main`); strings.ContainsRune(got, '\u202e') || !strings.Contains(got, "invoice") {
		t.Errorf("the reason with U+202E as shown: %q", got)
	}

	// The viewer is in Berlin: times written in UTC are shown there.
	do("18. in Europe/Berlin, the request's times are in the viewer's zone",
		chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := cdp.Call(ctx, t, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: "Europe/Berlin"})
			return err
		}),
		chromedp.Navigate(srv.URL+"/pam/requests/"+rlo.ID), chromedp.WaitVisible(chromedp.CSS(`#details-h`)))
	if got := eval(`(() => { const el = document.querySelector("main time[datetime]"); return el.title + " | " + el.textContent })()`); !strings.HasSuffix(strings.Split(got, " | ")[0], "UTC") || strings.Contains(strings.Split(got, " | ")[1], "UTC") {
		t.Errorf("a time as written | as shown in Berlin: %q", got)
	} else {
		t.Logf("   a time as written | as shown in Berlin: %q", got)
	}

	do("19. alice opens her Move mailbox grant: hers to end or extend", login("alice"), chromedp.Navigate(srv.URL+"/pam/requests/"+move),
		chromedp.WaitVisible(chromedp.CSS(`#end-h`)))
	check("request-holder")
	do("   she ends her access", chromedp.Click(chromedp.CSS(`button[value=relinquish]`)), chromedp.WaitVisible(chromedp.CSS(`.notice`)))
	if got := text(`main`); !strings.Contains(got, "You ended your access.") || !strings.Contains(got, "relinquished") {
		t.Errorf("after ending it: %q", got)
	}
	do("   and Move mailbox is denied", runOp("New-MoveRequest"))
	if got := text(`#result`); !strings.Contains(got, "Denied") {
		t.Fatalf("after ending the grant: %q", got)
	}

	// Break-glass: carol acts at once; bob flags it on its page.
	admin := pam.WithActor(context.Background(), "admin")
	p, err := s.m.Policy(admin, "drop")
	if err != nil {
		t.Fatal(err)
	}
	p.BreakGlass = &pam.BreakGlass{Group: "approvers"}
	if _, err := s.m.UpdatePolicy(admin, p); err != nil {
		t.Fatal(err)
	}
	glass, err := s.m.BreakGlass(pam.WithActor(context.Background(), "carol"), pam.RequestInput{PolicyID: "drop", Reason: "INC-9: the disk is full"})
	if err != nil {
		t.Fatal(err)
	}
	do("20. bob flags carol's break-glass use on its page", login("bob"), chromedp.Navigate(srv.URL+"/pam/requests/"+glass.ID),
		chromedp.SendKeys(chromedp.CSS(`#review-comment`), "no incident was open"),
		chromedp.Click(chromedp.CSS(`button[value=flag]`)), chromedp.WaitVisible(chromedp.CSS(`.notice`)))
	if flagged, err := s.m.Request(admin, glass.ID); err != nil || flagged.BreakGlass == nil || flagged.BreakGlass.State != pam.ReviewFlagged || flagged.State != pam.Revoked {
		t.Errorf("after bob's flag: %+v, %v", flagged, err)
	}
	t.Logf("%d pages checked at %d widths", pages, len(widths))
}
