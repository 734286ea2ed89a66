package storetest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/benbjohnson/clock"
	"github.com/google/go-cmp/cmp"

	"github.com/zerostanding/pam"
)

// testSharedCatalog: two Managers on one store, the first seeded with a
// catalog, the second configured with none, answer every Guard alike,
// before and after a catalog change made through the first; and a policy
// whose scope the stored catalog does not define fails closed.
func testSharedCatalog(t *testing.T, s pam.Store, clk *clock.Mock) {
	dir, err := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin"}, "approvers": {"bob"}})
	if err != nil {
		t.Fatal(err)
	}
	seed := pam.Catalog{
		Roles:      map[string][]string{"Move Mailboxes": {"New-MoveRequest", "Remove-MoveRequest"}, "Journaling": {"Set-JournalRule"}},
		RoleGroups: map[string][]string{"Recipient Management": {"Move Mailboxes"}},
	}
	var errs []error
	a, err := pam.New(s, dir, &pam.Options{Clock: clk, Catalog: seed})
	if err != nil {
		t.Fatal(err)
	}
	b, err := pam.New(s, dir, &pam.Options{Clock: clk, OnError: func(err error) { errs = append(errs, err) }})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []pam.Policy{
		{ID: "move", Scope: pam.RoleScope("Move Mailboxes"), Approval: pam.Manual, ApproverGroups: []pam.ApproverGroup{{Group: "approvers"}}},
		{ID: "recipients", Scope: pam.RoleGroupScope("Recipient Management"), Approval: pam.Manual, ApproverGroups: []pam.ApproverGroup{{Group: "approvers"}}},
	} {
		if _, err := a.CreatePolicy(As("admin"), p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Submit(As("alice"), pam.RequestInput{PolicyID: "move", Reason: "r"}); err != nil {
		t.Fatal(err)
	}
	r, err := b.Submit(As("alice"), pam.RequestInput{PolicyID: "recipients", Reason: "r"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Approve(As("bob"), r.ID, ""); err != nil {
		t.Fatal(err)
	}
	tasks := []string{"New-MoveRequest", "Remove-MoveRequest", "Set-JournalRule", "Drop-Database"}
	answers := func(m *pam.Manager) []string {
		var out []string
		for _, task := range tasks {
			res, err := m.Check(As("alice"), pam.Op{Task: task})
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, task+": "+string(res.Outcome))
		}
		return out
	}
	check := func(when string, want []string) {
		t.Helper()
		for name, m := range map[string]*pam.Manager{"seeded": a, "no catalog": b} {
			if d := cmp.Diff(want, answers(m)); d != "" {
				t.Errorf("%s, the Manager with %s (-want +got):\n%s", when, name, d)
			}
		}
	}
	check("before the change", []string{"New-MoveRequest: not_approved", "Remove-MoveRequest: not_approved", "Set-JournalRule: uncovered", "Drop-Database: uncovered"})
	if cat, err := b.Catalog(As("alice")); err != nil || cat.Version != 1 || !slices.Equal(cat.Roles["Journaling"], []string{"Set-JournalRule"}) {
		t.Errorf("the second Manager's catalog: %+v, %v", cat, err)
	}

	// Drop-Database joins Move Mailboxes through the first Manager: the
	// second covers it on its next call, and the grant approved under the
	// old role does not reach it.
	cat, err := a.Catalog(As("admin"))
	if err != nil {
		t.Fatal(err)
	}
	cat.Roles["Move Mailboxes"] = append(cat.Roles["Move Mailboxes"], "Drop-Database")
	if err := a.SetCatalog(As("admin"), cat); err != nil {
		t.Fatal(err)
	}
	check("after the change", []string{"New-MoveRequest: not_approved", "Remove-MoveRequest: not_approved", "Set-JournalRule: uncovered", "Drop-Database: not_approved"})

	// A third Manager with another Options.Catalog decides on the stored
	// one and says so.
	var said []error
	c, err := pam.New(s, dir, &pam.Options{Clock: clk, Catalog: pam.Catalog{Roles: map[string][]string{"Journaling": {"Drop-Database"}}},
		OnError: func(err error) { said = append(said, err) }})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"New-MoveRequest: not_approved", "Remove-MoveRequest: not_approved", "Set-JournalRule: uncovered", "Drop-Database: not_approved"}, answers(c)); d != "" {
		t.Errorf("a Manager with another Options.Catalog (-want +got):\n%s", d)
	}
	reported := 0
	for _, err := range said {
		if strings.Contains(err.Error(), "Options.Catalog is ignored") {
			reported++
		}
	}
	if reported != 1 {
		t.Errorf("the ignored Options.Catalog was reported %d times: %v", reported, said)
	}

	// Written around the engine: a policy on a role the catalog lacks.
	// Every task fails closed on every Manager, and OnError hears of it.
	p, err := s.Policy(context.Background(), "move")
	if err != nil {
		t.Fatal(err)
	}
	p.ID, p.Scope, p.Version, p.Revision = "ghost", pam.RoleScope("Nowhere"), 1, 0
	if err := s.Commit(context.Background(), &pam.Tx{Policies: []pam.Policy{p}}); err != nil {
		t.Fatal(err)
	}
	errs = nil
	for _, m := range []*pam.Manager{a, b} {
		err := m.Guard(As("alice"), pam.Op{Task: "Set-JournalRule"}, func(context.Context) error { return nil })
		if !errors.Is(err, pam.ErrNotApproved) {
			t.Errorf("an uncovered task with an unresolvable policy stored: %v, want ErrNotApproved", err)
		}
	}
	if len(errs) == 0 {
		t.Error("OnError did not hear of the unresolvable policy")
	}
	// Nor does it, or a policy whose Rego no longer compiles, accept a
	// submission, even one an Auto policy would approve at once.
	broken := pam.Policy{ID: "rand", Scope: pam.TaskScope("T-rand"), Approval: pam.Auto, Condition: `rand.intn("x", 10) > 1`,
		Version: 1, MinGrantVersion: 1}
	if err := s.Commit(context.Background(), &pam.Tx{Policies: []pam.Policy{broken}}); err != nil {
		t.Fatal(err)
	}
	for _, in := range []pam.RequestInput{{PolicyID: "ghost", Reason: "r"}, {PolicyID: "rand", Reason: "r"}, {Scope: pam.TaskScope("T-rand"), Reason: "r"}} {
		if r, err := a.Submit(As("alice"), in); !errors.Is(err, pam.ErrRejected) {
			t.Errorf("a submission under a policy that cannot be evaluated (%+v): %+v, %v, want ErrRejected", in, r.State, err)
		}
	}
	if _, err := a.Submit(As("alice"), pam.RequestInput{Scope: pam.TaskScope("Set-JournalRule"), Reason: "r"}); !errors.Is(err, pam.ErrNoPolicy) {
		t.Errorf("the unresolvable policy bound a request for another task: %v", err)
	}
}
