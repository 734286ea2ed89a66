package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/store/sqlite"
)

// pamctlRun runs pamctl with args and env, wants exit code want, and
// returns what it printed.
func pamctlRun(t *testing.T, env func(string) string, want int, args ...string) (stdout, stderr string) {
	t.Helper()
	var out, errOut strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if got := run(ctx, args, &out, &errOut, env); got != want {
		t.Fatalf("pamctl %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), got, want, out.String(), errOut.String())
	}
	return out.String(), errOut.String()
}

// direct returns pamctl run directly on the SQLite file db, as user.
func direct(t *testing.T, db, user string) func(want int, args ...string) (string, string) {
	return func(want int, args ...string) (string, string) {
		t.Helper()
		return pamctlRun(t, func(string) string { return "" }, want, append(args, "--sqlite", db, "--create", "--as", user)...)
	}
}

// remote returns pamctl run against the server at base, as user.
func remote(t *testing.T, base, user string) func(want int, args ...string) (string, string) {
	env := func(k string) string {
		switch k {
		case "PAM_URL":
			return base + "/pam"
		case "PAM_TOKEN":
			return "demo-" + user
		}
		return ""
	}
	return func(want int, args ...string) (string, string) {
		t.Helper()
		return pamctlRun(t, env, want, args...)
	}
}

// writeFile writes a file named name in a new temporary directory and
// returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// counts returns how many audit events and live policies pamctl sees.
func counts(t *testing.T, pamctl func(int, ...string) (string, string)) (events, policies int) {
	t.Helper()
	var es []pam.Event
	var ps []pam.Policy
	out, _ := pamctl(exitOK, "audit", "search", "--limit", "1000", "--json")
	if err := json.Unmarshal([]byte(out), &es); err != nil {
		t.Fatalf("audit search: %v\n%s", err, out)
	}
	out, _ = pamctl(exitOK, "policy", "list", "--json")
	if err := json.Unmarshal([]byte(out), &ps); err != nil {
		t.Fatalf("policy list: %v\n%s", err, out)
	}
	return len(es), len(ps)
}

// sqliteKeepsCatalog reports whether the SQLite store keeps the catalog,
// so that one process sees what another set. Until it does, the catalog
// lives in each process's Manager: pamctl opening a database directly
// starts from an empty one, and applying a file with a catalog sets it
// again, every time.
func sqliteKeepsCatalog() bool {
	_, ok := reflect.TypeFor[*sqlite.Store]().MethodByName("Catalog")
	return ok
}

const taskPolicies = `# Two policies on tasks, no catalog.
policies:
  move:
    scope: {kind: task, name: New-MoveRequest}
    approval: manual
    approver_groups: [{group: approvers}]
    max_duration: 8h
  drop:
    scope: {kind: task, name: Drop-Table}
    approval: manual
    approver_groups:
      - {group: dba, min_approvals: 2}
    default_duration: 30m
    max_duration: 2h
`

// TestApplyDirect: pamctl apply on a SQLite file opened directly.
func TestApplyDirect(t *testing.T) {
	db := filepath.Join(t.TempDir(), "pam.db")
	admin := direct(t, db, "admin")
	file := writeFile(t, "pam.yaml", taskPolicies)

	// The dry run prints the plan and writes nothing.
	out, _ := admin(exitOK, "apply", "-f", file, "--dry-run")
	const created = `ACTION    POLICY  CHANGED  CUTS GRANTS  ACTIVE GRANTS
+ create  drop    -        no           -
+ create  move    -        no           -

Plan: 2 to create, 0 to update, 0 to delete.
`
	if want := created + "Dry run: nothing was written.\n"; out != want {
		t.Errorf("dry run:\n%s\nwant\n%s", out, want)
	}
	if events, policies := counts(t, admin); events != 0 || policies != 0 {
		t.Fatalf("after the dry run: %d events, %d policies", events, policies)
	}

	// Apply applies.
	if out, _ := admin(exitOK, "apply", "-f", file); out != created+"Applied.\n" {
		t.Errorf("apply:\n%s", out)
	}
	if events, policies := counts(t, admin); events != 2 || policies != 2 {
		t.Fatalf("after apply: %d events, %d policies", events, policies)
	}
	var drop pam.Policy
	out, _ = admin(exitOK, "policy", "get", "drop", "--json")
	if err := json.Unmarshal([]byte(out), &drop); err != nil || drop.DefaultDuration != 30*time.Minute || drop.MaxDuration != 2*time.Hour ||
		drop.ApproverGroups[0] != (pam.ApproverGroup{Group: "dba", MinApprovals: 2}) || drop.CreatedBy != "admin" {
		t.Errorf("drop as applied: %+v %v", drop, err)
	}

	// Again: no changes, nothing written, dry run or not.
	for _, args := range [][]string{{"apply", "-f", file}, {"apply", "--dry-run", "-f", file}} {
		if out, _ := admin(exitOK, args...); out != "No changes.\n" {
			t.Errorf("%v again:\n%s", args, out)
		}
	}
	if events, _ := counts(t, admin); events != 2 {
		t.Fatalf("applying again wrote: %d events", events)
	}

	// The same as JSON, with a change, and the plan as JSON.
	var cfg pam.Config
	if err := readFile(file, nil, &cfg); err != nil {
		t.Fatal(err)
	}
	move := cfg.Policies["move"]
	move.MaxDuration = 4 * time.Hour
	cfg.Policies["move"] = move
	b, _ := json.Marshal(cfg)
	jsonFile := writeFile(t, "pam.json", string(b))
	var plan pam.Plan
	out, _ = admin(exitOK, "apply", "-f", jsonFile, "--dry-run", "--json")
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if diff := cmp.Diff(pam.Plan{Policies: []pam.PolicyChange{{Action: pam.PlanUpdate, PolicyID: "move", Changed: []string{"max_duration"}}}}, plan); diff != "" {
		t.Errorf("--json plan (-want +got):\n%s", diff)
	}

	// An active grant under move, which changing move's approvers, or
	// deleting move, cuts.
	var r pam.Request
	out, _ = direct(t, db, "alice")(exitOK, "request", "new", "--policy", "move", "--reason", "INC-1", "--json")
	json.Unmarshal([]byte(out), &r)
	direct(t, db, "bob")(exitOK, "request", "approve", r.ID)
	cut := writeFile(t, "cut.yaml", strings.NewReplacer("group: approvers", "group: mailbox-managers", "max_duration: 2h", "max_duration: 3h").Replace(taskPolicies))
	out, _ = admin(exitOK, "apply", "-f", cut, "--dry-run")
	if want := `ACTION    POLICY  CHANGED          CUTS GRANTS  ACTIVE GRANTS
~ update  drop    max_duration     no           -
~ update  move    approver_groups  yes          1

Plan: 0 to create, 2 to update, 0 to delete; cuts 1 active grant.
Dry run: nothing was written.
`; out != want {
		t.Errorf("updates:\n%s\nwant\n%s", out, want)
	}
	dropOnly := writeFile(t, "drop.yaml", taskPolicies[:strings.Index(taskPolicies, "  move:")]+taskPolicies[strings.Index(taskPolicies, "  drop:"):])
	out, _ = admin(exitOK, "apply", "-f", dropOnly)
	if want := `ACTION    POLICY  CHANGED  CUTS GRANTS  ACTIVE GRANTS
- delete  move    -        yes          1

Plan: 0 to create, 0 to update, 1 to delete; cuts 1 active grant.
Applied.
`; out != want {
		t.Errorf("delete:\n%s\nwant\n%s", out, want)
	}
	if out, _ := direct(t, db, "alice")(exitNotFound, "policy", "get", "move"); out != "" {
		t.Errorf("move after the delete: %s", out)
	}
	// A deleted policy's name is not used again.
	_, stderr := admin(exitConflict, "apply", "-f", file)
	if !strings.Contains(stderr, file+": ") || !strings.Contains(stderr, "move") {
		t.Errorf("a deleted name again: %s", stderr)
	}
}

// TestApplyBadFiles: a file that is not a valid config exits with the
// invalid-input code, and the message says what and where.
func TestApplyBadFiles(t *testing.T) {
	admin := direct(t, filepath.Join(t.TempDir(), "pam.db"), "admin")
	for _, c := range []struct {
		name, file, content string
		says                []string
	}{
		{"YAML syntax", "pam.yaml", "policies:\n  move:\n    scope: {kind: task\n", []string{"pam.yaml: ", "yaml: line"}},
		{"a key twice", "pam.yaml", "policies:\n  move: {}\n  move: {}\n", []string{`"move" already set`}},
		{"a misspelt field", "pam.yaml", "policies:\n  move:\n    scope: {kind: task, name: T}\n    aproval: auto\n", []string{`unknown field "aproval" in policies.move`}},
		{"a misspelt field in the catalog", "pam.yaml", "catalog:\n  role_group: {}\n", []string{`unknown field "role_group" in catalog`}},
		{"a bad duration", "pam.yaml", "policies:\n  move:\n    scope: {kind: task, name: T}\n    approval: auto\n    max_duration: soon\n", []string{`duration "soon"`}},
		{"a number for a name", "pam.yaml", "policies:\n  move:\n    scope: {kind: task, name: 42}\n    approval: auto\n", []string{"cannot unmarshal number"}},
		{"JSON syntax", "pam.json", "{\"policies\": {\n  \"move\": }\n}", []string{"pam.json:2:11: "}},
		{"JSON by content", "pam.conf", `{"policies": {"move": {"scope": {"kind": "task", "name": "T"}, "approval": "auto", "x": 1}}}`, []string{`unknown field "x" in policies.move`}},
		{"empty", "pam.yaml", "\n", []string{"the file is empty"}},
		{"only comments", "pam.yaml", "# nothing yet\n", []string{"holds no document"}},
		{"not a mapping", "pam.yaml", "- a\n- b\n", []string{"cannot unmarshal array"}},
		{"bad Rego", "pam.yaml", "policies:\n  move:\n    scope: {kind: task, name: T}\n    approval: auto\n    condition: |\n      input.op.params.x ===\n", []string{"Policies[move].Condition"}},
		{"a role the catalog lacks", "pam.yaml", "policies:\n  move:\n    scope: {kind: role, name: Nope}\n    approval: auto\n", []string{"the catalog defines no tasks for role:Nope"}},
		{"a role group of unknown roles", "pam.yaml", "catalog:\n  role_groups:\n    G: [Nope]\n", []string{`unknown role "Nope"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			file := writeFile(t, c.file, c.content)
			out, stderr := admin(exitInvalid, "apply", "-f", file)
			if out != "" || !strings.HasPrefix(stderr, "pamctl: "+file) {
				t.Errorf("stdout %q, stderr %q", out, stderr)
			}
			for _, s := range c.says {
				if !strings.Contains(stderr, s) {
					t.Errorf("the message does not say %q:\n%s", s, stderr)
				}
			}
		})
	}
	admin(exitUsage, "apply")
	admin(exitUsage, "apply", "pam.yaml")
	admin(exitError, "apply", "-f", filepath.Join(t.TempDir(), "missing.yaml"))
	if events, policies := counts(t, admin); events != 0 || policies != 0 {
		t.Errorf("bad files wrote: %d events, %d policies", events, policies)
	}
}

// TestExamplePolicyFiles: examples/pam.yaml, and the files the quickstart
// and the server apply, read strictly and apply to a fresh database; the
// README shows the dry run of examples/pam.yaml as it is.
func TestExamplePolicyFiles(t *testing.T) {
	for _, file := range []string{"../../examples/pam.yaml", "../../examples/quickstart/pam.yaml", "../../examples/server/pam.yaml"} {
		t.Run(file, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "pam.db")
			admin := direct(t, db, "admin")
			dry, _ := admin(exitOK, "apply", "-f", file, "--dry-run")
			if events, _ := counts(t, admin); events != 0 {
				t.Fatalf("the dry run wrote %d events", events)
			}
			applied, _ := admin(exitOK, "apply", "-f", file)
			if strings.TrimSuffix(applied, "Applied.\n") != strings.TrimSuffix(dry, "Dry run: nothing was written.\n") {
				t.Errorf("the plan applied differs from the dry run's:\n%s\n%s", applied, dry)
			}
			var cfg pam.Config
			if err := readFile(file, nil, &cfg); err != nil {
				t.Fatal(err)
			}
			if events, policies := counts(t, admin); policies != len(cfg.Policies) || events < policies {
				t.Errorf("applied: %d events, %d policies; the file has %d", events, policies, len(cfg.Policies))
			}
			if file == "../../examples/pam.yaml" {
				readme, err := os.ReadFile("../../README.md")
				if err != nil {
					t.Fatal(err)
				}
				const cmd = "$ pamctl apply -f examples/pam.yaml --dry-run" // and the flags to a fresh database
				i := strings.Index(string(readme), cmd)
				if i < 0 {
					t.Fatalf("README.md does not show %q", cmd)
				}
				sample := string(readme[i:])
				sample = sample[strings.Index(sample, "\n")+1:]
				sample = sample[:strings.Index(sample, "```")]
				if sample != dry {
					t.Errorf("README.md's sample differs from the dry run on a fresh database (-README +now):\n%s", cmp.Diff(sample, dry))
				}
			}
			if cfg.Catalog != nil && !sqliteKeepsCatalog() {
				t.Log("the SQLite store does not keep the catalog yet: not applying again directly")
				return
			}
			if again, _ := admin(exitOK, "apply", "-f", file); again != "No changes.\n" {
				t.Errorf("applied again:\n%s", again)
			}
		})
	}
}

