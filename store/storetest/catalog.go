package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/zerostanding/pam"
)

// catalog returns a catalog at version with every kind of content: roles,
// role groups, task declarations and extra data, whose values are those
// JSON gives back (strings, float64, bool, []any, map[string]any).
func catalog(version int64) pam.Catalog {
	return pam.Catalog{
		Version: version,
		Roles: map[string][]string{
			"MailboxAdmin": {"New-MoveRequest", "Set-Mailbox"},
			"Recipients":   {"New-Mailbox"},
		},
		RoleGroups: map[string][]string{"OrganizationManagement": {"MailboxAdmin", "Recipients"}},
		Tasks: map[string]pam.TaskSpec{
			"New-MoveRequest": {Params: []pam.ParamSpec{
				{Name: "identity", Type: pam.ParamString, Required: true},
				{Name: "batch", Type: pam.ParamNumber},
				{Name: "targets", Type: pam.ParamArray},
			}},
			"Set-Mailbox": {Params: []pam.ParamSpec{{Name: "quota", Type: pam.ParamObject}, {Name: "hidden", Type: pam.ParamBoolean}}},
		},
		Data: map[string]any{
			"vip_mailboxes": []any{"ceo@example.com", "cfo@example.com"},
			"limits":        map[string]any{"max": 3.0, "strict": true, "nested": []any{1.5, "two", false}},
			"label":         "ünïcode ✓ \"quoted\"\n",
			"version":       fmt.Sprint("v", version),
		},
	}
}

// readCatalog returns the stored catalog.
func readCatalog(t *testing.T, s pam.Store) pam.Catalog {
	t.Helper()
	c, err := s.Catalog(ctx)
	if err != nil {
		t.Fatalf("Catalog: %v", err)
	}
	return c
}

func policyRevision(t *testing.T, s pam.Store) int64 {
	t.Helper()
	rev, err := s.PolicyRevision(ctx)
	if err != nil {
		t.Fatalf("PolicyRevision: %v", err)
	}
	return rev
}

