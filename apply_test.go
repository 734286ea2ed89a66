package pam_test

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"pgregory.net/rapid"

	"github.com/zerostanding/pam"
)

func applyConfig() pam.Config {
	cat := testCatalog
	return pam.Config{
		Catalog: &cat,
		Policies: map[string]pam.Policy{
			"move": {Scope: pam.TaskScope("New-MoveRequest"), Approval: pam.Manual,
				ApproverGroups: []pam.ApproverGroup{{Group: "mailbox-managers"}}, MaxDuration: 8 * time.Hour},
			"recipients": {Scope: pam.RoleGroupScope("Recipient Management"), Approval: pam.Auto},
		},
	}
}

func TestApply(t *testing.T) {
	e := newEnv(t)
	cfg := applyConfig()
	before := e.lastSeq()

	dry, err := e.m.Apply(e.admin(), cfg, pam.ApplyOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if dry.Applied || e.lastSeq() != before {
		t.Fatalf("dry run wrote: %+v, %d events", dry, e.lastSeq()-before)
	}
	want := []pam.PolicyChange{{Action: pam.PlanCreate, PolicyID: "move"}, {Action: pam.PlanCreate, PolicyID: "recipients"}}
	if d := cmp.Diff(want, dry.Policies); d != "" {
		t.Errorf("plan (-want +got):\n%s", d)
	}
	got, err := e.m.Apply(e.admin(), cfg, pam.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dry.Applied = true
	if d := cmp.Diff(dry, got); d != "" {
		t.Errorf("applied plan differs from the dry run (-dry +applied):\n%s", d)
	}
	if ps, _ := e.m.Policies(e.admin()); len(ps) != 2 {
		t.Fatalf("%d policies", len(ps))
	}
	if ran, err := e.guard("alice", "New-MoveRequest", nil); ran || !errors.Is(err, pam.ErrNotApproved) {
		t.Errorf("after Apply, an unapproved move: ran %v, %v", ran, err)
	}

	// Again: nothing to do, nothing written.
	seq := e.lastSeq()
	again, err := e.m.Apply(e.admin(), cfg, pam.ApplyOptions{})
	if err != nil || !again.Empty() || again.Applied || e.lastSeq() != seq {
		t.Fatalf("second Apply: %+v, %v, %d events", again, err, e.lastSeq()-seq)
	}

	// A change that cuts grants says how many.
	e.grant("alice", pam.RequestInput{PolicyID: "move"})
	cfg.Policies["move"] = func(p pam.Policy) pam.Policy { p.Condition = `input.op.params.mailbox in data.pam.vip`; return p }(cfg.Policies["move"])
	cfg.Policies["recipients"] = func(p pam.Policy) pam.Policy { p.PendingTTL = time.Hour; return p }(cfg.Policies["recipients"])
	got, err = e.m.Apply(e.admin(), cfg, pam.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want = []pam.PolicyChange{
		{Action: pam.PlanUpdate, PolicyID: "move", Changed: []string{"condition"}, CutsGrants: true, ActiveGrants: 1},
		{Action: pam.PlanUpdate, PolicyID: "recipients", Changed: []string{"pending_ttl"}},
	}
	if d := cmp.Diff(want, got.Policies); d != "" {
		t.Errorf("update plan (-want +got):\n%s", d)
	}
	if ran, _ := e.guard("alice", "New-MoveRequest", map[string]any{"mailbox": "ceo@contoso.com"}); ran {
		t.Error("a cut grant still runs")
	}

	// A catalog that drops a task from a role: the policy through it is
	// cut; deleting a policy is planned as such.
	cat := *cfg.Catalog
	cat.Roles = maps.Clone(cat.Roles)
	cat.Roles["Move Mailboxes"] = []string{"New-MoveRequest"}
	cfg.Catalog = &cat
	delete(cfg.Policies, "move")
	got, err = e.m.Apply(e.admin(), cfg, pam.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want = []pam.PolicyChange{
		{Action: pam.PlanUpdate, PolicyID: "recipients", Changed: []string{"catalog"}, CutsGrants: true},
		{Action: pam.PlanDelete, PolicyID: "move", CutsGrants: true},
	}
	if d := cmp.Diff(want, got.Policies); d != "" {
		t.Errorf("catalog plan (-want +got):\n%s", d)
	}
	if got.Catalog["role:Move Mailboxes.tasks_removed"] != "Remove-MoveRequest" {
		t.Errorf("catalog change: %v", got.Catalog)
	}
	if c, _ := e.m.Catalog(e.admin()); !slices.Equal(c.Roles["Move Mailboxes"], []string{"New-MoveRequest"}) {
		t.Errorf("stored catalog: %v", c.Roles)
	}
}

func TestApplyRefuses(t *testing.T) {
	e := newEnv(t)
	if _, err := e.m.Apply(e.admin(), applyConfig(), pam.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	seq := e.lastSeq()
	for _, tc := range []struct {
		name   string
		change func(*pam.Config)
		ctx    func() (ctxName string)
		want   error
	}{
		{"a non-admin", nil, func() string { return "bob" }, pam.ErrForbidden},
		{"the same scope twice", func(c *pam.Config) {
			c.Policies["copy"] = c.Policies["recipients"]
		}, nil, pam.ErrExists},
		{"an unknown role", func(c *pam.Config) {
			c.Policies["x"] = pam.Policy{Scope: pam.RoleScope("Nope"), Approval: pam.Auto}
		}, nil, pam.ErrInvalid},
		{"a role emptied under a policy", func(c *pam.Config) {
			cat := *c.Catalog
			cat.Roles = maps.Clone(cat.Roles)
			cat.Roles["Move Mailboxes"], cat.Roles["Mail Recipients"] = nil, nil
			c.Catalog = &cat
		}, nil, pam.ErrInvalid},
		{"bad Rego", func(c *pam.Config) {
			c.Policies["x"] = pam.Policy{Scope: pam.TaskScope("X"), Approval: pam.Auto, Condition: "input.op.params.n >"}
		}, nil, pam.ErrInvalid},
		{"an ID other than the name", func(c *pam.Config) {
			c.Policies["x"] = pam.Policy{ID: "y", Scope: pam.TaskScope("X"), Approval: pam.Auto}
		}, nil, pam.ErrInvalid},
		{"deleting a policy", func(c *pam.Config) {
			delete(c.Policies, "move")
		}, nil, nil}, // its name is reused below
	} {
		cfg := applyConfig()
		if tc.change != nil {
			tc.change(&cfg)
		}
		who := "admin"
		if tc.ctx != nil {
			who = tc.ctx()
		}
		_, err := e.m.Apply(e.as(who), cfg, pam.ApplyOptions{})
		if tc.want == nil {
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			seq = e.lastSeq()
			continue
		}
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if e.lastSeq() != seq {
			t.Errorf("%s: a refused Apply wrote %d events", tc.name, e.lastSeq()-seq)
		}
	}
	// "move" was deleted above: its name is not reused.
	if _, err := e.m.Apply(e.admin(), applyConfig(), pam.ApplyOptions{}); !errors.Is(err, pam.ErrExists) {
		t.Errorf("reusing a deleted policy's name: %v", err)
	}
	// Meant to share a scope: say so.
	cfg := applyConfig()
	delete(cfg.Policies, "move")
	cfg.Policies["copy"] = cfg.Policies["recipients"]
	cfg.SameScope = []string{"copy"}
	if _, err := e.m.Apply(e.admin(), cfg, pam.ApplyOptions{}); err != nil {
		t.Errorf("an intended second policy on one scope: %v", err)
	}
}

// TestApplyProperty: random sequences of desired configs, each applied in
// turn, leave the stored state equal to the last config that applied;
// re-applying it writes nothing; a dry run plans what Apply then does.
func TestApplyProperty(t *testing.T) {
	tasks := []string{"T1", "T2", "T3", "T4"}
	applied, refused := 0, 0
	reasons := map[string]int{}
	defer func() { t.Logf("%d configs applied, %d refused %v", applied, refused, reasons) }()
	rapid.Check(t, func(rt *rapid.T) {
		e := newEnv(rt)
		var last *pam.Config
		deleted := map[string]bool{}
		for step := range rapid.IntRange(1, 6).Draw(rt, "steps") {
			cat := pam.Catalog{Roles: map[string][]string{
				"R1": rapid.SliceOfNDistinct(rapid.SampledFrom(tasks), 1, 3, rapid.ID[string]).Draw(rt, fmt.Sprint("R1 ", step)),
				"R2": rapid.SliceOfNDistinct(rapid.SampledFrom(tasks), 1, 2, rapid.ID[string]).Draw(rt, fmt.Sprint("R2 ", step)),
			}}
			cfg := pam.Config{Catalog: &cat, Policies: map[string]pam.Policy{}}
			for _, name := range rapid.SliceOfDistinct(rapid.SampledFrom([]string{"a", "b", "c", "d", "e"}), rapid.ID[string]).Draw(rt, fmt.Sprint("names ", step)) {
				scopes := []pam.Scope{pam.TaskScope("T1"), pam.TaskScope("T2"), pam.RoleScope("R1"), pam.RoleScope("R2")}
				p := pam.Policy{
					Scope:     rapid.SampledFrom(scopes).Draw(rt, "scope"),
					Condition: rapid.SampledFrom([]string{"", "input.op.params.n > 1", "input.op.params.n > 2"}).Draw(rt, "condition"),
					Approval:  pam.Auto,
				}
				if rapid.Bool().Draw(rt, "manual") {
					p.Approval, p.ApproverGroups = pam.Manual, []pam.ApproverGroup{{Group: "mailbox-managers", MinApprovals: rapid.IntRange(1, 2).Draw(rt, "min")}}
				}
				p.MaxDuration = time.Duration(rapid.IntRange(4, 8).Draw(rt, "hours")) * time.Hour
				cfg.Policies[name] = p
			}
			cfg.SameScope = slices.Collect(maps.Keys(cfg.Policies))

			seq := e.lastSeq()
			dry, derr := e.m.Apply(e.admin(), cfg, pam.ApplyOptions{DryRun: true})
			if e.lastSeq() != seq {
				rt.Fatalf("dry run wrote %d events", e.lastSeq()-seq)
			}
			got, err := e.m.Apply(e.admin(), cfg, pam.ApplyOptions{})
			if (derr == nil) != (err == nil) {
				rt.Fatalf("dry run %v, apply %v", derr, err)
			}
			reused := false
			for name := range cfg.Policies {
				reused = reused || deleted[name]
			}
			if err != nil {
				// The only refusal these configs can meet: a deleted
				// name reused.
				if !reused || !errors.Is(err, pam.ErrExists) {
					rt.Fatalf("Apply: %v", err)
				}
				if e.lastSeq() != seq {
					rt.Fatalf("a refused Apply wrote %d events", e.lastSeq()-seq)
				}
				refused++
				reasons[strings.SplitN(err.Error(), ":", 3)[1]]++
				continue
			}
			if reused {
				rt.Fatalf("a deleted name was reused: %v", cfg.Policies)
			}
			dry.Applied = got.Applied
			if d := cmp.Diff(dry, got, cmpopts.EquateEmpty()); d != "" {
				rt.Fatalf("dry run and Apply differ (-dry +apply):\n%s", d)
			}
			if got.Empty() == got.Applied {
				rt.Fatalf("applied %v an empty=%v plan", got.Applied, got.Empty())
			}
			if last != nil {
				for name := range last.Policies {
					if _, ok := cfg.Policies[name]; !ok {
						deleted[name] = true
					}
				}
			}
			last = &cfg
			applied++
			checkStored(rt, e, cfg)
			seq = e.lastSeq()
			again, err := e.m.Apply(e.admin(), cfg, pam.ApplyOptions{})
			if err != nil || !again.Empty() || e.lastSeq() != seq {
				rt.Fatalf("re-Apply: %+v, %v, %d events", again, err, e.lastSeq()-seq)
			}
		}
	})
}

// checkStored compares what the Manager holds with cfg.
func checkStored(t tb, e *env, cfg pam.Config) {
	t.Helper()
	ps, err := e.m.Policies(e.admin())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]pam.Policy{}
	for _, p := range ps {
		got[p.ID] = pam.Policy{Scope: p.Scope, Condition: p.Condition, Approval: p.Approval, ApproverGroups: p.ApproverGroups, MaxDuration: p.MaxDuration}
	}
	if d := cmp.Diff(cfg.Policies, got, cmpopts.EquateEmpty()); d != "" {
		t.Fatalf("stored policies differ from the config (-config +stored):\n%s", d)
	}
	cat, err := e.m.Catalog(e.admin())
	if err != nil {
		t.Fatal(err)
	}
	for role, tasks := range cfg.Catalog.Roles {
		if !slices.Equal(slices.Sorted(slices.Values(tasks)), slices.Sorted(slices.Values(cat.Roles[role]))) {
			t.Fatalf("role %s: stored %v, config %v", role, cat.Roles[role], tasks)
		}
	}
	if len(cat.Roles) != len(cfg.Catalog.Roles) {
		t.Fatalf("stored roles %v", strings.Join(slices.Collect(maps.Keys(cat.Roles)), ","))
	}
}
