package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/pamhttp"
	"github.com/zerostanding/pam/store/memory"
)

var update = flag.Bool("update", false, "rewrite testdata/help/*.golden from pamctl's help")

// secretEnv is an environment full of secrets, none of which any help or
// error message may print.
func secretEnv(name string) string {
	return map[string]string{
		"PAM_TOKEN":    "s3cr3t-token",
		"PAM_URL":      "https://u:s3cr3t-url@pam.example.com/pam",
		"PAM_POSTGRES": "postgres://u:s3cr3t-dsn@db.example.com/pam",
		"PAM_SQLITE":   "/var/lib/s3cr3t/pam.db",
	}[name]
}

// helpPaths are the command paths of every command: the root, each noun,
// each command, and the help topics.
func helpPaths() [][]string {
	paths := [][]string{{}, {"exit-codes"}, {"completion"}}
	seen := map[string]bool{}
	for _, c := range commands {
		if c.verb != "" && !seen[c.noun] {
			seen[c.noun] = true
			paths = append(paths, []string{c.noun})
		}
		paths = append(paths, strings.Fields(c.name()))
	}
	return paths
}

// TestHelpGolden: the help of every command is what testdata/help holds
// (go test -run TestHelpGolden -update rewrites it), shows GNU-style
// flags, and prints none of the secrets in the environment.
func TestHelpGolden(t *testing.T) {
	for _, path := range helpPaths() {
		name := strings.Join(append([]string{"pamctl"}, path...), "_")
		t.Run(name, func(t *testing.T) {
			out, errOut := pamctlRun(t, secretEnv, exitOK, append(path, "--help")...)
			if errOut != "" {
				t.Errorf("stderr: %s", errOut)
			}
			if strings.Contains(out, "s3cr3t") {
				t.Errorf("help prints a secret of the environment:\n%s", out)
			}
			if name != "pamctl_exit-codes" && !strings.Contains(out, "  -h, --help") || strings.Contains(out, "\n  -url") {
				t.Errorf("help without double-dash flags:\n%s", out)
			}
			golden := filepath.Join("testdata", "help", name+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestHelpGolden -update)", err)
			}
			if out != string(want) {
				t.Errorf("help differs from %s (go test -run TestHelpGolden -update rewrites it):\ngot:\n%s\nwant:\n%s", golden, out, want)
			}
		})
	}
	// help TOPIC prints the same, and the exit codes are in the root's.
	out, _ := pamctlRun(t, secretEnv, exitOK, "help", "exit-codes")
	root, _ := pamctlRun(t, secretEnv, exitOK, "--help")
	for _, e := range exitCodes {
		line := strconv.Itoa(e.code) + "  "
		if !strings.Contains(out, line) || !strings.Contains(root, line) || !strings.Contains(root, e.meaning) {
			t.Errorf("exit code %d (%s) is not in the help", e.code, e.meaning)
		}
	}
}

// TestNoSecretInErrors: usage errors and failures print no secret of
// the environment either.
func TestNoSecretInErrors(t *testing.T) {
	for _, args := range [][]string{
		{"request", "list", "--no-such-flag"},
		{"request", "frob"},
		{"frob"},
		{"request", "list", "--state", "bogus"},
		{"request", "list"}, // --url and --sqlite and --postgres: usage
	} {
		var out, errOut strings.Builder
		run(context.Background(), args, &out, &errOut, secretEnv)
		if strings.Contains(out.String()+errOut.String(), "s3cr3t") {
			t.Errorf("pamctl %v prints a secret:\n%s%s", args, out.String(), errOut.String())
		}
	}
	// Unreachable, with a password in the URL: the message names the
	// server without it.
	addr := closedAddr(t)
	env := func(k string) string {
		switch k {
		case "PAM_URL":
			return "http://u:s3cr3t@" + addr + "/pam"
		case "PAM_TOKEN":
			return secretEnv(k)
		}
		return ""
	}
	var out, errOut strings.Builder
	run(context.Background(), []string{"request", "list", "--url", "ftp://u:s3cr3t@pam.example.com"}, &out, &errOut, env)
	if !strings.Contains(errOut.String(), "--url (or $PAM_URL) is not an http or https URL") || strings.Contains(errOut.String(), "s3cr3t") {
		t.Errorf("a URL that is not http:\n%s", errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if got := run(context.Background(), []string{"request", "list"}, &out, &errOut, env); got != exitUnreachable || strings.Contains(errOut.String(), "s3cr3t") {
		t.Errorf("exit %d:\n%s", got, errOut.String())
	}
}

func TestVersion(t *testing.T) {
	out, _ := pamctlRun(t, secretEnv, exitOK, "--version")
	if !strings.HasPrefix(out, "pamctl ") {
		t.Errorf("--version: %q", out)
	}
	for _, c := range []struct {
		bi   debug.BuildInfo
		want string
	}{
		{debug.BuildInfo{}, "(devel)"},
		{debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}}}, "(devel) (revision abc123)"},
		{debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}, Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"}}}, "v1.4.0 (revision abc123, modified)"},
		{debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, "v1.4.0"},
	} {
		if got := versionOf(&c.bi); got != c.want {
			t.Errorf("versionOf(%+v) = %q, want %q", c.bi, got, c.want)
		}
	}
}