// testCatalog: the catalog is written by Commit like a policy, its
// version compared, its revision taken from the policy revision counter;
// a refused catalog write refuses the whole Tx.
func testCatalog(t *testing.T, s pam.Store) {
	if d := cmp.Diff(pam.Catalog{}, readCatalog(t, s), opts); d != "" {
		t.Fatalf("Catalog of an empty store (-want +got):\n%s", d)
	}
	if rev := policyRevision(t, s); rev != 0 {
		t.Fatalf("PolicyRevision of an empty store = %d, want 0", rev)
	}
	mustConflict(t, s, &pam.Tx{Catalog: &pam.Catalog{Version: 2}}) // update of nothing

	c := catalog(1)
	tx := &pam.Tx{Catalog: &c, Events: []pam.Event{event(pam.EventCatalogSet, "admin", "")}}
	commit(t, s, tx)
	if c.Revision != 1 || tx.Events[0].Seq != 1 {
		t.Fatalf("after the first catalog write: Revision %d, Seq %d; want 1, 1", c.Revision, tx.Events[0].Seq)
	}
	want := catalog(1)
	want.Revision = 1
	if d := cmp.Diff(want, readCatalog(t, s), opts); d != "" {
		t.Fatalf("Catalog round trip (-want +got):\n%s", d)
	}
	if rev := policyRevision(t, s); rev != 1 {
		t.Fatalf("PolicyRevision after a catalog write = %d, want 1 (the catalog's Revision)", rev)
	}

	t.Run("copies", func(t *testing.T) {
		// The caller changing what it passed in or got back must not
		// change the store.
		c.Roles["MailboxAdmin"][0] = "changed"
		c.Tasks["New-MoveRequest"].Params[0].Name = "changed"
		c.Data["label"] = "changed"
		got := readCatalog(t, s)
		got.Roles["MailboxAdmin"][0] = "changed"
		got.RoleGroups["OrganizationManagement"][0] = "changed"
		got.Tasks["New-MoveRequest"].Params[0].Name = "changed"
		got.Data["label"] = "changed"
		if d := cmp.Diff(want, readCatalog(t, s), opts); d != "" {
			t.Errorf("catalog changed through an alias (-want +got):\n%s", d)
		}
	})

	// A stale catalog write refuses everything written with it.
	for name, version := range map[string]int64{"create again": 1, "skips a version": 3, "version 0": 0} {
		t.Run(name, func(t *testing.T) {
			stale := catalog(version)
			stale.Roles = map[string][]string{"Stale": {"Remove-Mailbox"}}
			tx := &pam.Tx{
				Catalog:  &stale,
				Policies: []pam.Policy{policy("p1", 1)},
				Requests: []pam.Request{request("r1", "alice", "p1", pam.Pending, 1)},
				Events:   []pam.Event{event(pam.EventCatalogSet, "admin", ""), event(pam.EventPolicyCreated, "admin", "")},
			}
			mustConflict(t, s, tx)
			if stale.Revision != 0 {
				t.Errorf("a refused commit set the catalog's Revision to %d", stale.Revision)
			}
			if d := cmp.Diff(want, readCatalog(t, s), opts); d != "" {
				t.Errorf("catalog written by a refused commit (-want +got):\n%s", d)
			}
			if _, err := s.Policy(ctx, "p1"); !errors.Is(err, pam.ErrNotFound) {
				t.Errorf("policy written by a refused commit (%v)", err)
			}
			if _, err := s.Request(ctx, "r1"); !errors.Is(err, pam.ErrNotFound) {
				t.Errorf("request written by a refused commit (%v)", err)
			}
			if seq := lastSeq(t, s); seq != 1 {
				t.Errorf("a refused commit appended events: last Seq %d, want 1", seq)
			}
			if rev := policyRevision(t, s); rev != 1 {
				t.Errorf("a refused commit moved PolicyRevision to %d", rev)
			}
		})
	}

	// The next version is written, and read back as written.
	c2 := catalog(2)
	delete(c2.Roles, "Recipients")
	c2.RoleGroups = nil
	commit(t, s, &pam.Tx{Catalog: &c2})
	if c2.Revision != 2 {
		t.Fatalf("second catalog write: Revision %d, want 2", c2.Revision)
	}
	want = catalog(2)
	delete(want.Roles, "Recipients")
	want.RoleGroups, want.Revision = nil, 2
	if d := cmp.Diff(want, readCatalog(t, s), opts); d != "" {
		t.Fatalf("Catalog after an update (-want +got):\n%s", d)
	}
	if rev := policyRevision(t, s); rev != 2 {
		t.Fatalf("PolicyRevision = %d, want 2", rev)
	}
}

// testCatalogRevisions: catalog writes and policy writes share the
// revision counter, each write taking the next revision, the catalog
// before the policies of its Tx; PolicyChanges returns the policies
// alone, with the counter's revision.
func testCatalogRevisions(t *testing.T, s pam.Store) {
	steps := []struct {
		catalog  int64        // version written, 0 for none
		policies []pam.Policy // written with it
		revs     []int64      // the revisions they get: the catalog's first
	}{
		{0, []pam.Policy{policy("a", 1)}, []int64{1}},
		{1, nil, []int64{2}},
		{0, []pam.Policy{policy("b", 1), policy("c", 1)}, []int64{3, 4}},
		{2, []pam.Policy{policy("d", 1), policy("b", 2)}, []int64{5, 6, 7}},
		{3, nil, []int64{8}},
		{0, []pam.Policy{policy("a", 2)}, []int64{9}},
		{4, nil, []int64{10}},
	}
	for i, st := range steps {
		tx := &pam.Tx{Policies: st.policies, Events: []pam.Event{event(pam.EventPolicyUpdated, "admin", "")}}
		if st.catalog > 0 {
			c := catalog(st.catalog)
			tx.Catalog = &c
		}
		commit(t, s, tx)
		var got []int64
		if tx.Catalog != nil {
			got = append(got, tx.Catalog.Revision)
		}
		for _, p := range tx.Policies {
			got = append(got, p.Revision)
		}
		if d := cmp.Diff(st.revs, got); d != "" {
			t.Fatalf("step %d: revisions (-want +got):\n%s", i, d)
		}
		if rev := policyRevision(t, s); rev != st.revs[len(st.revs)-1] {
			t.Fatalf("step %d: PolicyRevision = %d, want %d", i, rev, st.revs[len(st.revs)-1])
		}
		if st.catalog > 0 {
			if c := readCatalog(t, s); c.Version != st.catalog || c.Revision != st.revs[0] {
				t.Fatalf("step %d: Catalog at version %d revision %d, want %d, %d", i, c.Version, c.Revision, st.catalog, st.revs[0])
			}
		}
		// Right after a catalog write, there is no policy to reload.
		if ps, rev, err := s.PolicyChanges(ctx, st.revs[len(st.revs)-1]); err != nil || len(ps) != 0 || rev != st.revs[len(st.revs)-1] {
			t.Fatalf("step %d: PolicyChanges(%d) = %v, %d, %v; want none at the same revision", i, st.revs[len(st.revs)-1], ps, rev, err)
		}
	}
	for _, tc := range []struct {
		since int64
		want  []string // id@version@revision in revision order
	}{
		{0, []string{"c@1@4", "d@1@6", "b@2@7", "a@2@9"}},
		{1, []string{"c@1@4", "d@1@6", "b@2@7", "a@2@9"}},
		{2, []string{"c@1@4", "d@1@6", "b@2@7", "a@2@9"}},
		{4, []string{"d@1@6", "b@2@7", "a@2@9"}},
		{5, []string{"d@1@6", "b@2@7", "a@2@9"}},
		{7, []string{"a@2@9"}},
		{8, []string{"a@2@9"}},
		{9, nil},
		{10, nil},
	} {
		ps, rev, err := s.PolicyChanges(ctx, tc.since)
		if err != nil {
			t.Fatal(err)
		}
		if rev != 10 {
			t.Errorf("PolicyChanges(%d) revision = %d, want 10", tc.since, rev)
		}
		var got []string
		for _, p := range ps {
			got = append(got, fmt.Sprintf("%s@%d@%d", p.ID, p.Version, p.Revision))
		}
		if d := cmp.Diff(tc.want, got, opts); d != "" {
			t.Errorf("PolicyChanges(%d) (-want +got):\n%s", tc.since, d)
		}
	}
}