// TestCatalogDirect: catalog get and set on a SQLite file opened directly.
func TestCatalogDirect(t *testing.T) {
	db := filepath.Join(t.TempDir(), "pam.db")
	admin := direct(t, db, "admin")
	if out, _ := admin(exitOK, "catalog", "get"); out != "{}\n" {
		t.Errorf("a fresh catalog: %q", out)
	}
	const yamlCatalog = `roles:
  Mail: [New-MoveRequest, Set-Mailbox]
  Export: [New-MailboxExportRequest]
role_groups:
  Exchange: [Mail, Export]
tasks:
  Set-Mailbox:
    params:
      - {name: identity, type: string, required: true}
data:
  vip: [ceo@contoso.com]
`
	file := writeFile(t, "catalog.yaml", yamlCatalog)
	if out, _ := admin(exitOK, "catalog", "set", "-f", file); out != "catalog set: 2 roles, 1 role groups, 1 task declarations\n" {
		t.Errorf("catalog set: %q", out)
	}
	if out, _ := admin(exitOK, "audit", "search", "--type", "catalog.set"); !strings.Contains(out, "catalog.set") || !strings.Contains(out, "admin") {
		t.Errorf("the catalog.set event:\n%s", out)
	}
	bad := writeFile(t, "bad.yaml", "role_groups:\n  G: [Nope]\n")
	if _, stderr := admin(exitInvalid, "catalog", "set", "-f", bad); !strings.Contains(stderr, bad+": ") || !strings.Contains(stderr, `unknown role "Nope"`) {
		t.Errorf("a bad catalog: %s", stderr)
	}
	admin(exitUsage, "catalog", "set")
	if !sqliteKeepsCatalog() {
		t.Log("the SQLite store does not keep the catalog yet: not reading it back")
		return
	}
	var want, got pam.Catalog
	if err := readFile(file, nil, &want); err != nil {
		t.Fatal(err)
	}
	out, _ := admin(exitOK, "catalog", "get")
	if err := readFile(writeFile(t, "got.yaml", out), nil, &got); err != nil {
		t.Fatalf("catalog get printed what catalog set cannot read: %v\n%s", err, out)
	}
	sameCatalog(t, "catalog get", want, got)
}