// TestCompletion: the scripts for bash, zsh and fish, and what they ask
// pamctl for: the commands, and the values of enum flags.
func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		out, _ := pamctlRun(t, secretEnv, exitOK, "completion", shell)
		if len(out) < 500 || !strings.Contains(out, "pamctl") || !strings.Contains(out, "__complete") {
			t.Errorf("completion %s:\n%.300s", shell, out)
		}
	}
	complete := func(args ...string) []string {
		t.Helper()
		out, _ := pamctlRun(t, secretEnv, exitOK, append([]string{cobra.ShellCompRequestCmd}, args...)...)
		var words []string
		for _, l := range strings.Split(out, "\n") {
			if l != "" && !strings.HasPrefix(l, ":") {
				words = append(words, strings.Fields(l)[0])
			}
		}
		return words
	}
	for _, want := range []string{"request", "grant", "audit", "policy"} {
		if got := complete(""); !slices.Contains(got, want) {
			t.Errorf("the commands completed: %v, want %s among them", got, want)
		}
	}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"request", "list", "--state", ""}, requestStates},
		{[]string{"grant", "list", "--state", ""}, grantStates},
		{[]string{"review", "list", "--state", ""}, reviewStates},
		{[]string{"audit", "search", "--type", "request."}, []string{"request.approved", "request.revoked"}},
		{[]string{"policy", "new", "--approval", ""}, approvals},
	} {
		got := complete(c.args...)
		for _, w := range c.want {
			if !slices.Contains(got, w) {
				t.Errorf("complete %v: %v, want %s among them", c.args, got, w)
			}
		}
	}
}

// TestEnumFlags: a value an enum flag does not take is invalid input,
// exit code 8, with a sentence that lists the values it takes.
func TestEnumFlags(t *testing.T) {
	db := filepath.Join(t.TempDir(), "pam.db")
	direct := direct(t, db, "root")
	for _, c := range []struct {
		args    []string
		allowed []string
	}{
		{[]string{"request", "list", "--state", "bogus"}, requestStates},
		{[]string{"request", "list", "--state", "pending", "--state", "Approved"}, requestStates},
		{[]string{"grant", "list", "--state", "pending"}, grantStates},
		{[]string{"review", "list", "--state", "bogus"}, reviewStates},
		{[]string{"audit", "search", "--type", "bogus.type"}, eventTypes},
		{[]string{"audit", "search", "--outcome", "fine"}, outcomes},
		{[]string{"policy", "new", "--id", "x", "--task", "X", "--approval", "sometimes"}, approvals},
	} {
		_, errOut := direct(exitInvalid, c.args...)
		if !strings.HasPrefix(errOut, "pamctl: --") || !strings.Contains(errOut, "is not one of the values it takes: "+strings.Join(c.allowed, ", ")+".\n") {
			t.Errorf("pamctl %v:\n%s", c.args, errOut)
		}
	}
	// The engine defines the values: every event type and outcome it
	// declares is one the flags take.
	types, outs := declared(t, "EventType"), declared(t, "Outcome")
	outs = slices.DeleteFunc(outs, func(s string) bool { return s == string(pam.OutcomeUncovered) }) // never recorded
	for _, c := range []struct{ declared, flag []string }{{types, eventTypes}, {outs, outcomes}} {
		slices.Sort(c.declared)
		if got := slices.Sorted(slices.Values(c.flag)); !slices.Equal(got, c.declared) {
			t.Errorf("the flag takes %v, the engine declares %v", got, c.declared)
		}
	}
}