// testCatalogAtomicity: a catalog written with policies, requests and
// events lands with all of them or not at all, whichever part is stale.
func testCatalogAtomicity(t *testing.T, s pam.Store) {
	c1 := catalog(1)
	commit(t, s, &pam.Tx{
		Catalog:  &c1,
		Policies: []pam.Policy{policy("p1", 1)},
		Requests: []pam.Request{request("r1", "alice", "p1", pam.Pending, 1)},
		Events:   []pam.Event{event(pam.EventCatalogSet, "admin", ""), event(pam.EventRequestSubmitted, "alice", "r1")},
	})
	if c1.Revision != 1 {
		t.Fatalf("catalog Revision %d, want 1", c1.Revision)
	}
	if c := readCatalog(t, s); c.Version != 1 || c.Revision != 1 {
		t.Fatalf("Catalog at version %d revision %d, want 1, 1", c.Version, c.Revision)
	}
	if p, err := s.Policy(ctx, "p1"); err != nil || p.Revision != 2 {
		t.Fatalf("policy written with the catalog: %+v, %v", p, err)
	}
	if r, err := s.Request(ctx, "r1"); err != nil || r.Version != 1 {
		t.Fatalf("request written with the catalog: %+v, %v", r, err)
	}
	if seq := lastSeq(t, s); seq != 2 {
		t.Fatalf("events written with the catalog: last Seq %d, want 2", seq)
	}

	for name, tx := range map[string]func(c *pam.Catalog) *pam.Tx{
		"stale policy": func(c *pam.Catalog) *pam.Tx {
			return &pam.Tx{Catalog: c, Policies: []pam.Policy{policy("p2", 1), policy("p1", 1)}, Events: []pam.Event{event(pam.EventCatalogSet, "admin", "")}}
		},
		"stale request": func(c *pam.Catalog) *pam.Tx {
			return &pam.Tx{Catalog: c, Policies: []pam.Policy{policy("p2", 1)}, Requests: []pam.Request{request("r1", "alice", "p1", pam.Approved, 1)},
				Events: []pam.Event{event(pam.EventCatalogSet, "admin", "")}}
		},
		"unchanged request changed": func(c *pam.Catalog) *pam.Tx {
			return &pam.Tx{Catalog: c, Events: []pam.Event{event(pam.EventCatalogSet, "admin", "")}, Unchanged: []pam.RequestVersion{{ID: "r1", Version: 2}}}
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := catalog(2)
			mustConflict(t, s, tx(&c))
			if c.Revision != 0 {
				t.Errorf("a refused commit set the catalog's Revision to %d", c.Revision)
			}
			if got := readCatalog(t, s); got.Version != 1 || got.Revision != 1 || got.Data["version"] != "v1" {
				t.Errorf("catalog written by a refused commit: version %d revision %d", got.Version, got.Revision)
			}
			if _, err := s.Policy(ctx, "p2"); !errors.Is(err, pam.ErrNotFound) {
				t.Errorf("policy written by a refused commit (%v)", err)
			}
			if r, _ := s.Request(ctx, "r1"); r.Version != 1 || r.State != pam.Pending {
				t.Errorf("request changed by a refused commit: %+v", r)
			}
			if seq := lastSeq(t, s); seq != 2 {
				t.Errorf("a refused commit appended events: last Seq %d, want 2", seq)
			}
			if rev := policyRevision(t, s); rev != 2 {
				t.Errorf("a refused commit moved PolicyRevision to %d", rev)
			}
		})
	}

	// The same write, no longer stale, lands whole.
	c2 := catalog(2)
	tx := &pam.Tx{Catalog: &c2, Policies: []pam.Policy{policy("p2", 1)}, Requests: []pam.Request{request("r1", "alice", "p1", pam.Approved, 2)},
		Events: []pam.Event{event(pam.EventCatalogSet, "admin", "")}}
	commit(t, s, tx)
	if c2.Revision != 3 || tx.Policies[0].Revision != 4 || tx.Events[0].Seq != 3 {
		t.Fatalf("catalog Revision %d, policy Revision %d, Seq %d; want 3, 4, 3", c2.Revision, tx.Policies[0].Revision, tx.Events[0].Seq)
	}
	if got := readCatalog(t, s); got.Version != 2 || got.Revision != 3 {
		t.Errorf("Catalog at version %d revision %d, want 2, 3", got.Version, got.Revision)
	}
	if r, _ := s.Request(ctx, "r1"); r.Version != 2 || r.State != pam.Approved {
		t.Errorf("request after the commit: %+v", r)
	}
}

