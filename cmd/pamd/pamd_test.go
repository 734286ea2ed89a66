package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/internal/fakes"
	"github.com/zerostanding/pam/pamhttp"
	"github.com/zerostanding/pam/sinks"
	"github.com/zerostanding/pam/store/postgres"
)

// TestMain runs pamd itself when the test binary is started as pamd
// (PAMD_TEST_EXEC=1): the drain tests start real processes and signal
// them.
func TestMain(m *testing.M) {
	if os.Getenv("PAMD_TEST_EXEC") == "1" {
		os.Exit(run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

const tokens = `# test tokens
token-alice-0000000 alice
token-bob-000000000 bob
token-carol-0000000 carol
token-admin-0000000 admin
`

// writeConfig writes a configuration and its tokens file into dir and
// returns the configuration's path.
func writeConfig(t *testing.T, dir, body string) string {
	t.Helper()
	tok := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tok, []byte(tokens), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "pamd.yaml")
	body = strings.ReplaceAll(body, "TOKENS", tok)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const baseConfig = `
listen: 127.0.0.1:0
admin_group: pam-admins
directory:
  static:
    pam-admins: [admin]
    approvers: [bob, carol]
auth:
  tokens_file: TOKENS
apply_as: admin
apply:
  policies:
    drop:
      name: Drop a table
      scope: {kind: task, name: Drop-Table}
      approval: manual
      approver_groups:
        - group: approvers
          min_approvals: 2
      max_duration: 2h
`

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := writeConfig(t, dir, baseConfig+"store: {sqlite: a.db}\n")
	c, err := Load(path, env(map[string]string{"PAMD_LISTEN": "127.0.0.1:9999", "PAMD_SQLITE": "b.db"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9999" || c.Store.SQLite != "b.db" || time.Duration(c.ShutdownTimeout) != 30*time.Second || c.Apply == nil || len(c.Apply.Policies) != 1 {
		t.Errorf("loaded %+v", c)
	}
	c, err = Load(path, env(map[string]string{"PAMD_POSTGRES_DSN": "postgres://x"}))
	if err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("a DSN from the environment beside a sqlite file: %v", err)
	}

	for name, tc := range map[string]struct{ body, want string }{
		"inline secret":     {baseConfig + "store: {postgres: 'postgres://u:pw@h/db'}\n", "never written in the configuration"},
		"unknown key":       {baseConfig + "listne: x\n", `unknown field "listne"`},
		"no auth":           {strings.Replace(baseConfig, "tokens_file: TOKENS", "", 1), "no way to tell who is calling"},
		"no directory":      {strings.Replace(baseConfig, "    pam-admins: [admin]\n    approvers: [bob, carol]\n", "", 1), "no groups"},
		"admin not a group": {strings.Replace(baseConfig, "admin_group: pam-admins", "admin_group: admins", 1), `admin_group "admins"`},
		"apply without who": {strings.Replace(baseConfig, "apply_as: admin\n", "", 1), "apply_as"},
		"webhook format":    {baseConfig + "notify: {webhook: {url: {env: HOOK}, format: teams2}}\n", "want json or slack"},
		"bad base url":      {baseConfig + "base_url: pam.example.com\n", "absolute http(s) URL"},
		"bad duration":      {baseConfig + "shutdown_timeout: 30\n", "duration"},
		"bad log level":     {baseConfig + "log_level: loud\n", "want debug, info, warn or error"},
		"ldap and static":   {strings.Replace(baseConfig, "directory:\n", "directory:\n  ldap: {url: ldaps://dc.example.com, user_base_dn: dc=x, group_base_dn: dc=x}\n", 1), "static or ldap, not both"},
		"ldap, no base":     {strings.Replace(strings.Replace(baseConfig, "  static:\n    pam-admins: [admin]\n    approvers: [bob, carol]\n", "  ldap: {url: ldaps://dc.example.com}\n", 1), "admin_group: pam-admins\n", "", 1), "user_base_dn and group_base_dn"},
		"oidc, no key":      {strings.Replace(baseConfig, "  tokens_file: TOKENS", "  oidc: {issuer: https://idp.example.com, client_id: pam}", 1), "issuer, client_id and session_key"},
		"oidc, no redirect": {strings.Replace(baseConfig, "  tokens_file: TOKENS", "  oidc: {issuer: https://idp.example.com, client_id: pam, session_key: {env: K}}", 1), "redirect_url, or base_url"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Load(writeConfig(t, t.TempDir(), tc.body), env(nil))
			if !errors.Is(err, errConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Load = %v, want errConfig with %q", err, tc.want)
			}
		})
	}
}

func TestSecrets(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "s")
	os.WriteFile(f, []byte("from-file\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	getenv := env(map[string]string{"S": "from-env"})
	for _, tc := range []struct {
		s       Secret
		want    string
		wantErr string
	}{
		{Secret{Env: "S"}, "from-env", ""},
		{Secret{File: f}, "from-file", ""},
		{Secret{}, "", ""},
		{Secret{Env: "UNSET"}, "", "UNSET is not set"},
		{Secret{File: empty}, "", "is empty"},
		{Secret{File: filepath.Join(dir, "none")}, "", "no such file"},
		{Secret{Env: "S", File: f}, "", "both"},
	} {
		got, err := tc.s.Value(getenv)
		if got != tc.want || (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%+v: %q, %v; want %q, %q", tc.s, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestTokensFile(t *testing.T) {
	log := discard()
	dir := t.TempDir()
	write := func(body string, mode os.FileMode) string {
		p := filepath.Join(dir, fmt.Sprintf("t%d", time.Now().UnixNano()))
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	got, err := loadTokens(write(tokens, 0o600), log)
	if err != nil || len(got) != 4 {
		t.Fatalf("loadTokens = %v, %v", got, err)
	}
	if _, err := loadTokens(write(tokens, 0o644), log); err != nil {
		t.Errorf("a file others may read is warned about, not refused: %v", err)
	}
	for name, tc := range map[string]struct {
		body string
		mode os.FileMode
		want string
	}{
		"writable by others": {tokens, 0o666, "may be written by others"},
		"writable by group":  {tokens, 0o620, "may be written by others"},
		"short token":        {"short alice\n", 0o600, "at least 16"},
		"three fields":       {"token-aaaaaaaaaaaa alice bob\n", 0o600, "TOKEN IDENTITY"},
		"twice":              {"token-aaaaaaaaaaaa alice\ntoken-aaaaaaaaaaaa bob\n", 0o600, "twice"},
		"bad identity":       {"token-aaaaaaaaaaaa al\x01ice\n", 0o600, "line 1"},
		"empty":              {"# nothing\n", 0o600, "holds no token"},
	} {
		if _, err := loadTokens(write(tc.body, tc.mode), log); !errors.Is(err, errConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

// TestServeSQLite: pamd with SQLite serves the API to token holders
// only, applies the policies, and a SIGTERM (here, the end of its
// context) drains it with the audit file holding the trail.
func TestServeSQLite(t *testing.T) {
	dir := t.TempDir()
	audit := filepath.Join(dir, "audit.jsonl")
	path := writeConfig(t, dir, baseConfig+fmt.Sprintf("store: {sqlite: %s}\naudit: {file: {path: %s, required: true}}\n", filepath.Join(dir, "pam.db"), audit))
	ctx, cancel := context.WithCancel(context.Background())
	out := &fakes.SyncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"-config", path}, env(nil), out, io.Discard) }()
	addr := waitListening(t, out)
	alice := client(t, addr, "token-alice-0000000")
	r, err := alice.Submit(context.Background(), pam.RequestInput{PolicyID: "drop", Reason: "INC-1", Duration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client(t, addr, "not-a-token-at-all").Request(context.Background(), r.ID); !errors.Is(err, pam.ErrNoActor) {
		t.Errorf("an unknown token reads a request: %v", err)
	}
	// Health and metrics beside the API, without a token.
	for path, want := range map[string]string{"/livez": "ok", "/readyz": `"status":"ok"`, "/metrics": `pam_request_transitions_total{otel_scope_name="github.com/zerostanding/pam"`} {
		if st, body := get(t, addr, path); st != 200 || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d %.300s", path, st, body)
		}
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("pamd exited %d", code)
	}
	events, err := sinks.ReadFile(audit)
	if err != nil || len(events) < 2 || events[len(events)-1].Type != pam.EventRequestSubmitted {
		t.Fatalf("audit file after the drain: %d events, %v", len(events), err)
	}
}

// TestOpsApart: with ops.listen, health and metrics are served there
// and not beside the API.
func TestOpsApart(t *testing.T) {
	dir := t.TempDir()
	path := writeConfig(t, dir, baseConfig+fmt.Sprintf("store: {sqlite: %s}\nops: {listen: 127.0.0.1:0, max_outbox_age: 1m}\nlog_level: debug\n", filepath.Join(dir, "pam.db")))
	ctx, cancel := context.WithCancel(context.Background())
	out := &fakes.SyncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"-config", path}, env(nil), out, io.Discard) }()
	addr := waitListening(t, out)
	var ops string
	for _, line := range strings.Split(out.String(), "\n") {
		if a, ok := strings.CutPrefix(line, "ops on "); ok {
			ops = a
		}
	}
	if st, body := get(t, ops, "/readyz"); st != 200 || !strings.Contains(body, `"status":"ok"`) {
		t.Errorf("GET /readyz on ops: %d %s", st, body)
	}
	if st, body := get(t, ops, "/metrics"); st != 200 || !strings.Contains(body, "pam_") {
		t.Errorf("GET /metrics on ops: %d %.200s", st, body)
	}
	if st, _ := get(t, addr, "/metrics"); st == 200 {
		t.Error("/metrics is served beside the API too")
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("pamd exited %d", code)
	}
}

func get(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestCheckFlag: pamd -check reports a usable configuration and exits 2
// on one that is not.
func TestCheckFlag(t *testing.T) {
	var out, errOut bytes.Buffer
	path := writeConfig(t, t.TempDir(), baseConfig)
	if code := run(context.Background(), []string{"-config", path, "-check"}, env(nil), &out, &errOut); code != 0 || out.String() != "configuration ok\n" {
		t.Errorf("-check = %d, %q, %q", code, out.String(), errOut.String())
	}
	bad := writeConfig(t, t.TempDir(), baseConfig+"store: {postgres: 'postgres://u:secret@h/db'}\n")
	errOut.Reset()
	if code := run(context.Background(), []string{"-config", bad, "-check"}, env(nil), &out, &errOut); code != 2 || strings.Contains(errOut.String(), "secret@") {
		t.Errorf("-check of an inline secret = %d, %q", code, errOut.String())
	}
}

// TestTwoReplicasDrain: two pamd processes on one PostgreSQL database. A
// request submitted through one is approved through both; SIGTERM
// drains each while a request is in flight on it: the request
// completes, and each replica's audit file holds the whole trail, which
// verifies.
func TestTwoReplicasDrain(t *testing.T) {
	dsn := os.Getenv("PAM_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("PAM_POSTGRES_DSN is not set; set it to a PostgreSQL URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run the PostgreSQL tests")
	}
	schema := freshSchema(t, dsn)
	dir := t.TempDir()
	type replica struct {
		cmd   *exec.Cmd
		out   *fakes.SyncBuffer
		addr  string
		audit string
	}
	var reps [2]*replica
	for i := range reps {
		audit := filepath.Join(dir, fmt.Sprintf("audit-%d.jsonl", i))
		path := writeConfig(t, t.TempDir(), baseConfig+fmt.Sprintf("store: {postgres: {env: PAM_POSTGRES_DSN}, schema: %s}\naudit: {file: {path: %s, required: true}}\n", schema, audit))
		cmd := exec.Command(os.Args[0], "-config", path)
		cmd.Env = append(os.Environ(), "PAMD_TEST_EXEC=1")
		out := &fakes.SyncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		reps[i] = &replica{cmd: cmd, out: out, addr: waitListening(t, out), audit: audit}
	}
	ctx := context.Background()
	alice := client(t, reps[0].addr, "token-alice-0000000")
	r, err := alice.Submit(ctx, pam.RequestInput{PolicyID: "drop", Reason: "INC-7", Duration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client(t, reps[1].addr, "token-bob-000000000").Approve(ctx, r.ID, "one"); err != nil {
		t.Fatal(err)
	}
	if r, err = client(t, reps[0].addr, "token-carol-0000000").Approve(ctx, r.ID, "two"); err != nil || r.State != pam.Approved {
		t.Fatalf("second approval: %+v, %v", r, err)
	}
	if res, err := client(t, reps[1].addr, "token-alice-0000000").Check(ctx, pam.Op{Task: "Drop-Table"}); err != nil || !res.Allowed {
		t.Fatalf("check on the other replica: %+v, %v", res, err)
	}

	store, err := postgres.Open(ctx, dsn, &postgres.Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var heads [2]int // the trail's length when each replica had stopped
	for i, rep := range reps {
		// A request in flight: headers and half its body sent before
		// SIGTERM, the rest after. It completes; new connections are
		// refused.
		body := fmt.Sprintf(`{"policy_id":"drop","reason":"in flight %d","duration":"1h"}`, i)
		conn, err := net.Dial("tcp", rep.addr)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		// A first request on the connection: the server has accepted it.
		fmt.Fprintf(conn, "GET /api/v1/me HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer token-alice-0000000\r\n\r\n", rep.addr)
		if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("replica %d: GET /api/v1/me: %v", i, err)
		} else {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		fmt.Fprintf(conn, "POST /api/v1/requests HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer token-alice-0000000\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
			rep.addr, len(body), body[:10])
		// The server, blocked reading the connection, reads the headers
		// and marks the connection active: Shutdown then waits for it.
		time.Sleep(100 * time.Millisecond)
		if err := rep.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool {
			c, err := net.Dial("tcp", rep.addr)
			if err == nil {
				c.Close()
			}
			return err != nil
		})
		io.WriteString(conn, body[10:])
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("replica %d: the request in flight: %v\n%s", i, err, rep.out)
		}
		resp.Body.Close()
		conn.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Errorf("replica %d: the request in flight got %s", i, resp.Status)
		}
		if err := rep.cmd.Wait(); err != nil {
			t.Fatalf("replica %d exited: %v\n%s", i, err, rep.out)
		}
		t.Logf("replica %d:\n%s", i, rep.out)
		events, err := store.Events(ctx, pam.EventFilter{})
		if err != nil {
			t.Fatal(err)
		}
		heads[i] = len(events)
	}

	// The trail in the database, and each replica's audit file: the
	// whole trail as it was when the replica stopped, in order, chained.
	res, err := pam.Verify(ctx, store, pam.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	trail, err := store.Events(ctx, pam.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the trail: %d events, verified", res.Events)
	for i, rep := range reps {
		events, err := sinks.ReadFile(rep.audit)
		if err != nil {
			t.Fatal(err)
		}
		if len(events) != heads[i] {
			t.Errorf("replica %d's audit file holds %d events; the trail held %d when it stopped", i, len(events), heads[i])
			continue
		}
		t.Logf("replica %d's audit file: %d events, the trail up to its stop", i, len(events))
		for k := range events {
			if events[k].Seq != trail[k].Seq || events[k].Hash != trail[k].Hash {
				t.Errorf("replica %d's event %d: seq %d hash %s; the trail's %d %s", i, k, events[k].Seq, events[k].Hash, trail[k].Seq, trail[k].Hash)
				break
			}
		}
	}
	var types []string
	for _, e := range trail {
		types = append(types, string(e.Type))
	}
	t.Logf("event types: %s", strings.Join(types, " "))
	if n := strings.Count(strings.Join(types, " "), string(pam.EventRequestSubmitted)); n != 3 {
		t.Errorf("%d submissions in the trail, want 3 (one, and one in flight per replica)", n)
	}
}

func client(t *testing.T, addr, token string) *pamhttp.Client {
	t.Helper()
	c, err := pamhttp.NewClient("http://"+addr, &pamhttp.ClientOptions{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitListening returns the address pamd printed.
func waitListening(t *testing.T, out *fakes.SyncBuffer) string {
	t.Helper()
	var addr string
	waitFor(t, func() bool {
		for _, line := range strings.Split(out.String(), "\n") {
			if a, ok := strings.CutPrefix(line, "listening on "); ok {
				addr = a
				return true
			}
		}
		return false
	})
	return addr
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}

func freshSchema(t *testing.T, dsn string) string {
	b := make([]byte, 6)
	rand.Read(b)
	schema := "pamdtest_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			return
		}
		defer conn.Close(context.Background())
		conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	})
	return schema
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestServeOIDC: with auth.oidc the approver page's sign-in is under
// /auth/ and a signed-out visitor of the page is sent there, then to the
// provider (a real one, in process).
func TestServeOIDC(t *testing.T) {
	appAddr := freeAddr(t)
	op := httptest.NewUnstartedServer(nil)
	issuer := "http://" + op.Listener.Addr().String()
	clients := map[string]*storage.Client{"pam": storage.WebClient("pam", "s3cret", "http://"+appAddr+"/auth/callback")}
	op.Config.Handler = exampleop.SetupServer(issuer, storage.NewStorageWithClients(storage.NewUserStore(issuer), clients),
		slog.New(slog.NewTextHandler(io.Discard, nil)), false)
	op.Start()
	defer op.Close()
	dir := t.TempDir()
	path := writeConfig(t, dir, strings.Replace(baseConfig, "listen: 127.0.0.1:0", "listen: "+appAddr, 1)+fmt.Sprintf(`store: {sqlite: %s}
base_url: http://%s
auth:
  tokens_file: %s
  oidc: {issuer: %s, client_id: pam, client_secret: {env: OIDC_SECRET}, session_key: {env: OIDC_KEY}}
`, filepath.Join(dir, "pam.db"), appAddr, filepath.Join(dir, "tokens"), issuer))
	path2 := filepath.Join(dir, "pamd2.yaml")
	b, _ := os.ReadFile(path)
	os.WriteFile(path2, bytes.Replace(b, []byte("auth:\n  tokens_file: "+filepath.Join(dir, "tokens")+"\n"), nil, 1), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	out := &fakes.SyncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"-config", path2}, env(map[string]string{"OIDC_SECRET": "s3cret", "OIDC_KEY": base64.StdEncoding.EncodeToString(make([]byte, 32))}), out, out)
	}()
	addr := waitListening(t, out)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get("http://" + addr + "/requests/req_1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/auth/login?next="+url.QueryEscape("/requests/req_1") {
		t.Fatalf("signed out: %s %s", resp.Status, resp.Header.Get("Location"))
	}
	resp, err = c.Get("http://" + addr + resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), issuer+"/auth?") ||
		!strings.Contains(resp.Header.Get("Location"), "code_challenge_method=S256") {
		t.Errorf("the sign-in: %s %s", resp.Status, resp.Header.Get("Location"))
	}
	if st, _ := get(t, addr, "/api/v1/me"); st != http.StatusUnauthorized {
		t.Errorf("the API signed out: %d", st)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("pamd exited %d:\n%s", code, out)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
