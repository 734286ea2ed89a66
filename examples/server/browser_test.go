package main

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// TestBrowserApproval drives the approver page in headless Chromium:
// alice requests, bob sees the request and approves it with a comment,
// and alice's operation then runs; a two-approval request needs carol
// too; alice cannot approve her own request through the page.
func TestBrowserApproval(t *testing.T) {
	path := chromium(t)
	s, err := New(context.Background(), filepath.Join(t.TempDir(), "pam.db"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	srv := httptest.NewServer(s)
	defer srv.Close()

	alloc, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.WindowSize(420, 900))...) // a phone's width
	defer cancel()
	ctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	do := func(step string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		t.Log(step)
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", step, err)
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
	login := func(user string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(
			chromedp.Navigate(srv.URL+"/"),
			chromedp.SetValue(chromedp.CSS(`select[name=user]`), user),
			chromedp.Click(chromedp.CSS(`form[action="/login"] button`)),
			chromedp.WaitVisible(chromedp.CSS(`#waiting`)),
		)
	}
	request := func(policy, reason string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(
			chromedp.SetValue(chromedp.CSS(`select[name=policy_id]`), policy),
			chromedp.SendKeys(chromedp.CSS(`textarea[name=reason]`), reason),
			chromedp.SetValue(chromedp.CSS(`input[name=hours]`), "1"),
			chromedp.Click(chromedp.CSS(`#new button`)),
			chromedp.WaitVisible(chromedp.CSS(`.notice`)),
		)
	}
	runOp := func(task string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(
			chromedp.Navigate(srv.URL+"/"),
			chromedp.SendKeys(chromedp.CSS(`form[action="/ops/`+task+`"] input[name=arg]`), "leaver@contoso.com"),
			chromedp.Click(chromedp.CSS(`form[action="/ops/`+task+`"] button`)),
			chromedp.WaitVisible(chromedp.CSS(`#result`)),
		)
	}
	approve := func(id string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(chromedp.Click(chromedp.CSS(`#req-`+id+` button[value=approve]`)), chromedp.WaitVisible(chromedp.CSS(`.notice`)))
	}
	requestOf := func(policy string) string {
		rs, _, err := s.m.Requests(pam.WithActor(context.Background(), "alice"), pam.RequestFilter{Requester: "alice", PolicyIDs: []string{policy}})
		if err != nil || len(rs) == 0 {
			t.Fatalf("alice's %s requests: %v, %v", policy, rs, err)
		}
		return rs[len(rs)-1].ID
	}

	do("1. alice signs in and runs Move mailbox without a grant: denied", login("alice"), runOp("New-MoveRequest"))
	if got := text(`#result`); !strings.Contains(got, "Denied") {
		t.Fatalf("without a grant: %q", got)
	}
	do("2. alice requests Move mailbox through the form", login("alice"), request("move", "INC-1: move a leaver's mailbox"))
	move := requestOf("move")
	do("3. alice's own request is not waiting for her", chromedp.Navigate(srv.URL+"/pam/"))
	if got := text(`#waiting`); !strings.Contains(got, "Nothing waits for you") {
		t.Errorf("alice's waiting list: %q", got)
	}
	do("   and an approval she forges in the page is refused",
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Run(ctx, chromedp.Evaluate[any](`(() => { const f = document.createElement("form"); f.method = "post";
				f.action = "/pam/requests/`+move+`/decide"; const v = document.createElement("input"); v.name = "verdict"; v.value = "approve";
				f.appendChild(v); document.body.appendChild(f); f.submit(); return true; })()`))
			return err
		}),
		chromedp.WaitVisible(chromedp.CSS(`.error`)))
	if got := text(`.error`); !strings.Contains(got, "requester cannot decide their own request") {
		t.Fatalf("self-approval through the page: %q", got)
	}

	do("4. bob signs in and sees the request with its reason", login("bob"))
	if got := text(`#req-` + move); !strings.Contains(got, "alice requests task:New-MoveRequest") || !strings.Contains(got, "INC-1: move a leaver's mailbox") {
		t.Errorf("bob's view of the request: %q", got)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err != nil {
		t.Fatal(err)
	}
	artifact := filepath.Join("testdata", "artifacts", "approver-page.png")
	if err := os.MkdirAll(filepath.Dir(artifact), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(artifact, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(artifact)
	t.Logf("screenshot of bob's approver page: %s (%d bytes)", abs, len(shot))
	do("   and approves it with a comment",
		chromedp.SendKeys(chromedp.CSS(`#req-`+move+` input[name=comment]`), "checked INC-1"), approve(move))

	do("5. alice runs Move mailbox: allowed", login("alice"), runOp("New-MoveRequest"))
	if got := text(`#result`); !strings.Contains(got, "New-MoveRequest ran on leaver@contoso.com") {
		t.Fatalf("after bob's approval: %q", got)
	}
	do("6. alice requests Drop table, which needs two approvers", login("alice"), request("drop", "CHG-2: drop the staging table"))
	drop := requestOf("drop")
	do("7. bob approves", login("bob"), approve(drop))
	do("8. alice tries: still denied", login("alice"), runOp("Drop-Table"))
	if got := text(`#result`); !strings.Contains(got, "Denied") {
		t.Fatalf("with one approval of two: %q", got)
	}
	do("9. carol approves", login("carol"), approve(drop))
	do("10. alice runs Drop table: allowed", login("alice"), runOp("Drop-Table"))
	if got := text(`#result`); !strings.Contains(got, "Drop-Table ran") {
		t.Fatalf("with two approvals: %q", got)
	}
	r, err := s.m.Request(pam.WithActor(context.Background(), "alice"), move)
	if err != nil || len(r.Decisions) != 1 || r.Decisions[0].Approver != "bob" || r.Decisions[0].Comment != "checked INC-1" {
		t.Errorf("bob's decision: %+v, %v", r.Decisions, err)
	}

	// The holder asks for more time; the approver decides it on the page.
	do("11. alice asks to extend Move mailbox by an hour", login("alice"),
		chromedp.SendKeys(chromedp.CSS(`#mine-`+move+` input[name=hours]`), "1"),
		chromedp.SendKeys(chromedp.CSS(`#mine-`+move+` input[name=reason]`), "INC-1: the move is slow"),
		chromedp.Click(chromedp.CSS(`#mine-`+move+` form[action$="/extend"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`.notice`)))
	do("12. bob sees the extension waiting, with its reason", login("bob"))
	if got := text(`#req-` + move); !strings.Contains(got, "alice asks to extend task:New-MoveRequest by 1h0m0s") || !strings.Contains(got, "INC-1: the move is slow") {
		t.Errorf("bob's view of the extension: %q", got)
	}
	do("   and approves it", approve(move))
	extended, err := s.m.Request(pam.WithActor(context.Background(), "alice"), move)
	if err != nil || !extended.ExpiresAt.Equal(r.ExpiresAt.Add(time.Hour)) {
		t.Errorf("after the extension: ends %v, want %v (%v)", extended.ExpiresAt, r.ExpiresAt.Add(time.Hour), err)
	}
	// The holder ends it early: the next run is denied.
	do("13. alice ends her Move mailbox access now", login("alice"),
		chromedp.Click(chromedp.CSS(`#mine-`+move+` button[value=relinquish]`)),
		chromedp.WaitVisible(chromedp.CSS(`.notice`)))
	if got := text(`#mine-` + move); !strings.Contains(got, "relinquished") {
		t.Errorf("alice's request after ending it: %q", got)
	}
	do("14. alice runs Move mailbox: denied", runOp("New-MoveRequest"))
	if got := text(`#result`); !strings.Contains(got, "Denied") {
		t.Fatalf("after ending the grant: %q", got)
	}

	// Break-glass: carol acts at once; bob reviews it afterwards on the page.
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
	do("15. carol, who broke glass, runs Drop table: allowed", login("carol"), runOp("Drop-Table"))
	if got := text(`#result`); !strings.Contains(got, "Drop-Table ran") {
		t.Fatalf("under break-glass: %q", got)
	}
	do("16. bob sees the break-glass use to review", login("bob"))
	if got := text(`#bg-` + glass.ID); !strings.Contains(got, "carol broke glass for task:Drop-Table") || !strings.Contains(got, "INC-9: the disk is full") {
		t.Errorf("bob's view of the break-glass use: %q", got)
	}
	do("   and flags it with a comment",
		chromedp.SendKeys(chromedp.CSS(`#bg-`+glass.ID+` input[name=comment]`), "no incident was open"),
		chromedp.Click(chromedp.CSS(`#bg-`+glass.ID+` button[value=flag]`)),
		chromedp.WaitVisible(chromedp.CSS(`.notice`)))
	flagged, err := s.m.Request(admin, glass.ID)
	if err != nil || flagged.BreakGlass == nil || flagged.BreakGlass.State != pam.ReviewFlagged || flagged.BreakGlass.Comment != "no incident was open" || flagged.State != pam.Revoked {
		t.Errorf("after bob's flag: %+v, %v", flagged, err)
	}
	do("17. carol runs Drop table again: denied", login("carol"), runOp("Drop-Table"))
	if got := text(`#result`); !strings.Contains(got, "Denied") {
		t.Fatalf("after the flag: %q", got)
	}
}