// declared returns the values of the constants of type typ that the
// root package declares with a string literal, or, like OutcomeApprove,
// by converting another constant of the package.
func declared(t *testing.T, typ string) []string {
	t.Helper()
	files, err := filepath.Glob("../../*.go")
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]string{}
	var conv [][2]string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(token.NewFileSet(), f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok || len(vs.Values) != 1 {
				return true
			}
			id, ok := vs.Type.(*ast.Ident)
			if !ok {
				return true
			}
			switch v := vs.Values[0].(type) {
			case *ast.BasicLit:
				if s, err := strconv.Unquote(v.Value); err == nil {
					values[vs.Names[0].Name] = s
					if id.Name == typ {
						conv = append(conv, [2]string{vs.Names[0].Name, vs.Names[0].Name})
					}
				}
			case *ast.CallExpr:
				if arg, ok := v.Args[0].(*ast.Ident); ok && id.Name == typ {
					conv = append(conv, [2]string{vs.Names[0].Name, arg.Name})
				}
			}
			return true
		})
	}
	var out []string
	for _, c := range conv {
		if v, ok := values[c[1]]; ok {
			out = append(out, v)
		} else {
			t.Fatalf("%s = %s(%s): no value found", c[0], typ, c[1])
		}
	}
	if len(out) == 0 {
		t.Fatalf("no constants of type %s found", typ)
	}
	return out
}

func TestPastTime(t *testing.T) {
	now := time.Date(2026, 11, 28, 9, 30, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Time
	}{
		{"", time.Time{}},
		{"24h", now.Add(-24 * time.Hour)},
		{"90m", now.Add(-90 * time.Minute)},
		{"0s", now},
		{"7d", now.AddDate(0, 0, -7)},
		{"0d", now},
		{"2026-11-01", time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)},
		{"2026-11-01T09:00:00+02:00", time.Date(2026, 11, 1, 7, 0, 0, 0, time.UTC)},
	} {
		got, err := pastTime("--since", c.in, now)
		if err != nil || !got.Equal(c.want) {
			t.Errorf("pastTime(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"yesterday", "-24h", "-1d", "7days", "d", "2026-13-01", "1.5d", "2026-11-01 09:00"} {
		if _, err := pastTime("--since", bad, now); !errors.Is(err, pam.ErrInvalid) || !strings.Contains(err.Error(), `--since "`+bad+`" is not a time`) {
			t.Errorf("pastTime(%q): %v, want ErrInvalid with a sentence", bad, err)
		}
	}
	db := filepath.Join(t.TempDir(), "pam.db")
	direct := direct(t, db, "root")
	direct(exitOK, "policy", "new", "--id", "move", "--task", "New-MoveRequest", "--group", "approvers")
	for _, since := range []string{"24h", "7d", "2000-01-01", "2000-01-01T00:00:00Z"} {
		if out, _ := direct(exitOK, "audit", "search", "--since", since); !strings.Contains(out, "policy.created") {
			t.Errorf("audit search --since %s:\n%s", since, out)
		}
	}
	if out, _ := direct(exitOK, "audit", "search", "--until", "2000-01-01"); strings.Contains(out, "policy.created") {
		t.Errorf("audit search --until 2000-01-01:\n%s", out)
	}
	_, errOut := direct(exitInvalid, "audit", "search", "--since", "last week")
	if !strings.Contains(errOut, `pamctl: --since "last week" is not a time: give a duration back from now (30m, 24h, 7d), a date (2026-11-01, midnight UTC) or an RFC 3339 time`) {
		t.Errorf("--since last week:\n%s", errOut)
	}
}

// TestDirectMode: opening a database directly needs --as, a missing
// SQLite file needs --create, and each event records the OS user and
// host pamctl ran as.
func TestDirectMode(t *testing.T) {
	none := func(string) string { return "" }
	db := filepath.Join(t.TempDir(), "pam.db")
	_, errOut := pamctlRun(t, none, exitNotFound, "policy", "list", "--sqlite", db, "--as", "root")
	if want := "pamctl: there is no SQLite database at " + db + "; check the path, or give --create to make a new one.\n"; errOut != want {
		t.Errorf("a missing --sqlite file:\n%s\nwant:\n%s", errOut, want)
	}
	if _, err := os.Stat(db); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused --sqlite made the file: %v", err)
	}
	// Without --as, not even $USER is taken.
	user := func(k string) string {
		if k == "USER" {
			return "root"
		}
		return ""
	}
	_, errOut = pamctlRun(t, user, exitNotSignedIn, "policy", "list", "--sqlite", db, "--create")
	if !strings.Contains(errOut, "pamctl: opening the database directly, pamctl needs --as NAME, the identity to act as") {
		t.Errorf("no --as:\n%s", errOut)
	}
	pamctlRun(t, none, exitNotSignedIn, "policy", "list", "--postgres", "postgres://127.0.0.1:1/none")
	pamctlRun(t, none, exitUsage, "policy", "list", "--url", "http://127.0.0.1:1", "--create")

	// --sqlite opens the file though $PAM_URL names a server.
	pamctlRun(t, secretEnv, exitOK, "policy", "new", "--id", "move", "--task", "New-MoveRequest", "--group", "approvers", "--sqlite", db, "--create", "--as", "root")
	if _, err := os.Stat(db); err != nil {
		t.Fatalf("--create made no file: %v", err)
	}
	// Now it exists, --create is not needed.
	pamctlRun(t, none, exitOK, "request", "new", "--task", "New-MoveRequest", "--reason", "INC-1", "--sqlite", db, "--as", "alice")
	out, _ := pamctlRun(t, none, exitOK, "audit", "search", "--json", "--sqlite", db, "--as", "root")
	var events []pam.Event
	if err := json.Unmarshal([]byte(out), &events); err != nil || len(events) != 2 {
		t.Fatalf("audit search --json: %v\n%s", err, out)
	}
	host, _ := os.Hostname()
	want := origin(os.Getenv)
	for _, e := range events {
		if e.Detail["actor.os_user"] != want["os_user"] || e.Detail["actor.os_user"] == "" || e.Detail["actor.host"] != host {
			t.Errorf("%s by %s: detail %v, want actor.os_user %q and actor.host %q", e.Type, e.Actor, e.Detail, want["os_user"], host)
		}
	}
}