// TestApplyAgainstLiveServer: pamctl apply and catalog against a running
// examples/server, whose Manager keeps the catalog between calls.
func TestApplyAgainstLiveServer(t *testing.T) {
	base, _ := startServer(t)
	admin, alice := remote(t, base, "admin"), remote(t, base, "alice")
	const file = "../../examples/pam.yaml"

	_, stderr := alice(exitForbidden, "apply", "-f", file, "--dry-run")
	if !strings.Contains(stderr, "forbidden") {
		t.Errorf("apply as alice: %s", stderr)
	}
	// The server's own policies, move and drop, are not in the file.
	dry, _ := admin(exitOK, "apply", "-f", file, "--dry-run")
	for _, line := range []string{
		"roles_added                                   Mail Recipients,Mailbox Import Export,Retention Management\n",
		"+ create  compliance               -        no           -\n",
		"- delete  drop                     -        yes          0\n",
		"- delete  move                     -        yes          0\n",
		"Plan: 4 to create, 0 to update, 2 to delete; the catalog changes.\nDry run: nothing was written.\n",
	} {
		if !strings.Contains(dry, line) {
			t.Errorf("the dry run does not say %q:\n%s", line, dry)
		}
	}
	if out, _ := alice(exitOK, "policy", "list"); !strings.Contains(out, "move") || strings.Contains(out, "compliance") {
		t.Errorf("after the dry run:\n%s", out)
	}
	if applied, _ := admin(exitOK, "apply", "-f", file); strings.TrimSuffix(applied, "Applied.\n") != strings.TrimSuffix(dry, "Dry run: nothing was written.\n") {
		t.Errorf("apply:\n%s", applied)
	}
	if again, _ := admin(exitOK, "apply", "-f", file); again != "No changes.\n" {
		t.Errorf("applied again:\n%s", again)
	}

	// The catalog as the file has it, as YAML and as JSON, for anyone.
	var cfg pam.Config
	if err := readFile(file, nil, &cfg); err != nil {
		t.Fatal(err)
	}
	var cat pam.Catalog
	out, _ := alice(exitOK, "catalog", "get", "--json")
	if err := json.Unmarshal([]byte(out), &cat); err != nil {
		t.Fatal(err)
	}
	sameCatalog(t, "catalog get --json", *cfg.Catalog, cat)
	yamlOut, _ := alice(exitOK, "catalog", "get")
	if !strings.Contains(yamlOut, "role_groups:\n  Compliance Management:\n  - Mailbox Import Export\n") {
		t.Errorf("catalog get:\n%s", yamlOut)
	}

	// catalog set: admins only; what get printed sets it back; a role a
	// policy uses cannot go; a task moved into a role cuts its policy.
	printed := writeFile(t, "catalog.yaml", yamlOut)
	_, stderr = alice(exitForbidden, "catalog", "set", "-f", printed)
	if !strings.Contains(stderr, "forbidden") {
		t.Errorf("catalog set as alice: %s", stderr)
	}
	admin(exitOK, "catalog", "set", "-f", printed)
	if again, _ := admin(exitOK, "apply", "-f", file, "--dry-run"); again != "No changes.\n" {
		t.Errorf("after setting the catalog get printed:\n%s", again)
	}
	without := writeFile(t, "without.yaml", strings.Replace(yamlOut, "  Mail Recipients:\n  - Set-Mailbox\n  - Set-CASMailbox\n", "", 1))
	if _, stderr := admin(exitInvalid, "catalog", "set", "-f", without); !strings.Contains(stderr, "recipients (role:Mail Recipients)") {
		t.Errorf("removing a role a policy uses: %s", stderr)
	}
	moved := writeFile(t, "moved.yaml", strings.Replace(yamlOut, "  - Set-CASMailbox\n", "  - Set-CASMailbox\n  - Set-MailboxAutoReplyConfiguration\n", 1))
	var now pam.Catalog
	out, _ = admin(exitOK, "catalog", "set", "-f", moved, "--json")
	if err := json.Unmarshal([]byte(out), &now); err != nil || len(now.Roles["Mail Recipients"]) != 3 {
		t.Errorf("catalog set --json: %v\n%s", err, out)
	}
	out, _ = admin(exitOK, "apply", "-f", file, "--dry-run")
	if want := `CATALOG                             CHANGE
role:Mail Recipients.tasks_removed  Set-MailboxAutoReplyConfiguration

ACTION    POLICY      CHANGED  CUTS GRANTS  ACTIVE GRANTS
~ update  recipients  catalog  yes          0

Plan: 0 to create, 1 to update, 0 to delete; the catalog changes.
Dry run: nothing was written.
`; out != want {
		t.Errorf("the file against the changed catalog:\n%s\nwant\n%s", out, want)
	}
}

