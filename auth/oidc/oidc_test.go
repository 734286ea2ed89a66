package oidc_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	zoidc "github.com/zitadel/oidc/v3/pkg/oidc"
	"golang.org/x/oauth2"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/auth/oidc"
	"github.com/zerostanding/pam/pamhttp"
	"github.com/zerostanding/pam/store/memory"
)

// The OpenID provider of these tests is real: ZITADEL's OP
// (github.com/zitadel/oidc/v3/pkg/op) with its example storage and login
// page, in the test process. Its users sign in as test-user2 and
// test-user@127.0.0.1 (password verysecure); its custom scope adds to
// their ID tokens the claims an enterprise provider sends:
// preferred_username (bob, alice) and groups.
var people = map[string]struct {
	name   string
	groups []string
}{
	"id1": {"alice", nil}, // her tokens carry no groups claim
	"id2": {"bob", []string{"staff", "approvers"}},
}

type provider struct{ *storage.Storage }

func (p provider) SetUserinfoFromScopes(ctx context.Context, info *zoidc.UserInfo, userID, clientID string, scopes []string) error {
	if err := p.Storage.SetUserinfoFromScopes(ctx, info, userID, clientID, scopes); err != nil {
		return err
	}
	if slices.Contains(scopes, storage.CustomScope) {
		info.PreferredUsername = people[userID].name
		if g := people[userID].groups; g != nil {
			info.AppendClaims("groups", g)
		}
	}
	return nil
}

// startProvider starts an OpenID provider with the clients given
// (ID → redirect URL; each client's secret is "secret-" + ID).
func startProvider(t *testing.T, clients map[string]string) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String()
	cs := map[string]*storage.Client{}
	for id, redirect := range clients {
		cs[id] = storage.WebClient(id, "secret-"+id, redirect)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil)) // its request log
	srv.Config.Handler = exampleop.SetupServer(issuer, provider{storage.NewStorageWithClients(storage.NewUserStore(issuer), cs)}, quiet, false)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

var sessionKey = []byte("0123456789abcdef0123456789abcdef")

// app is pamhttp behind the OIDC sign-in: /auth/ the sign-in, /pam/ the
// approver page and API.
type app struct {
	srv  *httptest.Server
	auth *oidc.Auth
	m    *pam.Manager
}