// testConcurrentCatalog: writers racing to write the next catalog
// version: exactly one of them wins each version, the others get
// ErrConflict, and only the winner's write and event are stored.
func testConcurrentCatalog(t *testing.T, s pam.Store) {
	c1 := catalog(1)
	commit(t, s, &pam.Tx{Catalog: &c1, Events: []pam.Event{event(pam.EventCatalogSet, "admin", "")}})
	const workers, rounds = 8, 5
	for round := range rounds {
		version := int64(round + 2)
		var wg sync.WaitGroup
		start := make(chan struct{})
		results := make([]error, workers)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := catalog(version)
				c.Data["writer"] = fmt.Sprint("w", w)
				tx := &pam.Tx{Catalog: &c, Events: []pam.Event{event(pam.EventCatalogSet, fmt.Sprint("w", w), "")}}
				<-start
				results[w] = s.Commit(ctx, tx)
				if results[w] == nil && c.Revision != version {
					results[w] = fmt.Errorf("the winner's catalog got Revision %d, want %d", c.Revision, version)
				}
			}()
		}
		close(start)
		wg.Wait()
		winner := ""
		for w, err := range results {
			switch {
			case err == nil && winner == "":
				winner = fmt.Sprint("w", w)
			case err == nil:
				t.Fatalf("round %d: version %d written by %s and w%d", round, version, winner, w)
			case !errors.Is(err, pam.ErrConflict):
				t.Fatalf("round %d: w%d: %v", round, w, err)
			}
		}
		if winner == "" {
			t.Fatalf("round %d: no writer won version %d", round, version)
		}
		got := readCatalog(t, s)
		if got.Version != version || got.Revision != version || got.Data["writer"] != winner {
			t.Fatalf("round %d: Catalog at version %d revision %d by %v; want %d, %d by %s", round, got.Version, got.Revision, got.Data["writer"], version, version, winner)
		}
		es, err := s.Events(ctx, pam.EventFilter{After: version - 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != 1 || es[0].Actor != winner {
			t.Fatalf("round %d: events after %d: %+v; want the winner's one", round, version-1, es)
		}
		if rev := policyRevision(t, s); rev != version {
			t.Fatalf("round %d: PolicyRevision = %d, want %d", round, rev, version)
		}
	}
}