// sameCatalog compares what a catalog defines.
func sameCatalog(t *testing.T, what string, want, got pam.Catalog) {
	t.Helper()
	for _, f := range []struct {
		name      string
		want, got any
	}{
		{"roles", want.Roles, got.Roles}, {"role groups", want.RoleGroups, got.RoleGroups},
		{"tasks", want.Tasks, got.Tasks}, {"data", want.Data, got.Data},
	} {
		if diff := cmp.Diff(f.want, f.got); diff != "" {
			t.Errorf("%s: %s (-want +got):\n%s", what, f.name, diff)
		}
	}
}

// TestPrintPlan: the plan table, every kind of line.
func TestPrintPlan(t *testing.T) {
	var out strings.Builder
	c := &cli{out: &out}
	err := c.printPlan(pam.Plan{
		Catalog: map[string]string{"data": "changed", "roles_added": "B", "role:A.tasks_removed": "x,y", "role_groups_removed": "G",
			"task:T.params": "declared", "policies_cut": "a", "something_new": "1"},
		Policies: []pam.PolicyChange{
			{Action: pam.PlanCreate, PolicyID: "new"},
			{Action: pam.PlanUpdate, PolicyID: "a", Changed: []string{"catalog"}, CutsGrants: true, ActiveGrants: 2},
			{Action: pam.PlanUpdate, PolicyID: "b", Changed: []string{"name", "max_duration"}},
			{Action: pam.PlanDelete, PolicyID: "old", CutsGrants: true, ActiveGrants: 1},
		},
		Applied: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	const want = `CATALOG               CHANGE
roles_added           B
role_groups_removed   G
role:A.tasks_removed  x,y
task:T.params         declared
data                  changed
something_new         1

ACTION    POLICY  CHANGED            CUTS GRANTS  ACTIVE GRANTS
+ create  new     -                  no           -
~ update  a       catalog            yes          2
~ update  b       name,max_duration  no           -
- delete  old     -                  yes          1

Plan: 1 to create, 2 to update, 1 to delete; the catalog changes; cuts 3 active grants.
Applied.
`
	if out.String() != want {
		t.Errorf("plan:\n%s\nwant\n%s\n%s", out.String(), want, cmp.Diff(want, out.String()))
	}
	out.Reset()
	c.printPlan(pam.Plan{})
	if out.String() != "No changes.\n" {
		t.Errorf("an empty plan: %q", out.String())
	}
}
