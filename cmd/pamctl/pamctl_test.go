package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zerostanding/pam"
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
	json.Unmarshal([]byte(pamctl("alice", exitOK, "request", "new", "--task", "New-MoveRequest", "--reason", "INC-1: leaver", "--hours", "2", "--json")), &r)
	if r.State != pam.Pending || r.Duration != 2*time.Hour || r.Requester != "alice" {
		t.Fatalf("request new: %+v", r)
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

	var events []pam.Event
	json.Unmarshal([]byte(pamctl("admin", exitOK, "audit", "search", "--request", r.ID, "--json")), &events)
	if len(events) < 3 || events[0].Type != pam.EventRequestSubmitted {
		t.Errorf("audit search: %+v", events)
	}
	pamctl("alice", exitForbidden, "audit", "search")
	if out := pamctl("admin", exitOK, "audit", "verify"); !strings.Contains(out, "the trail verifies") {
		t.Errorf("audit verify:\n%s", out)
	}
	pamctl("nobody", exitForbidden, "request", "revoke", r.ID) // a token that is no user's
	pamctl("admin", exitOK, "request", "revoke", r.ID, "--comment", "done")
	pamctl("alice", exitNotAllowed, "check", "New-MoveRequest")
	// The server's own database, opened directly while it runs.
	var out, errOut strings.Builder
	if got := run(context.Background(), []string{"audit", "verify", "--sqlite", db, "--as", "auditor"}, &out, &errOut, func(string) string { return "" }); got != exitOK {
		t.Errorf("direct verify of the live database: exit %d\n%s", got, errOut.String())
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
	for _, c := range commands {
		out.Reset()
		errOut.Reset()
		if got := run(context.Background(), []string{c.noun, c.verb, "--help"}, &out, &errOut, none); got != exitOK || !strings.Contains(errOut.String(), "Examples:\n  pamctl ") {
			t.Errorf("%s %s --help: exit %d\n%s", c.noun, c.verb, got, errOut.String())
		}
	}
	// Directly on a SQLite file, acting as someone.
	db := filepath.Join(t.TempDir(), "pam.db")
	direct := func(want int, args ...string) string {
		t.Helper()
		out.Reset()
		errOut.Reset()
		if got := run(context.Background(), append(args, "--sqlite", db, "--as", "root"), &out, &errOut, none); got != want {
			t.Fatalf("pamctl %v: exit %d, want %d\n%s%s", args, got, want, out.String(), errOut.String())
		}
		return out.String()
	}
	direct(exitOK, "policy", "new", "--id", "move", "--task", "New-MoveRequest", "--group", "approvers")
	direct(exitOK, "request", "new", "--task", "New-MoveRequest", "--reason", "r")
	if s := direct(exitOK, "audit", "verify"); !strings.Contains(s, "the trail verifies: events 1..2") {
		t.Errorf("verify: %s", s)
	}
}