func startApp(t *testing.T, op *httptest.Server, appSrv *httptest.Server, mutate func(*oidc.Config)) *app {
	t.Helper()
	cfg := oidc.Config{Issuer: op.URL, ClientID: "pam", ClientSecret: "secret-pam", RedirectURL: appSrv.URL + "/auth/callback",
		Scopes: []string{"openid", storage.CustomScope}, SessionKey: sessionKey}
	if mutate != nil {
		mutate(&cfg)
	}
	a, err := oidc.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"carol"}})
	m, err := pam.New(memory.New(), a.Directory(dir), &pam.Options{AdminGroup: "pam-admins"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.CreatePolicy(pam.WithActor(context.Background(), "carol"), pam.Policy{ID: "move", Scope: pam.TaskScope("New-MoveRequest"),
		Approval: pam.Manual, ApproverGroups: []pam.ApproverGroup{{Group: "approvers"}}}); err != nil {
		t.Fatal(err)
	}
	h, err := pamhttp.New(m, pamhttp.Options{Authenticate: a.Authenticate, SignInURL: "/auth/login"})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/auth/", http.StripPrefix("/auth", a.Handler()))
	mux.Handle("/pam/", http.StripPrefix("/pam", h))
	appSrv.Config.Handler = mux
	return &app{srv: appSrv, auth: a, m: m}
}

// idToken signs user in at op as client and returns the ID token, as a
// command-line client would (the code flow with PKCE).
func idToken(t *testing.T, op *httptest.Server, client, redirect, user string) string {
	t.Helper()
	conf := oauth2.Config{ClientID: client, ClientSecret: "secret-" + client, RedirectURL: redirect, Scopes: []string{"openid", storage.CustomScope},
		Endpoint: oauth2.Endpoint{AuthURL: op.URL + "/auth", TokenURL: op.URL + "/oauth/token"}}
	verifier := oauth2.GenerateVerifier()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(r *http.Request, _ []*http.Request) error {
		if strings.HasPrefix(r.URL.String(), redirect) {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	resp, err := c.Get(conf.AuthCodeURL("state-1", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", "n-1")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = c.PostForm(op.URL+"/login/username", url.Values{"id": {resp.Request.URL.Query().Get("authRequestID")}, "username": {user}, "password": {"verysecure"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || back.Query().Get("code") == "" {
		t.Fatalf("the provider's answer: %s %s", resp.Status, resp.Header.Get("Location"))
	}
	tok, err := conf.Exchange(context.Background(), back.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	return tok.Extra("id_token").(string)
}

func bearer(a *oidc.Auth, tok string) (string, error) {
	r := httptest.NewRequest("GET", "/pam/api/v1/me", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	return a.Authenticate(r)
}

// TestBearerTokens: a token of the provider for this service is
// accepted; expired (beyond the skew), for another audience, of another
// issuer, altered, unsigned (alg none) or absent are refused.
func TestBearerTokens(t *testing.T) {
	appSrv := httptest.NewUnstartedServer(nil)
	redirect := "http://" + appSrv.Listener.Addr().String() + "/auth/callback"
	op := startProvider(t, map[string]string{"pam": redirect, "other": redirect})
	appSrv.Start()
	defer appSrv.Close()
	a := startApp(t, op, appSrv, nil)

	tok := idToken(t, op, "pam", redirect, "test-user2")
	if who, err := bearer(a.auth, tok); err != nil || who != "bob" {
		t.Fatalf("a valid token: %q, %v", who, err)
	}
	// alice's token has no groups claim: her membership is the fallback
	// directory's, not "none"; bob's claim answers for him.
	if who, err := bearer(a.auth, idToken(t, op, "pam", redirect, "test-user@127.0.0.1")); err != nil || who != "alice" {
		t.Fatalf("alice's token: %q, %v", who, err)
	}
	fallback, _ := pam.NewStaticDirectory(map[string][]string{"staff": {"alice"}, "approvers": {"bob"}})
	dir := a.auth.Directory(fallback)
	if ok, err := dir.IsMember(context.Background(), "staff", "alice"); !ok || err != nil {
		t.Errorf("alice in staff, by the fallback: %v, %v", ok, err)
	}
	if ok, err := dir.IsMember(context.Background(), "staff", "bob"); !ok || err != nil {
		t.Errorf("bob in staff, by his claim: %v, %v", ok, err)
	}
	var claims struct{ Exp int64 }
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	json.Unmarshal(payload, &claims)
	exp := time.Unix(claims.Exp, 0)
	for _, c := range []struct {
		name string
		now  time.Time
		ok   bool
	}{{"30s past its expiry, within the skew", exp.Add(30 * time.Second), true}, {"2m past its expiry", exp.Add(2 * time.Minute), false}} {
		late, err := oidc.New(context.Background(), oidc.Config{Issuer: op.URL, ClientID: "pam", RedirectURL: redirect, SessionKey: sessionKey,
			Now: func() time.Time { return c.now }})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bearer(late, tok); (err == nil) != c.ok || (err != nil && !errors.Is(err, oidc.ErrUnauthenticated)) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	other := idToken(t, op, "other", redirect, "test-user2")
	if _, err := bearer(a.auth, other); !errors.Is(err, oidc.ErrUnauthenticated) || !strings.Contains(err.Error(), "not for this service") {
		t.Errorf("another audience: %v", err)
	}
	op2 := startProvider(t, map[string]string{"pam": redirect})
	if _, err := bearer(a.auth, idToken(t, op2, "pam", redirect, "test-user2")); !errors.Is(err, oidc.ErrUnauthenticated) {
		t.Errorf("another issuer: %v", err)
	}
	parts := strings.Split(tok, ".")
	forged := strings.Replace(string(payload), `"bob"`, `"carol"`, 1)
	if _, err := bearer(a.auth, parts[0]+"."+base64.RawURLEncoding.EncodeToString([]byte(forged))+"."+parts[2]); !errors.Is(err, oidc.ErrUnauthenticated) {
		t.Errorf("an altered token: %v", err)
	}
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
	if _, err := bearer(a.auth, none); !errors.Is(err, oidc.ErrUnauthenticated) {
		t.Errorf("alg none: %v", err)
	}
	if _, err := a.auth.Authenticate(httptest.NewRequest("GET", "/", nil)); !errors.Is(err, oidc.ErrUnauthenticated) {
		t.Errorf("nothing: %v", err)
	}
	// Through the API: the token is the caller; none is 401.
	req, _ := http.NewRequest("GET", appSrv.URL+"/pam/api/v1/me", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"actor":"bob"`) {
		t.Errorf("GET /api/v1/me with the token: %s %s", resp.Status, body)
	}
	for _, bad := range []oidc.Config{{Issuer: op.URL, ClientID: "pam", RedirectURL: redirect, SessionKey: []byte("short")},
		{Issuer: op.URL, ClientID: "pam", RedirectURL: "/auth/callback", SessionKey: sessionKey},
		{Issuer: op.URL, ClientID: "pam", RedirectURL: redirect, SessionKey: sessionKey, ClockSkew: time.Hour}} {
		if _, err := oidc.New(context.Background(), bad); !errors.Is(err, pam.ErrInvalid) {
			t.Errorf("New(%+v) = %v", bad, err)
		}
	}
}

// TestSignInFlow: a signed-out visit to the approver page goes through
// the provider's sign-in and comes back to the page asked for, signed in
// by the session cookie; the groups claim makes bob an approver; a
// replayed callback, a state of another sign-in and an open redirect are
// refused; sign-out ends the session.
func TestSignInFlow(t *testing.T) {
	appSrv := httptest.NewUnstartedServer(nil)
	redirect := "http://" + appSrv.Listener.Addr().String() + "/auth/callback"
	op := startProvider(t, map[string]string{"pam": redirect})
	appSrv.Start()
	defer appSrv.Close()
	a := startApp(t, op, appSrv, nil)
	r, err := a.m.Submit(pam.WithActor(context.Background(), "alice"), pam.RequestInput{PolicyID: "move", Reason: "INC-1"})
	if err != nil {
		t.Fatal(err)
	}

	jar, _ := cookiejar.New(nil)
	var callback string
	c := &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), redirect) {
			callback = req.URL.String()
		}
		return nil
	}}
	resp, err := c.Get(appSrv.URL + "/pam/requests/" + r.ID)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	id := resp.Request.URL.Query().Get("authRequestID")
	if !strings.HasPrefix(resp.Request.URL.String(), op.URL+"/login/username") || id == "" {
		t.Fatalf("signed out, the page led to %s", resp.Request.URL)
	}
	resp, err = c.PostForm(op.URL+"/login/username", url.Values{"id": {id}, "username": {"test-user2"}, "password": {"verysecure"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Request.URL.String() != appSrv.URL+"/pam/requests/"+r.ID || !strings.Contains(string(body), "Signed in as bob") || !strings.Contains(string(body), "Your decision") {
		t.Fatalf("after signing in: %s\n%s", resp.Request.URL, body)
	}
	var session *http.Cookie
	for _, ck := range jar.Cookies(resp.Request.URL) {
		if ck.Name == "pam_session" {
			session = ck
		}
	}
	if session == nil {
		t.Fatal("no session cookie")
	}
	// The approval counts bob as an approver from his groups claim.
	if _, err := a.m.Approve(pam.WithActor(context.Background(), "bob"), r.ID, "ok"); err != nil {
		t.Errorf("bob approves: %v", err)
	}
	// The callback again (a replay): its flow cookie is spent.
	resp, err = c.Get(callback)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a replayed callback: %s", resp.Status)
	}
	// Another browser's state.
	jar2, _ := cookiejar.New(nil)
	c2 := &http.Client{Jar: jar2, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), redirect) {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	resp, _ = c2.Get(appSrv.URL + "/auth/login?next=/pam/")
	resp.Body.Close()
	u, _ := url.Parse(callback)
	q := u.Query()
	q.Set("state", "not-this-one")
	u.RawQuery = q.Encode()
	resp, err = c2.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a state of another sign-in: %s", resp.Status)
	}
	for _, next := range []string{"https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:alert(1)"} {
		if got := oidc.LocalPath(next); got != "" {
			t.Errorf("LocalPath(%q) = %q", next, got)
		}
	}
	if got := oidc.LocalPath("/pam/requests/r?tab=mine"); got != "/pam/requests/r?tab=mine" {
		t.Errorf("a local path: %q", got)
	}
	// A session cookie altered or sealed with another key is refused.
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(&http.Cookie{Name: "pam_session", Value: session.Value[:len(session.Value)-2] + "AA"})
	if _, err := a.auth.Authenticate(req); !errors.Is(err, oidc.ErrUnauthenticated) {
		t.Errorf("an altered session: %v", err)
	}
	// Sign out: the session is gone.
	resp, err = c.Post(appSrv.URL+"/auth/logout", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, ck := range jar.Cookies(resp.Request.URL) {
		if ck.Name == "pam_session" {
			t.Error("the session cookie outlived the sign-out")
		}
	}
	// The groups of someone who has not signed in are not guessed.
	d := a.auth.Directory(nil)
	if _, err := d.IsMember(context.Background(), "approvers", "dave"); !errors.Is(err, oidc.ErrUnknownUser) {
		t.Errorf("an unknown person's membership: %v", err)
	}
	if ok, err := d.IsMember(context.Background(), "pam-admins", "bob"); ok || err != nil {
		t.Errorf("bob in pam-admins, by his claim: %v, %v", ok, err)
	}
}

// TestSignInBrowser: headless Chromium signs in through the provider's
// login page and lands on the approver page.
func TestSignInBrowser(t *testing.T) {
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		if os.Getenv("PAM_REQUIRE_BROWSER") != "" {
			t.Fatal("no Chromium found, and PAM_REQUIRE_BROWSER is set")
		}
		t.Skip("no Chromium found: install Debian's chromium package (.ci/run does)")
	}
	appSrv := httptest.NewUnstartedServer(nil)
	redirect := "http://" + appSrv.Listener.Addr().String() + "/auth/callback"
	op := startProvider(t, map[string]string{"pam": redirect})
	appSrv.Start()
	defer appSrv.Close()
	startApp(t, op, appSrv, nil)

	alloc, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true))...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := chromedp.Do(ctx,
		chromedp.Navigate(appSrv.URL+"/pam/?tab=mine"),
		chromedp.WaitVisible(chromedp.CSS(`#username`)),
		chromedp.SendKeys(chromedp.CSS(`#username`), "test-user@127.0.0.1"),
		chromedp.SendKeys(chromedp.CSS(`#password`), "verysecure"),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`nav[aria-label="Sections"]`)),
	)
	if err != nil {
		where, _ := chromedp.Run(context.WithoutCancel(ctx), chromedp.Location())
		t.Fatalf("%v, at %s", err, where)
	}
	who, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`.who`)))
	if err != nil || who != "Signed in as alice" {
		t.Errorf("after signing in: %q, %v", who, err)
	}
	where, _ := chromedp.Run(ctx, chromedp.Location())
	if where != appSrv.URL+"/pam/?tab=mine" {
		t.Errorf("landed on %s", where)
	}
}