// server is a pamhttp server over a memory store, in process: tokens are
// "tok-" and a user name; admin is an admin, bob and carol approvers.
func server(t *testing.T) (base string, m *pam.Manager) {
	t.Helper()
	dir, err := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin"}, "approvers": {"bob", "carol"}})
	if err != nil {
		t.Fatal(err)
	}
	m, err = pam.New(memory.New(), dir, &pam.Options{AdminGroup: "pam-admins"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	h, err := pamhttp.New(m, pamhttp.Options{Authenticate: func(r *http.Request) (string, error) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer tok-")
		if !ok {
			return "", errors.New("no token")
		}
		return tok, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.StripPrefix("/pam", h))
	t.Cleanup(srv.Close)
	return srv.URL + "/pam", m
}

// as returns pamctl run against base as user (no token for "").
func as(t *testing.T, base, user string) func(want int, args ...string) (string, string) {
	env := func(k string) string {
		switch {
		case k == "PAM_URL":
			return base
		case k == "PAM_TOKEN" && user != "":
			return "tok-" + user
		}
		return ""
	}
	return func(want int, args ...string) (string, string) {
		t.Helper()
		return pamctlRun(t, env, want, args...)
	}
}

// approversMorning runs request list --reviewable, request get, request
// approve and grant list through pamctl as alice, bob and admin, however
// they reach the engine. Opened directly (not remote), whoever acts is
// an admin and an approver: whoever can open the database can write it.
func approversMorning(t *testing.T, remote bool, alice, bob, admin func(int, ...string) (string, string)) {
	t.Helper()
	admin(exitOK, "policy", "new", "--id", "move", "--task", "New-MoveRequest", "--group", "approvers", "--max-hours", "4")
	var r, other pam.Request
	out, _ := alice(exitOK, "request", "new", "--task", "New-MoveRequest", "--reason", "INC-4711: leaver", "--hours", "2", "--json")
	json.Unmarshal([]byte(out), &r)
	out, _ = alice(exitOK, "request", "new", "--task", "New-MoveRequest", "--reason", "INC-4712: another", "--json")
	json.Unmarshal([]byte(out), &other)
	if r.ID == "" || other.ID == "" {
		t.Fatalf("request new: %+v %+v", r, other)
	}

	// What waits for bob: both; for alice, whose they are: nothing.
	out, _ = bob(exitOK, "request", "list", "--reviewable")
	if !strings.Contains(out, r.ID) || !strings.Contains(out, other.ID) || cell(t, out, r.ID, "DECIDE BY") != r.PendingUntil.UTC().Format(time.RFC3339) || cell(t, out, r.ID, "ENDS") != "" {
		t.Errorf("request list --reviewable as bob:\n%s", out)
	}
	var waiting []pam.Request
	out, _ = alice(exitOK, "request", "list", "--reviewable", "--json")
	if err := json.Unmarshal([]byte(out), &waiting); err != nil || len(waiting) != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("request list --reviewable as alice: %v\n%s", err, out)
	}
	bob(exitUsage, "request", "list", "--reviewable", "--all")

	out, _ = bob(exitOK, "request", "get", r.ID)
	if !strings.Contains(out, "INC-4711: leaver") {
		t.Errorf("request get:\n%s", out)
	}
	out, _ = bob(exitOK, "request", "approve", r.ID, "--comment", "ticket checked")
	if cell(t, out, r.ID, "STATE") != "approved" || cell(t, out, r.ID, "DECIDE BY") != "" || cell(t, out, r.ID, "ENDS") == "" {
		t.Errorf("request approve:\n%s", out)
	}
	out, _ = bob(exitOK, "request", "list", "--reviewable")
	if strings.Contains(out, r.ID) || !strings.Contains(out, other.ID) {
		t.Errorf("request list --reviewable after approving:\n%s", out)
	}

	// The grants: alice's own, and everyone's for admin; the JSON is the
	// API's.
	out, _ = alice(exitOK, "grant", "list")
	if !strings.Contains(out, r.ID) || strings.Contains(out, other.ID) || cell(t, out, r.ID, "HOLDER") != "alice" || cell(t, out, r.ID, "ENDS") == "" || strings.Contains(out, "COMMENT") {
		t.Errorf("grant list as alice:\n%s", out)
	}
	if remote {
		bob(exitForbidden, "grant", "list", "--all")
	}
	var grants []pam.Request
	out, _ = admin(exitOK, "grant", "list", "--all", "--json")
	if err := json.Unmarshal([]byte(out), &grants); err != nil || len(grants) != 1 || grants[0].ID != r.ID || !strings.Contains(out, `"expires_at": "`) || !strings.Contains(out, `"requester": "alice"`) {
		t.Errorf("grant list --all --json: %v\n%s", err, out)
	}
	if out, _ := admin(exitOK, "grant", "list"); strings.Contains(out, r.ID) {
		t.Errorf("admin's own grant list holds alice's grant:\n%s", out)
	}

	// Revoked: gone from the grants in force, there with --state revoked,
	// with who revoked it and why.
	admin(exitOK, "request", "revoke", r.ID, "--comment", "incident over")
	if out, _ := admin(exitOK, "grant", "list", "--all"); strings.Contains(out, r.ID) {
		t.Errorf("a revoked grant is listed as in force:\n%s", out)
	}
	out, _ = admin(exitOK, "grant", "list", "--all", "--state", "revoked")
	if cell(t, out, r.ID, "ENDED BY") != "admin" || cell(t, out, r.ID, "COMMENT") != "incident over" || cell(t, out, r.ID, "ENDED") == "" {
		t.Errorf("grant list --state revoked:\n%s", out)
	}
	// alice sees her revoked grant, who revoked it and why: the events
	// of her own requests are hers to read.
	out, errOut := alice(exitOK, "grant", "list", "--state", "revoked")
	if cell(t, out, r.ID, "ENDED BY") != "admin" || cell(t, out, r.ID, "COMMENT") != "incident over" || errOut != "" {
		t.Errorf("grant list --state revoked as alice:\n%s%s", out, errOut)
	}
	if out, _ := admin(exitOK, "grant", "list", "--all", "--state", "expired"); strings.Contains(out, other.ID) || strings.Contains(out, r.ID) {
		t.Errorf("grant list --state expired:\n%s", out)
	}
}

func TestApproversMorningAgainstServer(t *testing.T) {
	base, _ := server(t)
	approversMorning(t, true, as(t, base, "alice"), as(t, base, "bob"), as(t, base, "admin"))
}

func TestApproversMorningDirect(t *testing.T) {
	db := filepath.Join(t.TempDir(), "pam.db")
	approversMorning(t, false, direct(t, db, "alice"), direct(t, db, "bob"), direct(t, db, "admin"))
}

// TestEveryExitCode runs pamctl into each exit code.
func TestEveryExitCode(t *testing.T) {
	base, _ := server(t)
	alice, bob, admin, nobody := as(t, base, "alice"), as(t, base, "bob"), as(t, base, "admin"), as(t, base, "")
	admin(exitOK, "policy", "new", "--id", "move", "--task", "New-MoveRequest", "--group", "approvers")
	var r pam.Request
	out, _ := alice(exitOK, "request", "new", "--task", "New-MoveRequest", "--reason", "INC-1", "--json")
	json.Unmarshal([]byte(out), &r)
	bob(exitOK, "request", "approve", r.ID)

	seen := map[int]bool{}
	check := func(code int, what string, f func(int, ...string) (string, string), args ...string) string {
		t.Helper()
		seen[code] = true
		_, errOut := f(code, args...)
		return errOut
	}
	check(exitOK, "done", alice, "grant", "list")
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusBadGateway) }))
	defer broken.Close()
	check(exitError, "a server's failure", as(t, broken.URL, "alice"), "request", "list")
	check(exitUsage, "an unknown flag", alice, "request", "list", "--bogus")
	check(exitForbidden, "not an admin", alice, "audit", "search")
	check(exitNotFound, "no such request", alice, "request", "get", "req_nonexistent")
	check(exitConflict, "decided already", bob, "request", "approve", r.ID)
	check(exitNotAllowed, "check, not allowed", bob, "check", "New-MoveRequest")
	check(exitInvalid, "a bad --state", alice, "request", "list", "--state", "bogus")
	if errOut := check(exitNotSignedIn, "no token", nobody, "request", "list"); errOut != "pamctl: not signed in to the PAM server at "+base+": no token was given. Set --token or $PAM_TOKEN.\n" {
		t.Errorf("no token:\n%s", errOut)
	}
	if errOut := check(exitNotSignedIn, "a token that is no one's", as(t, base, ""), "request", "list", "--token", "bogus"); !strings.HasPrefix(errOut, "pamctl: the PAM server at "+base+" did not take the token (") {
		t.Errorf("a bad token:\n%s", errOut)
	}
	addr := closedAddr(t)
	errOut := check(exitUnreachable, "no server", as(t, "http://"+addr+"/pam", "alice"), "request", "list")
	if want := "pamctl: cannot reach the PAM server at http://" + addr + "/pam: connection refused. Is it running? Set --url or $PAM_URL.\n"; errOut != want {
		t.Errorf("unreachable:\n%s\nwant:\n%s", errOut, want)
	}
	// The audit trail, rewritten: opened directly, it does not verify.
	db := filepath.Join(t.TempDir(), "pam.db")
	root := direct(t, db, "root")
	root(exitOK, "policy", "new", "--id", "move", "--task", "New-MoveRequest", "--group", "approvers")
	root(exitOK, "policy", "set", "move", "--max-hours", "2")
	tamper(t, db)
	check(exitTampered, "a rewritten trail", root, "audit", "verify")

	for _, e := range exitCodes {
		if !seen[e.code] {
			t.Errorf("exit code %d (%s) is not tested", e.code, e.meaning)
		}
	}
}

// closedAddr is a local address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// tamper rewrites the actor of the first event of the trail in db, as
// someone with write access to the file could.
func tamper(t *testing.T, db string) {
	t.Helper()
	sqlDB, err := sql.Open("sqlite", "file:"+db+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer sqlDB.Close()
	if _, err := sqlDB.Exec(`UPDATE pam_events SET actor = 'mallory' WHERE seq = 1`); err != nil {
		t.Fatal(err)
	}
}
