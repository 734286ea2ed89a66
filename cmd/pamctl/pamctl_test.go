package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/pamhttp"
)

// startServer builds and starts examples/server, and returns its base URL.
func startServer(t *testing.T) (base, db string) {
	t.Helper()
	dir := t.TempDir()
	bin, db := filepath.Join(dir, "server"), filepath.Join(dir, "pam.db")
	if out, err := exec.Command("go", "build", "-o", bin, "../../examples/server").CombinedOutput(); err != nil {
		t.Fatalf("build examples/server: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-db", db)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		if rest, ok := strings.CutPrefix(lines.Text(), "listening on "); ok {
			return strings.Fields(rest)[0], db
		}
	}
	t.Fatal("the server did not say where it listens")
	return "", ""
}

// TestAgainstLiveServer runs pamctl against a running examples/server.
func TestAgainstLiveServer(t *testing.T) {
	base, db := startServer(t)
	pamctl := func(user string, want int, args ...string) string {
		t.Helper()
		var out, errOut strings.Builder
		env := func(k string) string {
			switch k {
			case "PAM_URL":
				return base + "/pam"
			case "PAM_TOKEN":
				return "demo-" + user
			}
			return ""
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if got := run(ctx, args, &out, &errOut, env); got != want {
			t.Fatalf("pamctl %s as %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), user, got, want, out.String(), errOut.String())
		}
		return out.String()
	}

	var r pam.Request
	out := pamctl("alice", exitOK, "request", "new", "--task", "New-MoveRequest", "--reason", "INC-1: leaver", "--hours", "2", "--json")
	json.Unmarshal([]byte(out), &r)
	if r.State != pam.Pending || r.Duration != 2*time.Hour || r.Requester != "alice" || !strings.Contains(out, `"duration": "2h0m0s"`) {
		t.Fatalf("request new: %+v\n%s", r, out)
	}
	var mine []pam.Request
	if err := json.Unmarshal([]byte(pamctl("alice", exitOK, "request", "list", "--json")), &mine); err != nil || len(mine) != 1 || mine[0].ID != r.ID {
		t.Errorf("request list --json: %v %+v", err, mine)
	}
	pamctl("alice", exitNotAllowed, "check", "New-MoveRequest", "--param", "identity=x")
	pamctl("alice", exitForbidden, "request", "approve", r.ID)
	pamctl("bob", exitForbidden, "request", "list", "--all")
	pamctl("alice", exitInvalid, "request", "new", "--task", "New-MoveRequest", "--reason", "r", "--hours", "48")
	pamctl("alice", exitNotFound, "request", "get", "req_nonexistent")
	if out := pamctl("bob", exitOK, "request", "approve", r.ID, "--comment", "ticket checked"); !strings.Contains(out, "approved") || !strings.Contains(out, "STATE") {
		t.Errorf("approve output:\n%s", out)
	}
	pamctl("carol", exitConflict, "request", "approve", r.ID)
	if out := pamctl("alice", exitOK, "check", "New-MoveRequest"); !strings.Contains(out, "granted") {
		t.Errorf("check after approval:\n%s", out)
	}
	// alice runs the operation through the server's Guard; its start and
	// end share a run ID, which audit search finds them by.
	op, _ := http.NewRequest("POST", base+"/ops/New-MoveRequest", strings.NewReader("arg=mbx-1"))
	op.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	op.Header.Set("Authorization", "Bearer demo-alice")
	if resp, err := http.DefaultClient.Do(op); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /ops/New-MoveRequest: %v, %v", resp, err)
	}
	var starts, runEvents []pam.Event
	json.Unmarshal([]byte(pamctl("admin", exitOK, "audit", "search", "--type", "guard.allowed", "--desc", "--limit", "1", "--json")), &starts)
	if len(starts) != 1 || starts[0].Run == "" {
		t.Fatalf("the run's start: %+v", starts)
	}
	// The end is recorded within milliseconds of the reply.
	for deadline := time.Now().Add(5 * time.Second); len(runEvents) < 2 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		json.Unmarshal([]byte(pamctl("admin", exitOK, "audit", "search", "--run", starts[0].Run, "--json")), &runEvents)
	}
	if len(runEvents) != 2 || runEvents[0].Type != pam.EventGuardAllowed || runEvents[1].Type != pam.EventGuardFinished || runEvents[1].Outcome != pam.OutcomeOK {
		t.Errorf("audit search --run: %+v", runEvents)
	}
	if out := pamctl("alice", exitOK, "request", "get", r.ID); !strings.Contains(out, "bob approve") || !strings.Contains(out, "ticket checked") {
		t.Errorf("request get:\n%s", out)
	}
	if out := pamctl("alice", exitOK, "request", "list"); !strings.Contains(out, r.ID) {
		t.Errorf("request list:\n%s", out)
	}

	pamctl("alice", exitForbidden, "policy", "new", "--id", "x", "--task", "X", "--group", "approvers")
	pamctl("admin", exitOK, "policy", "new", "--id", "x", "--task", "X", "--group", "approvers:2", "--max-hours", "1", "--default-hours", "1")
	var p pam.Policy
	json.Unmarshal([]byte(pamctl("admin", exitOK, "policy", "set", "x", "--max-hours", "2", "--json")), &p)
	if p.Version != 2 || p.MaxDuration != 2*time.Hour || p.ApproverGroups[0].MinApprovals != 2 {
		t.Errorf("policy set: %+v", p)
	}
	if out := pamctl("admin", exitOK, "policy", "list"); !strings.Contains(out, "task:X") || !strings.Contains(out, "approvers:2") {
		t.Errorf("policy list:\n%s", out)
	}
	pamctl("admin", exitOK, "policy", "remove", "x")
	pamctl("admin", exitNotFound, "policy", "get", "x")
	// Only approvers may request under y: alice is told she cannot.
	if out := pamctl("admin", exitOK, "policy", "new", "--id", "y", "--task", "Y", "--group", "approvers", "--requester-group", "approvers"); !strings.Contains(out, "REQUESTERS") {
		t.Errorf("policy new --requester-group:\n%s", out)
	}
	pamctl("alice", exitForbidden, "request", "new", "--task", "Y", "--reason", "r")
	if out := pamctl("alice", exitNotAllowed, "check", "Y"); !strings.Contains(out, "alice may not request under this policy: only members of approvers may request under it") {
		t.Errorf("check as a non-member:\n%s", out)
	}
	pamctl("bob", exitOK, "request", "new", "--task", "Y", "--reason", "r")
	pamctl("admin", exitOK, "policy", "set", "y", "--requester-group", "")
	pamctl("alice", exitOK, "request", "new", "--task", "Y", "--reason", "r")

	var events []pam.Event
	json.Unmarshal([]byte(pamctl("admin", exitOK, "audit", "search", "--request", r.ID, "--json")), &events)
	if len(events) < 3 || events[0].Type != pam.EventRequestSubmitted {
		t.Errorf("audit search: %+v", events)
	}
	pamctl("alice", exitForbidden, "audit", "search")
	if out := pamctl("admin", exitOK, "audit", "verify"); !strings.Contains(out, "the trail verifies") {
		t.Errorf("audit verify:\n%s", out)
	}
	pamctl("bob", exitForbidden, "request", "end", r.ID)         // only its holder ends a grant
	pamctl("nobody", exitNotSignedIn, "request", "revoke", r.ID) // a token that is no user's
	pamctl("admin", exitOK, "request", "revoke", r.ID, "--comment", "done")
	pamctl("alice", exitNotAllowed, "check", "New-MoveRequest")
	// The server's own database, opened directly while it runs.
	direct := func(want int, args ...string) string {
		t.Helper()
		var out, errOut strings.Builder
		if got := run(context.Background(), append(args, "--sqlite", db, "--as", "auditor"), &out, &errOut, func(string) string { return "" }); got != want {
			t.Fatalf("direct %v on the live database: exit %d, want %d\n%s%s", args, got, want, out.String(), errOut.String())
		}
		return out.String()
	}
	direct(exitOK, "audit", "verify")
	// Someone with write access to the database rewrites the first event
	// (the SQLite store's table, as its tamper test does): both ways,
	// verify says where, with exit code 7.
	sqlDB, err := sql.Open("sqlite", "file:"+db+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer sqlDB.Close()
	if _, err := sqlDB.Exec(`UPDATE pam_events SET actor = 'mallory' WHERE seq = 1`); err != nil {
		t.Fatal(err)
	}
	if out := pamctl("admin", exitTampered, "audit", "verify"); !strings.Contains(out, "the trail does NOT verify at event 1: altered") {
		t.Errorf("remote verify of a rewritten trail:\n%s", out)
	}
	var a pamhttp.VerifyAnswer
	json.Unmarshal([]byte(pamctl("admin", exitTampered, "audit", "verify", "--json")), &a)
	if a.OK || a.Failure == nil || a.Failure.Seq != 1 || a.Failure.Reason != pam.ReasonAltered {
		t.Errorf("remote verify --json: %+v", a)
	}
	if out := direct(exitTampered, "audit", "verify"); !strings.Contains(out, "the trail does NOT verify at event 1: altered") {
		t.Errorf("direct verify of a rewritten trail:\n%s", out)
	}
	// A detail that does not decode strictly is tampering too, not an
	// error of the server, and the trail can still be searched.
	if _, err := sqlDB.Exec(`UPDATE pam_events SET detail = '{"a":"x","a":"y"}' WHERE seq = 1`); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{pamctl("admin", exitTampered, "audit", "verify"), direct(exitTampered, "audit", "verify")} {
		if !strings.Contains(out, "the trail does NOT verify at event 1: malformed") || !strings.Contains(out, `key "a" twice`) {
			t.Errorf("verify of a malformed trail:\n%s", out)
		}
	}
	events = nil
	json.Unmarshal([]byte(pamctl("admin", exitOK, "audit", "search", "--json")), &events)
	if len(events) == 0 || events[0].Seq != 1 || events[0].Malformed == "" {
		t.Errorf("audit search of a malformed trail: %+v", events)
	}
}

func TestUsageAndDirectDatabase(t *testing.T) {
	none := func(string) string { return "" }
	var out, errOut strings.Builder
	for _, args := range [][]string{{}, {"request"}, {"request", "frob"}, {"request", "new", "--reason", "r", "--url", "http://x"}, {"request", "list"}} {
		out.Reset()
		errOut.Reset()
		if got := run(context.Background(), args, &out, &errOut, none); got != exitUsage {
			t.Errorf("pamctl %v: exit %d, want %d (usage)\n%s", args, got, exitUsage, errOut.String())
		}
	}
	// No help or usage message prints what the environment holds: a
	// token, or a URL or DSN with a password, would land in logs.
	secrets := func(name string) string {
		return map[string]string{"PAM_TOKEN": "s3cr3t-token", "PAM_URL": "https://u:s3cr3t-url@pam.example.com", "PAM_POSTGRES": "postgres://u:s3cr3t-dsn@db/pam"}[name]
	}
	for _, c := range commands {
		for _, args := range [][]string{{"--help"}, {"--no-such-flag"}} {
			out.Reset()
			errOut.Reset()
			got := run(context.Background(), append(strings.Fields(c.name()), args...), &out, &errOut, secrets)
			if args[0] == "--help" && (got != exitOK || !strings.Contains(out.String(), "Examples:\n  pamctl ")) {
				t.Errorf("%s --help: exit %d\n%s", c.name(), got, out.String())
			}
			if strings.Contains(out.String()+errOut.String(), "s3cr3t") {
				t.Errorf("%s %v prints a secret of the environment:\n%s", c.name(), args, errOut.String())
			}
		}
	}
	// Directly on a SQLite file, acting as someone.
	db := filepath.Join(t.TempDir(), "pam.db")
	direct := func(want int, args ...string) string {
		t.Helper()
		out.Reset()
		errOut.Reset()
		if got := run(context.Background(), append(args, "--sqlite", db, "--create", "--as", "root"), &out, &errOut, none); got != want {
			t.Fatalf("pamctl %v: exit %d, want %d\n%s%s", args, got, want, out.String(), errOut.String())
		}
		return out.String()
	}
	direct(exitOK, "policy", "new", "--id", "move", "--task", "New-MoveRequest", "--group", "approvers")
	direct(exitOK, "request", "new", "--task", "New-MoveRequest", "--reason", "r")
	if s := direct(exitOK, "audit", "verify"); !strings.Contains(s, "the trail verifies: events 1..2") {
		t.Errorf("verify: %s", s)
	}
	// Each command has its own flags.
	direct(exitUsage, "policy", "list", "--state", "pending")
	direct(exitUsage, "request", "approve", "x", "--max-hours", "2")
	// A policy file, durations as Go durations (or nanoseconds, as before).
	file := filepath.Join(t.TempDir(), "drop.json")
	os.WriteFile(file, []byte(`{"id":"drop","scope":{"kind":"task","name":"Drop-Table"},"approver_groups":[{"group":"dba"}],"max_duration":"2h","default_duration":1800000000000}`), 0o600)
	var p pam.Policy
	js := direct(exitOK, "policy", "new", "--file", file, "--json")
	if err := json.Unmarshal([]byte(js), &p); err != nil || p.MaxDuration != 2*time.Hour || p.DefaultDuration != 30*time.Minute || p.Approval != pam.Manual ||
		!strings.Contains(js, `"max_duration": "2h0m0s"`) {
		t.Errorf("policy new --file: %v %+v\n%s", err, p, js)
	}
	var withGroups pam.Policy
	json.Unmarshal([]byte(direct(exitOK, "policy", "set", "drop", "--requester-group", "dba", "--requester-group", "sre", "--json")), &withGroups)
	if strings.Join(withGroups.RequesterGroups, ",") != "dba,sre" {
		t.Errorf("policy set --requester-group: %+v", withGroups)
	}
	if s := direct(exitOK, "policy", "get", "drop"); !strings.Contains(s, "dba,sre") {
		t.Errorf("policy get shows no requester groups:\n%s", s)
	}
	direct(exitInvalid, "policy", "set", "drop", "--requester-group", "dba", "--requester-group", "dba")
	var cleared pam.Policy
	json.Unmarshal([]byte(direct(exitOK, "policy", "set", "drop", "--requester-group", "", "--json")), &cleared)
	if cleared.Version == 0 || cleared.RequesterGroups != nil {
		t.Errorf(`policy set --requester-group "": %+v`, cleared)
	}
	os.WriteFile(file, []byte(`{"max_duration":"soon"}`), 0o600)
	direct(exitInvalid, "policy", "set", "drop", "--file", file)
	// Acting as someone else: root's request, approved by bob, is
	// root's grant; the list is root's own.
	var r pam.Request
	json.Unmarshal([]byte(direct(exitOK, "request", "new", "--policy", "drop", "--reason", "CHG-1", "--hours", "1.5", "--json")), &r)
	if r.Duration != 90*time.Minute || r.Requester != "root" {
		t.Fatalf("request new: %+v", r)
	}
	direct(exitForbidden, "request", "approve", r.ID)
	asBob := func(want int, args ...string) {
		t.Helper()
		out.Reset()
		errOut.Reset()
		if got := run(context.Background(), append(args, "--sqlite", db, "--as", "Bob"), &out, &errOut, none); got != want {
			t.Fatalf("pamctl %v as bob: exit %d, want %d\n%s%s", args, got, want, out.String(), errOut.String())
		}
	}
	asBob(exitOK, "request", "approve", r.ID, "--comment", "ok")
	asBob(exitOK, "request", "list")
	if strings.Contains(out.String(), r.ID) {
		t.Errorf("bob's list holds root's request:\n%s", out.String())
	}
	direct(exitNotAllowed, "check", "New-MoveRequest")
	if s := direct(exitOK, "check", "Drop-Table"); !strings.Contains(s, "granted") {
		t.Errorf("check after approval: %s", s)
	}
	if s := direct(exitOK, "request", "list", "--state", "approved"); !strings.Contains(s, r.ID) || !strings.Contains(s, "1h30m0s") {
		t.Errorf("request list: %s", s)
	}
	if s := direct(exitOK, "audit", "search", "--request", r.ID, "--type", "request.approved", "--since", "2000-01-01T00:00:00Z"); !strings.Contains(s, "request.approved") {
		t.Errorf("audit search: %s", s)
	}
	direct(exitInvalid, "audit", "search", "--since", "yesterday")
	// root asks for more time, within the policy's two hours in all, and
	// bob grants it.
	direct(exitUsage, "request", "extend", r.ID, "--reason", "more")
	asBob(exitForbidden, "request", "extend", r.ID, "--by", "10m", "--reason", "not mine")
	direct(exitInvalid, "request", "extend", r.ID, "--by", "31m", "--reason", "more")
	var ext pam.Request
	json.Unmarshal([]byte(direct(exitOK, "request", "extend", r.ID, "--by", "30m", "--reason", "the table is big", "--json")), &ext)
	if ext.Extension == nil || ext.Extension.State != pam.Pending || ext.Extension.By != 30*time.Minute || ext.Extension.Reason != "the table is big" {
		t.Fatalf("request extend: %+v", ext.Extension)
	}
	if s := direct(exitOK, "request", "list", "--state", "approved"); cell(t, s, r.ID, "EXTENSION") != "+30m0s asked" || cell(t, s, r.ID, "DECIDE BY") != "" {
		t.Errorf("request list with an extension pending: %s", s)
	}
	direct(exitConflict, "request", "extend", r.ID, "--by", "10m", "--reason", "again")
	asBob(exitOK, "request", "approve", r.ID, "--comment", "fine")
	if s := direct(exitOK, "audit", "search", "--request", r.ID, "--type", "request.extended", "--json"); !strings.Contains(s, `"expires_at": "`+ext.ExpiresAt.Add(30*time.Minute).UTC().Format(time.RFC3339Nano)+`"`) {
		t.Errorf("audit search for the extension: %s", s)
	}
	// A start ahead schedules the window; not beyond the policy's horizon.
	var sched pam.Request
	json.Unmarshal([]byte(direct(exitOK, "request", "new", "--policy", "drop", "--reason", "CHG-2", "--start", "2h", "--json")), &sched)
	if d := time.Until(sched.Start); d < time.Hour || d > 2*time.Hour {
		t.Errorf("request new --start 2h: starts %v", sched.Start)
	}
	asBob(exitOK, "request", "approve", sched.ID)
	if s := direct(exitOK, "request", "get", sched.ID); cell(t, s, sched.ID, "OPENS") != sched.Start.UTC().Format(time.RFC3339) {
		t.Errorf("request get of a scheduled grant: %s", s)
	}
	direct(exitInvalid, "request", "new", "--policy", "drop", "--reason", "CHG-3", "--start", "2100-01-01T00:00:00Z")
	direct(exitUsage, "request", "new", "--policy", "drop", "--reason", "CHG-3", "--start", "tomorrow")
	// root ends the grant early: bob, who approved it, may not.
	asBob(exitForbidden, "request", "end", r.ID)
	if s := direct(exitOK, "request", "end", r.ID, "--comment", "done early"); !strings.Contains(s, "relinquished") {
		t.Errorf("request end: %s", s)
	}
	direct(exitNotAllowed, "check", "Drop-Table")
	direct(exitConflict, "request", "end", r.ID)
	if s := direct(exitOK, "request", "list", "--state", "relinquished"); !strings.Contains(s, r.ID) {
		t.Errorf("request list --state relinquished: %s", s)
	}
	if s := direct(exitOK, "audit", "search", "--request", r.ID, "--type", "request.relinquished", "--json"); !strings.Contains(s, `"comment": "done early"`) {
		t.Errorf("audit search for the relinquishment: %s", s)
	}
	direct(exitConflict, "request", "cancel", r.ID)
	direct(exitNotFound, "request", "cancel", r.ID+"x")

	// A grant bound to a parameter and good for one run, under a policy
	// that requires the binding and caps the runs.
	var capped pam.Policy
	json.Unmarshal([]byte(direct(exitOK, "policy", "set", "drop", "--require-bind", "table", "--max-uses", "1", "--json")), &capped)
	if strings.Join(capped.RequireBind, ",") != "table" || capped.MaxUses != 1 {
		t.Errorf("policy set --require-bind --max-uses: %+v", capped)
	}
	direct(exitInvalid, "request", "new", "--policy", "drop", "--reason", "CHG-2")
	direct(exitInvalid, "request", "new", "--policy", "drop", "--reason", "CHG-2", "--bind", "table=orders", "--uses", "2")
	direct(exitUsage, "request", "new", "--policy", "drop", "--reason", "CHG-2", "--bind", "table")
	direct(exitUsage, "request", "new", "--policy", "drop", "--reason", "CHG-2", "--bind", "rows:=many")
	var bound pam.Request
	json.Unmarshal([]byte(direct(exitOK, "request", "new", "--policy", "drop", "--reason", "CHG-2", "--bind", "table=orders", "--bind", "rows:=100", "--json")), &bound)
	if bound.Bind["table"] != "orders" || bound.Bind["rows"] != 100.0 || bound.MaxUses != 1 {
		t.Fatalf("request new --bind: %+v", bound)
	}
	asBob(exitOK, "request", "approve", bound.ID)
	if s := direct(exitOK, "request", "get", bound.ID); !strings.Contains(s, `limits: bound to rows = 100, table = "orders"; 1 run (0 used)`) {
		t.Errorf("request get of a bound grant:\n%s", s)
	}
	var nudged pam.Policy
	json.Unmarshal([]byte(direct(exitOK, "policy", "set", "drop", "--remind-hours", "1", "--escalate-hours", "4", "--escalation-group", "dba-leads", "--json")), &nudged)
	if nudged.RemindAfter != time.Hour || nudged.EscalateAfter != 4*time.Hour || nudged.EscalationGroup != "dba-leads" {
		t.Errorf("policy set --remind-hours --escalate-hours --escalation-group: %+v", nudged)
	}
	direct(exitInvalid, "policy", "set", "drop", "--escalation-group", "", "--escalate-hours", "48")
	var windows pam.Policy
	json.Unmarshal([]byte(direct(exitOK, "policy", "set", "drop", "--max-start-hours", "48", "--max-extended-hours", "3", "--json")), &windows)
	if windows.MaxStartDelay != 48*time.Hour || windows.MaxExtendedDuration != 3*time.Hour {
		t.Errorf("policy set --max-start-hours --max-extended-hours: %+v", windows)
	}
	var unnudged pam.Policy
	json.Unmarshal([]byte(direct(exitOK, "policy", "set", "drop", "--remind-hours", "-1", "--escalate-hours", "-1", "--json")), &unnudged)
	if unnudged.Version == 0 || unnudged.RemindAfter != 0 || unnudged.EscalateAfter != 0 || unnudged.EscalationGroup != "" {
		t.Errorf("policy set --remind-hours -1 --escalate-hours -1: %+v", unnudged)
	}
	var cleared2 pam.Policy
	json.Unmarshal([]byte(direct(exitOK, "policy", "set", "drop", "--require-bind", "", "--max-uses", "0", "--json")), &cleared2)
	if cleared2.RequireBind != nil || cleared2.MaxUses != 0 {
		t.Errorf(`policy set --require-bind "" --max-uses 0: %+v`, cleared2)
	}
}

// TestExitCodes: one mapping, from the engine's errors and from a
// server's problems alike.
func TestExitCodes(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int
	}{
		{usagef("x"), exitUsage},
		{fmt.Errorf("x: %w", pam.ErrSelfApproval), exitForbidden},
		{&pamhttp.Problem{Status: 403, Code: "cross_origin"}, exitForbidden},
		{&pamhttp.Problem{Status: 401, Code: "no_actor"}, exitNotSignedIn},
		{&pamhttp.Problem{Status: 401, Code: "some_new_code"}, exitNotSignedIn},
		{&pamhttp.Problem{Status: 403, Code: "some_new_code"}, exitForbidden},
		{&unreachableError{url: "http://x", why: "connection refused"}, exitUnreachable},
		{failf(pam.ErrNoActor, "no --as"), exitNotSignedIn},
		{&pamhttp.Problem{Status: 404, Code: "not_found"}, exitNotFound},
		{&pamhttp.Problem{Status: 409, Code: "exists"}, exitConflict},
		{&pamhttp.Problem{Status: 413, Code: "too_large"}, exitInvalid},
		{&pamhttp.Problem{Status: 422, Code: "no_policy"}, exitInvalid},
		{&pamhttp.Problem{Status: 409, Code: "tampered"}, exitTampered},
		{&pamhttp.Problem{Status: 502, Title: "Bad Gateway"}, exitError},
		{fmt.Errorf("T is %w", errNotAllowed), exitNotAllowed},
		{errors.New("boom"), exitError},
	} {
		if got := exitCode(c.err); got != c.want {
			t.Errorf("exitCode(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

// TestBreakGlassCommands: a policy allows break-glass (policy new
// --breakglass-group), an admin breaks glass once and not twice, and an
// approver lists and confirms it (pamctl breakglass, review list,
// review confirm), against a running examples/server.
func TestBreakGlassCommands(t *testing.T) {
	base, _ := startServer(t)
	pamctl := func(user string, want int, args ...string) string {
		t.Helper()
		var out, errOut strings.Builder
		env := func(k string) string {
			switch k {
			case "PAM_URL":
				return base + "/pam"
			case "PAM_TOKEN":
				return "demo-" + user
			}
			return ""
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if got := run(ctx, args, &out, &errOut, env); got != want {
			t.Fatalf("pamctl %s as %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), user, got, want, out.String(), errOut.String())
		}
		return out.String()
	}
	pamctl("admin", exitUsage, "policy", "new", "--id", "glass", "--task", "Glass-Task", "--group", "approvers", "--review-hours", "2")
	var p pam.Policy
	json.Unmarshal([]byte(pamctl("admin", exitOK, "policy", "new", "--id", "glass", "--task", "Glass-Task", "--group", "approvers",
		"--breakglass-group", "pam-admins", "--breakglass-hours", "0.5", "--review-hours", "2", "--json")), &p)
	if p.BreakGlass == nil || p.BreakGlass.Group != "pam-admins" || p.BreakGlass.MaxDuration != 30*time.Minute || p.BreakGlass.ReviewWithin != 2*time.Hour {
		t.Fatalf("policy new --breakglass-group: %+v", p.BreakGlass)
	}
	pamctl("alice", exitForbidden, "breakglass", "--policy", "glass", "--reason", "outage")
	pamctl("admin", exitUsage, "breakglass", "--reason", "outage")
	pamctl("admin", exitInvalid, "breakglass", "--policy", "glass", "--reason", "outage", "--hours", "1")
	var r pam.Request
	json.Unmarshal([]byte(pamctl("admin", exitOK, "breakglass", "--policy", "glass", "--reason", "INC-77 outage", "--json")), &r)
	if r.State != pam.Approved || r.BreakGlass == nil || r.Duration != 30*time.Minute {
		t.Fatalf("breakglass: %+v", r)
	}
	pamctl("admin", exitConflict, "breakglass", "--policy", "glass", "--reason", "again")
	if out := pamctl("bob", exitOK, "review", "list"); !strings.Contains(out, r.ID) || !strings.Contains(out, "pending") {
		t.Errorf("review list:\n%s", out)
	}
	pamctl("admin", exitForbidden, "review", "confirm", r.ID)
	if out := pamctl("bob", exitOK, "review", "confirm", r.ID, "--comment", "INC-77 was real"); !strings.Contains(out, "confirmed") || !strings.Contains(out, "bob") {
		t.Errorf("review confirm:\n%s", out)
	}
	pamctl("carol", exitConflict, "review", "flag", r.ID)
	if out := pamctl("bob", exitOK, "review", "list"); strings.Contains(out, r.ID) {
		t.Errorf("a confirmed activation is still to review:\n%s", out)
	}
	if out := pamctl("bob", exitOK, "review", "list", "--state", "confirmed"); !strings.Contains(out, r.ID) {
		t.Errorf("review list --state confirmed:\n%s", out)
	}
	p = pam.Policy{}
	json.Unmarshal([]byte(pamctl("admin", exitOK, "policy", "set", "glass", "--breakglass-group", "", "--json")), &p)
	if p.BreakGlass != nil {
		t.Errorf("policy set --breakglass-group \"\": %+v", p.BreakGlass)
	}
}

// cell returns the cell of a table pamctl printed in the row whose
// first cell is id and the column named column: the columns are
// aligned, so each starts where its name does in the header.
func cell(t *testing.T, table, id, column string) string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
	header := lines[0]
	start := strings.Index(header, column)
	if start < 0 || start > 0 && header[start-1] != ' ' {
		t.Fatalf("no column %s in:\n%s", column, table)
	}
	end := 1 << 30 // the last column runs to the end of the line
	if rest := header[start+len(column):]; strings.TrimSpace(rest) != "" {
		end = start + len(column) + strings.Index(rest, strings.TrimLeft(rest, " "))
	}
	for _, l := range lines[1:] {
		if strings.HasPrefix(l, id+" ") {
			if len(l) <= start {
				return ""
			}
			return strings.TrimSpace(l[start:min(end, len(l))])
		}
	}
	t.Fatalf("no row %s in:\n%s", id, table)
	return ""
}
