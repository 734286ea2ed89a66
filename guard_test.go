package pam_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/google/go-cmp/cmp"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/internal/fakes"
	"github.com/zerostanding/pam/store/memory"
)

func TestGuardUncovered(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	before := e.lastSeq()
	ran, err := e.guard("alice", "Get-Mailbox", nil)
	if !ran || err != nil {
		t.Fatalf("uncovered task: ran %v, %v", ran, err)
	}
	if e.lastSeq() != before {
		t.Errorf("uncovered task was audited")
	}
	err = e.m.Guard(context.Background(), pam.Op{Task: "Get-Mailbox"}, func(context.Context) error { return errRan })
	if !errors.Is(err, pam.ErrNoActor) {
		t.Errorf("no actor = %v, want ErrNoActor", err)
	}
	if err := e.m.Guard(e.as("alice"), pam.Op{Task: "Get-Mailbox"}, nil); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("nil fn = %v, want ErrInvalid", err)
	}
	for _, task := range []string{"", "a\x00b", "\xff", strings.Repeat("t", pam.MaxNameLen+1)} {
		if ran, err := e.guard("alice", task, nil); ran || !errors.Is(err, pam.ErrInvalid) {
			t.Errorf("task %q: ran %v, %v", task, ran, err)
		}
	}
}

func TestGuardDeniesWithoutGrant(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	before := e.lastSeq()
	ran, err := e.guard("alice", "New-MoveRequest", nil)
	if ran {
		t.Fatal("fn ran without a grant")
	}
	var nae *pam.NotApprovedError
	if !errors.As(err, &nae) || !errors.Is(err, pam.ErrNotApproved) {
		t.Fatalf("Guard = %v, want NotApprovedError", err)
	}
	if nae.Task != "New-MoveRequest" || nae.PolicyID != "move" || nae.Actor != "alice" {
		t.Errorf("NotApprovedError %+v", nae)
	}
	evs := e.eventsSince(before)
	if len(evs) != 1 || evs[0].Type != pam.EventGuardDenied || evs[0].Actor != "alice" || evs[0].PolicyID != "move" || evs[0].Task != "New-MoveRequest" {
		t.Errorf("denial audit: %+v", evs)
	}
	// Covered, no actor: denied and audited.
	err = e.m.Guard(context.Background(), pam.Op{Task: "New-MoveRequest"}, func(context.Context) error { return errRan })
	if !errors.Is(err, pam.ErrNoActor) {
		t.Errorf("no actor = %v", err)
	}
	if evs := e.eventsSince(before + 1); len(evs) != 1 || evs[0].Type != pam.EventGuardDenied || evs[0].Actor != "" {
		t.Errorf("no-actor audit: %+v", evs)
	}
	// A pending request is no grant.
	e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	if ran, err := e.guard("alice", "New-MoveRequest", nil); ran || !errors.Is(err, pam.ErrNotApproved) {
		t.Errorf("pending request: ran %v, %v", ran, err)
	}
	// Another user's grant is not alice's.
	e.grant("carol", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	if ran, _ := e.guard("alice", "New-MoveRequest", nil); ran {
		t.Error("ran on carol's grant")
	}
}

func TestGuardAllowed(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	g := e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Duration: 2 * time.Hour})
	before := e.lastSeq()
	var deadline time.Time
	err := e.m.Guard(e.as("Alice"), pam.Op{Task: "New-MoveRequest", Params: map[string]any{"mailbox": "x"}}, func(ctx context.Context) error {
		deadline, _ = ctx.Deadline()
		actor, _ := pam.ActorFrom(ctx)
		if actor != "alice" {
			t.Errorf("actor in fn's context %q", actor)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !deadline.Equal(g.ExpiresAt) {
		t.Errorf("fn's deadline %v, want the grant's expiry %v", deadline, g.ExpiresAt)
	}
	evs := e.eventsSince(before)
	if d := cmp.Diff([]pam.EventType{pam.EventGuardAllowed, pam.EventGuardFinished}, types(evs)); d != "" {
		t.Fatalf("audit (-want +got):\n%s", d)
	}
	for _, ev := range evs {
		if ev.RequestID != g.ID || ev.PolicyID != "move" || ev.Actor != "alice" || ev.Task != "New-MoveRequest" {
			t.Errorf("event %+v", ev)
		}
	}
	if evs[1].Outcome != pam.OutcomeOK {
		t.Errorf("finished detail %v", evs[1].Detail)
	}
	// Many runs within the window, each audited.
	for range 3 {
		if ran, err := e.guard("alice", "New-MoveRequest", nil); !ran || err != nil {
			t.Fatalf("repeat run: %v, %v", ran, err)
		}
	}
	if n := len(e.eventsSince(before)); n != 8 {
		t.Errorf("%d events for 4 runs, want 8", n)
	}
	// fn's error is returned and recorded.
	boom := errors.New("mailbox locked")
	if err := e.m.Guard(e.as("alice"), pam.Op{Task: "New-MoveRequest"}, func(context.Context) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("Guard = %v, want fn's error", err)
	}
	last := e.eventsSince(e.lastSeq() - 1)[0]
	if last.Type != pam.EventGuardFinished || last.Outcome != pam.OutcomeError || last.Detail["error"] != "mailbox locked" {
		t.Errorf("finished event %+v", last)
	}
}

func TestGuardContextEndsWithWindow(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Duration: time.Hour})
	started := make(chan struct{})
	done := make(chan error)
	go func() {
		done <- e.m.Guard(e.as("alice"), pam.Op{Task: "New-MoveRequest"}, func(ctx context.Context) error {
			close(started)
			<-ctx.Done()
			return ctx.Err()
		})
	}()
	<-started
	e.clk.Add(time.Hour)
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Guard = %v, want DeadlineExceeded", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("fn's context did not end with the window")
	}
}

func TestGuardPanicIsAudited(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	func() {
		defer func() {
			if recover() == nil {
				t.Error("panic swallowed")
			}
		}()
		e.m.Guard(e.as("alice"), pam.Op{Task: "New-MoveRequest"}, func(context.Context) error { panic("bug") })
	}()
	last := e.eventsSince(e.lastSeq() - 1)[0]
	if last.Type != pam.EventGuardFinished || last.Outcome != pam.OutcomePanic {
		t.Errorf("last event %+v", last)
	}
}

func TestGuardFailsClosedWithoutAudit(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	e.store.FailCommit(func(tx *pam.Tx) error {
		if len(tx.Events) > 0 && tx.Events[0].Type == pam.EventGuardAllowed {
			return errors.New("disk full")
		}
		return nil
	})
	ran, err := e.guard("alice", "New-MoveRequest", nil)
	if ran || !errors.Is(err, pam.ErrAudit) {
		t.Errorf("unauditable Guard: ran %v, %v; want ErrAudit and no run", ran, err)
	}
	// System accounts too.
	if ran, err := e.guard("svc-backup", "New-MoveRequest", nil); !ran || err != nil {
		t.Errorf("exempt run with working audit: %v, %v", ran, err)
	}
	e.store.FailCommit(func(tx *pam.Tx) error { return errors.New("down") })
	if ran, err := e.guard("svc-backup", "New-MoveRequest", nil); ran || !errors.Is(err, pam.ErrAudit) {
		t.Errorf("unauditable exempt run: ran %v, %v", ran, err)
	}
	// Nothing else is lost either: transitions fail whole.
	if _, err := e.m.Submit(e.as("alice"), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "x"}); err == nil {
		t.Error("Submit succeeded without a store")
	}
	e.store.FailCommit(nil)
	if rs, _, _ := e.m.Requests(e.admin(), pam.RequestFilter{States: []pam.State{pam.Pending}}); len(rs) != 0 {
		t.Errorf("failed submit left %d requests", len(rs))
	}
}

func TestGuardSystemAccounts(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	before := e.lastSeq()
	var deadline bool
	err := e.m.Guard(e.as("SVC-Backup"), pam.Op{Task: "New-MoveRequest"}, func(ctx context.Context) error {
		_, deadline = ctx.Deadline()
		return nil
	})
	if err != nil || deadline {
		t.Fatalf("system account: %v (deadline %v)", err, deadline)
	}
	evs := e.eventsSince(before)
	if d := cmp.Diff([]pam.EventType{pam.EventGuardExempt, pam.EventGuardFinished}, types(evs)); d != "" || evs[0].Actor != "svc-backup" {
		t.Errorf("exempt audit (-want +got):\n%s %+v", d, evs)
	}
	if ran, _ := e.guard("svc-backup", "Get-Mailbox", nil); !ran {
		t.Error("system account, uncovered task did not run")
	}
	if n := len(e.eventsSince(before)); n != 2 {
		t.Errorf("uncovered run by a system account audited: %d events", n)
	}
}

func TestGuardDenyUncovered(t *testing.T) {
	e := newEnv(t, func(o *pam.Options) { o.DenyUncovered = true })
	ran, err := e.guard("alice", "Get-Mailbox", nil)
	if ran || !errors.Is(err, pam.ErrNoPolicy) {
		t.Errorf("deny-by-default: ran %v, %v", ran, err)
	}
	if evs := e.events(); len(evs) != 1 || evs[0].Type != pam.EventGuardDenied {
		t.Errorf("audit %+v", evs)
	}
	if ran, err := e.guard("svc-backup", "Get-Mailbox", nil); !ran || err != nil {
		t.Errorf("system account under deny-by-default: ran %v, %v", ran, err)
	}
	if got := types(e.events()); len(got) != 3 || got[1] != pam.EventGuardExempt {
		t.Errorf("audit %v", got)
	}
}

func TestGuardConditions(t *testing.T) {
	e := newEnv(t)
	e.policy(pam.Policy{ID: "vip", Scope: pam.TaskScope("New-MoveRequest"), Approval: pam.Manual,
		ApproverGroups: []pam.ApproverGroup{{Group: "security"}},
		Condition:      "input.op.params.mailbox in data.pam.vip"})
	e.policy(pam.Policy{ID: "big", Scope: pam.TaskScope("Set-Mailbox"), Approval: pam.Auto,
		Condition: "input.op.params.quota_gb > 100\ninput.op.params.mailbox != \"test@contoso.com\""})

	for _, tc := range []struct {
		name    string
		task    string
		params  map[string]any
		covered bool
		cond    string
	}{
		{"not a vip", "New-MoveRequest", map[string]any{"mailbox": "bob@contoso.com"}, false, "false"},
		{"vip", "New-MoveRequest", map[string]any{"mailbox": "ceo@contoso.com"}, true, "true"},
		{"mailbox missing: fail closed", "New-MoveRequest", map[string]any{"target": "db2"}, true, "undefined"},
		{"no params: fail closed", "New-MoveRequest", nil, true, "undefined"},
		{"small quota", "Set-Mailbox", map[string]any{"quota_gb": 5, "mailbox": "x"}, false, "false"},
		{"big quota", "Set-Mailbox", map[string]any{"quota_gb": 500.5, "mailbox": "x"}, true, "true"},
		{"big quota, test mailbox", "Set-Mailbox", map[string]any{"quota_gb": 500, "mailbox": "test@contoso.com"}, false, "false"},
		{"quota not a number: fail closed", "Set-Mailbox", map[string]any{"quota_gb": "lots", "mailbox": "x"}, true, "true"},
		{"quota missing: fail closed", "Set-Mailbox", map[string]any{"mailbox": "x"}, true, "undefined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := e.m.Check(e.as("alice"), pam.Op{Task: tc.task, Params: tc.params})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Policies) != 1 || res.Policies[0].Covered != tc.covered || res.Policies[0].Condition != tc.cond {
				t.Fatalf("Check: %+v", res)
			}
			ran, err := e.guard("alice", tc.task, tc.params)
			if ran == tc.covered {
				t.Errorf("ran %v (%v), want covered=%v", ran, err, tc.covered)
			}
		})
	}
	// A vip grant lets the vip move run.
	r := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	e.approve("erin", r.ID)
	if ran, err := e.guard("alice", "New-MoveRequest", map[string]any{"mailbox": "cfo@contoso.com"}); !ran {
		t.Errorf("vip move with grant: %v", err)
	}
}

func TestGuardNeedsEveryCoveringPolicy(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	e.policy(pam.Policy{ID: "recip", Scope: pam.RoleGroupScope("Recipient Management"), Approval: pam.Manual,
		ApproverGroups: []pam.ApproverGroup{{Group: "security"}}})
	e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), PolicyID: "move"})
	ran, err := e.guard("alice", "New-MoveRequest", nil)
	var nae *pam.NotApprovedError
	if ran || !errors.As(err, &nae) || nae.PolicyID != "recip" {
		t.Fatalf("one of two grants: ran %v, %v", ran, err)
	}
	r := e.submit("alice", pam.RequestInput{Scope: pam.RoleScope("Move Mailboxes")})
	e.approve("erin", r.ID)
	if ran, err := e.guard("alice", "New-MoveRequest", nil); !ran {
		t.Fatalf("both grants: %v", err)
	}
	res, _ := e.m.Check(e.as("alice"), pam.Op{Task: "New-MoveRequest"})
	if !res.Allowed || res.Outcome != pam.OutcomeGranted || len(res.Policies) != 2 || res.Policies[0].Grant == "" || res.Policies[1].Grant == "" {
		t.Errorf("Check: %+v", res)
	}
	// The role grant covers the role's other task; the task grant does not
	// stretch to it.
	if ran, err := e.guard("alice", "Remove-MoveRequest", nil); !ran {
		t.Errorf("Remove-MoveRequest under the role grant: %v", err)
	}
	if ran, _ := e.guard("alice", "Set-Mailbox", nil); ran {
		t.Error("Set-Mailbox ran on a Move Mailboxes grant")
	}
}

func TestGuardAfterPolicyChange(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	p, _ := e.m.Policy(e.admin(), "move")
	p.PendingTTL = time.Hour
	p, err := e.m.UpdatePolicy(e.admin(), p)
	if err != nil {
		t.Fatal(err)
	}
	if ran, err := e.guard("alice", "New-MoveRequest", nil); !ran {
		t.Fatalf("grant after a harmless change: %v", err)
	}
	p.ApproverGroups = []pam.ApproverGroup{{Group: "mailbox-managers", MinApprovals: 2}}
	if _, err := e.m.UpdatePolicy(e.admin(), p); err != nil {
		t.Fatal(err)
	}
	ran, err := e.guard("alice", "New-MoveRequest", nil)
	var nae *pam.NotApprovedError
	if ran || !errors.As(err, &nae) || !strings.Contains(nae.Reason, "policy changed") {
		t.Errorf("grant from before the approver change: ran %v, %v", ran, err)
	}
}

// TestReplicasShareState runs two Managers over one store, as two replicas
// of a host would: each sees the other's policy changes and revocations on
// its next Guard.
func TestReplicasShareState(t *testing.T) {
	a := newEnv(t)
	b := newEnv(t)
	b.store = a.store
	var err error
	b.m, err = pam.New(a.store, a.dir, &pam.Options{Clock: a.clk, Catalog: testCatalog, AdminGroup: "pam-admins"})
	if err != nil {
		t.Fatal(err)
	}
	if ran, _ := b.guard("alice", "New-MoveRequest", nil); !ran {
		t.Fatal("uncovered before any policy")
	}
	a.policy(movePolicy())
	if ran, _ := b.guard("alice", "New-MoveRequest", nil); ran {
		t.Fatal("replica b did not see the policy created through a")
	}
	g := a.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	if ran, err := b.guard("alice", "New-MoveRequest", nil); !ran {
		t.Fatalf("replica b did not see the grant: %v", err)
	}
	if _, err := a.m.Revoke(a.admin(), g.ID, "done"); err != nil {
		t.Fatal(err)
	}
	if ran, _ := b.guard("alice", "New-MoveRequest", nil); ran {
		t.Fatal("replica b let a revoked grant through")
	}
	if err := b.m.DeletePolicy(b.admin(), "move"); err != nil {
		t.Fatal(err)
	}
	if ran, _ := a.guard("alice", "New-MoveRequest", nil); !ran {
		t.Fatal("replica a still enforces a policy deleted through b")
	}
}

func TestConcurrentUse(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	p := movePolicy()
	p.ID, p.Scope, p.Condition = "cond", pam.TaskScope("Set-Mailbox"), "input.op.params.n > 10"
	e.policy(p)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			who := fmt.Sprint("user", w)
			for i := range 20 {
				r, err := e.m.Submit(e.as(who), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "r"})
				if err != nil {
					t.Error(err)
					return
				}
				// Two approvers race; one approval suffices, so the other
				// sees a decided request or loses the version race and retries.
				var inner sync.WaitGroup
				for _, approver := range []string{"bob", "carol"} {
					inner.Add(1)
					go func() {
						defer inner.Done()
						if _, err := e.m.Approve(e.as(approver), r.ID, ""); err != nil && !errors.Is(err, pam.ErrWrongState) {
							t.Error(err)
						}
					}()
				}
				inner.Wait()
				if ran, err := e.guard(who, "New-MoveRequest", nil); !ran {
					t.Errorf("guard after approval: %v", err)
				}
				e.guard(who, "Set-Mailbox", map[string]any{"n": i})
			}
		}()
	}
	wg.Wait()
	rs, _, err := e.m.Requests(e.admin(), pam.RequestFilter{Limit: pam.MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.State != pam.Approved || len(r.Decisions) != 1 {
			t.Errorf("request %s: %s with %d decisions", r.ID, r.State, len(r.Decisions))
		}
	}
}

func TestAuditSearch(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	g := e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	e.guard("alice", "New-MoveRequest", nil)
	e.guard("dave", "New-MoveRequest", nil)
	search := func(f pam.EventFilter) []pam.EventType {
		t.Helper()
		evs, _, err := e.m.Audit(e.admin(), f)
		if err != nil {
			t.Fatal(err)
		}
		return types(evs)
	}
	for name, tc := range map[string]struct {
		f    pam.EventFilter
		want []pam.EventType
	}{
		"actor in any spelling": {pam.EventFilter{Actor: "ＡＬＩＣＥ"}, []pam.EventType{pam.EventRequestSubmitted, pam.EventGuardAllowed, pam.EventGuardFinished}},
		"request":               {pam.EventFilter{RequestID: g.ID, Types: []pam.EventType{pam.EventRequestApproved, pam.EventGuardAllowed}}, []pam.EventType{pam.EventRequestApproved, pam.EventGuardAllowed}},
		"outcome":               {pam.EventFilter{Outcome: "not_approved"}, []pam.EventType{pam.EventGuardDenied}},
		"newest first":          {pam.EventFilter{Descending: true, Limit: 2}, []pam.EventType{pam.EventGuardDenied, pam.EventGuardFinished}},
		"time range":            {pam.EventFilter{Until: epoch}, []pam.EventType{}},
		"a negative cursor":     {pam.EventFilter{After: -1, Outcome: "not_approved"}, []pam.EventType{pam.EventGuardDenied}},
	} {
		t.Run(name, func(t *testing.T) {
			if d := cmp.Diff(tc.want, search(tc.f)); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
	for name, f := range map[string]pam.EventFilter{
		"bad actor":  {Actor: "a b"},
		"huge limit": {Limit: pam.MaxPageSize + 1},
		"NUL task":   {Task: "x\x00"},
	} {
		if _, _, err := e.m.Audit(e.admin(), f); !errors.Is(err, pam.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

// TestStoreTimeSource: with a store that supplies the time, decisions
// follow the store's clock, and fn's deadline is translated to the local
// clock.
func TestStoreTimeSource(t *testing.T) {
	local, remote := clock.NewMock(), clock.NewMock()
	local.Set(epoch.Add(-10 * time.Minute)) // this replica's clock is 10 minutes behind
	remote.Set(epoch)
	dir, _ := pam.NewStaticDirectory(testGroups)
	var said []error
	m, err := pam.New(fakes.TimedStore{OutboxStore: memory.New(), Clock: remote}, dir, &pam.Options{Clock: local, AdminGroup: "pam-admins",
		OnError: func(err error) { said = append(said, err) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(said) != 1 || !strings.Contains(said[0].Error(), "mock") {
		t.Errorf("a mock clock over a store that keeps time: OnError heard %v", said)
	}
	ctx := func(who string) context.Context { return pam.WithActor(context.Background(), who) }
	if _, err := m.CreatePolicy(ctx("admin"), movePolicy()); err != nil {
		t.Fatal(err)
	}
	r, _ := m.Submit(ctx("alice"), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "r", Duration: time.Hour})
	r, err = m.Approve(ctx("bob"), r.ID, "")
	if err != nil || !r.ApprovedAt.Equal(epoch) {
		t.Fatalf("approved at %v (%v), want the store's time %v", r.ApprovedAt, err, epoch)
	}
	var deadline time.Time
	if err := m.Guard(ctx("alice"), pam.Op{Task: "New-MoveRequest"}, func(c context.Context) error {
		deadline, _ = c.Deadline()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := local.Now().Add(time.Hour); !deadline.Equal(want) {
		t.Errorf("fn's deadline %v, want an hour from the local clock's now, %v", deadline, want)
	}
	remote.Add(time.Hour) // the store's clock passes the end; the local one does not
	if err := m.Guard(ctx("alice"), pam.Op{Task: "New-MoveRequest"}, nop); !errors.Is(err, pam.ErrNotApproved) {
		t.Errorf("Guard after the store's clock passed the window = %v", err)
	}
	if n, _ := m.Sweep(context.Background()); n != 1 {
		t.Errorf("Sweep recorded %d expiries, want 1", n)
	}
}

// TestGuardRevokedWhileDeciding revokes the grant after Guard has read it
// but before the run is recorded: the run must not happen.
func TestGuardRevokedWhileDeciding(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	g := e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	revoked := false
	e.store.FailCommit(func(tx *pam.Tx) error {
		if !revoked && len(tx.Events) == 1 && tx.Events[0].Type == pam.EventGuardAllowed {
			revoked = true
			if _, err := e.m.Revoke(e.admin(), g.ID, "now"); err != nil {
				t.Errorf("Revoke: %v", err)
			}
		}
		return nil
	})
	before := e.lastSeq()
	ran, err := e.guard("alice", "New-MoveRequest", nil)
	if ran || !errors.Is(err, pam.ErrNotApproved) {
		t.Fatalf("Guard racing a revocation: ran %v, %v", ran, err)
	}
	if d := cmp.Diff([]pam.EventType{pam.EventRequestRevoked, pam.EventGuardDenied}, types(e.eventsSince(before))); d != "" {
		t.Errorf("audit (-want +got):\n%s", d)
	}
}

// TestGuardDeclaredParameters: a task that declares its parameters fails
// closed on every operation that does not fit the declaration, before any
// condition runs, and the trail says why.
func TestGuardDeclaredParameters(t *testing.T) {
	cat := testCatalog
	cat.Tasks = map[string]pam.TaskSpec{"Set-Mailbox": {Params: []pam.ParamSpec{
		{Name: "mailbox", Type: pam.ParamString, Required: true},
		{Name: "quota_gb", Type: pam.ParamNumber, Required: true},
		{Name: "archive", Type: pam.ParamBoolean},
		{Name: "aliases", Type: pam.ParamArray},
		{Name: "labels", Type: pam.ParamObject},
	}}}
	e := newEnv(t, func(o *pam.Options) { o.Catalog = cat })
	e.policy(pam.Policy{ID: "big", Scope: pam.TaskScope("Set-Mailbox"), Approval: pam.Manual,
		ApproverGroups: []pam.ApproverGroup{{Group: "security"}}, Condition: "input.op.params.quota_gb > 1000"})

	for _, tc := range []struct {
		name    string
		params  map[string]any
		problem string // "" when the parameters fit
	}{
		{"fits, small", map[string]any{"mailbox": "x", "quota_gb": 5}, ""},
		{"fits, every parameter", map[string]any{"mailbox": "x", "quota_gb": 5.5, "archive": true, "aliases": []any{"y"}, "labels": map[string]any{"a": "b"}}, ""},
		{"required missing", map[string]any{"mailbox": "x"}, "quota_gb is required"},
		{"no parameters", nil, "mailbox is required"},
		{"unknown parameter", map[string]any{"mailbox": "x", "quota_gb": 5, "quota": 5000}, "quota is not declared"},
		{"null", map[string]any{"mailbox": "x", "quota_gb": nil}, "quota_gb must be a number, not null"},
		{"boolean for a number", map[string]any{"mailbox": "x", "quota_gb": true}, "quota_gb must be a number, not a boolean"},
		{"string for a number", map[string]any{"mailbox": "x", "quota_gb": "5000"}, "quota_gb must be a number, not a string"},
		{"number for a string", map[string]any{"mailbox": 7, "quota_gb": 5}, "mailbox must be a string, not a number"},
		{"object for an array", map[string]any{"mailbox": "x", "quota_gb": 5, "aliases": map[string]any{}}, "aliases must be an array, not an object"},
		{"array for a boolean", map[string]any{"mailbox": "x", "quota_gb": 5, "archive": []any{}}, "archive must be a boolean, not an array"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := e.m.Check(e.as("alice"), pam.Op{Task: "Set-Mailbox", Params: tc.params})
			if err != nil {
				t.Fatal(err)
			}
			before := e.lastSeq()
			ran, gerr := e.guard("alice", "Set-Mailbox", tc.params)
			if tc.problem == "" {
				if !ran || res.ParamsError != "" || res.Policies[0].Covered {
					t.Fatalf("fitting parameters: ran %v (%v), %+v", ran, gerr, res)
				}
				return
			}
			if ran || !errors.Is(gerr, pam.ErrNotApproved) || !res.Policies[0].Covered {
				t.Fatalf("ran %v, err %v, covered %v: want denied without a grant", ran, gerr, res.Policies[0].Covered)
			}
			if !strings.Contains(res.ParamsError, tc.problem) {
				t.Errorf("ParamsError %q does not say %q", res.ParamsError, tc.problem)
			}
			evs := e.eventsSince(before)
			if len(evs) != 1 || evs[0].Type != pam.EventGuardDenied || !strings.Contains(evs[0].Detail["params_error"], tc.problem) {
				t.Errorf("trail: %+v", evs)
			}
		})
	}
	if err := (&pam.Catalog{Tasks: map[string]pam.TaskSpec{"T": {Params: []pam.ParamSpec{{Name: "a", Type: "date"}}}}}).Validate(); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("unknown type: %v", err)
	}
	if err := (&pam.Catalog{Tasks: map[string]pam.TaskSpec{"T": {Params: []pam.ParamSpec{{Name: "a", Type: pam.ParamString}, {Name: "a", Type: pam.ParamNumber}}}}}).Validate(); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("a parameter declared twice: %v", err)
	}
}

// TestPrivilegedRolesNeedExactSpellings: a system account or an admin is
// reached by its own spelling (ASCII case aside), never by a lookalike
// that canonicalises to it; "auto:" names no person.
func TestPrivilegedRolesNeedExactSpellings(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	for _, tc := range []struct {
		who    string
		exempt bool
	}{
		{"svc-backup", true},
		{"SVC-Backup", true},
		{"ＳＶＣ-ＢＡＣＫＵＰ", false},       // full-width
		{"svc-bac\u212Aup", false},  // Kelvin sign
		{"svc-backup\u0301", false}, // not the same identity at all
	} {
		err := e.m.Guard(e.as(tc.who), pam.Op{Task: "New-MoveRequest"}, nop)
		if got := err == nil; got != tc.exempt {
			t.Errorf("%q: exempt %v (%v), want %v", tc.who, got, err, tc.exempt)
		}
	}
	for _, tc := range []struct {
		who   string
		admin bool
	}{
		{"admin", true},
		{"ADMIN", true},
		{"ＡＤＭＩＮ", false},
		{"ａdmin", false},
	} {
		p := movePolicy()
		p.ID = "p-" + strings.ToLower(fmt.Sprintf("%x", tc.who))
		_, err := e.m.CreatePolicy(e.as(tc.who), p)
		if tc.admin && err != nil && !errors.Is(err, pam.ErrExists) || !tc.admin && !errors.Is(err, pam.ErrForbidden) {
			t.Errorf("%q creating a policy: %v, want admin=%v", tc.who, err, tc.admin)
		}
		if ok, err := e.m.IsAdmin(e.as(tc.who)); ok != tc.admin || err != nil {
			t.Errorf("%q: IsAdmin %v, %v", tc.who, ok, err)
		}
	}
	for _, who := range []string{"auto:policy", "AUTO:rule", "auto:"} {
		if _, err := e.m.Submit(e.as(who), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "r"}); !errors.Is(err, pam.ErrNoActor) {
			t.Errorf("%q submitting: %v, want ErrNoActor", who, err)
		}
	}
}

// cancelingStore cancels the caller's context when Guard reads the grants:
// the caller gives up while Guard decides.
type cancelingStore struct {
	pam.OutboxStore
	cancel context.CancelFunc
}

func (s cancelingStore) Grants(ctx context.Context, requester string, policyIDs []string) ([]pam.Grant, error) {
	s.cancel()
	return s.OutboxStore.Grants(context.WithoutCancel(ctx), requester, policyIDs)
}

// TestDenialRecordedAfterTheCallerGaveUp: the denial is in the trail even
// though the caller's context ended before it was written.
func TestDenialRecordedAfterTheCallerGaveUp(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var store pam.OutboxStore = memory.New()
	dir, _ := pam.NewStaticDirectory(testGroups)
	m, err := pam.New(cancelingStore{store, cancel}, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.CreatePolicy(pam.WithActor(context.Background(), "admin"), movePolicy()); err != nil {
		t.Fatal(err)
	}
	err = m.Guard(pam.WithActor(ctx, "alice"), pam.Op{Task: "New-MoveRequest"}, nop)
	if !errors.Is(err, pam.ErrNotApproved) || ctx.Err() == nil {
		t.Fatalf("Guard: %v (caller's context: %v)", err, ctx.Err())
	}
	evs, _, err := m.Audit(pam.WithActor(context.Background(), "admin"), pam.EventFilter{Types: []pam.EventType{pam.EventGuardDenied}})
	if err != nil || len(evs) != 1 || evs[0].Actor != "alice" {
		t.Errorf("denials in the trail: %+v, %v", evs, err)
	}
}

// cuttingStore runs cut once, while Guard reads the grants: a policy
// change commits between Guard's decision and its start event.
type cuttingStore struct {
	pam.OutboxStore
	cut  func()
	once *sync.Once
}

func (s *cuttingStore) Grants(ctx context.Context, requester string, policyIDs []string) ([]pam.Grant, error) {
	g, err := s.OutboxStore.Grants(ctx, requester, policyIDs)
	s.once.Do(s.cut)
	return g, err
}

// TestNoRunStartsAfterACut: a policy change that cuts the grant, committed
// while Guard decides, makes Guard decide again: fn does not run and the
// trail has no guard.allowed after the cut.
func TestNoRunStartsAfterACut(t *testing.T) {
	inner := memory.New()
	dir, _ := pam.NewStaticDirectory(testGroups)
	var m *pam.Manager
	store := &cuttingStore{OutboxStore: inner, once: &sync.Once{}}
	m, err := pam.New(store, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	admin, alice := pam.WithActor(context.Background(), "admin"), pam.WithActor(context.Background(), "alice")
	p, err := m.CreatePolicy(admin, pam.Policy{ID: "move", Scope: pam.TaskScope("New-MoveRequest"), Approval: pam.Auto})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Submit(alice, pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "r"}); err != nil {
		t.Fatal(err)
	}
	store.cut = func() {
		p.Condition = `input.op.params.n != 1` // a cut: MinGrantVersion raised
		if _, err := m.UpdatePolicy(admin, p); err != nil {
			t.Error(err)
		}
	}
	ran := false
	err = m.Guard(alice, pam.Op{Task: "New-MoveRequest"}, func(context.Context) error { ran = true; return nil })
	if ran || !errors.Is(err, pam.ErrNotApproved) {
		t.Fatalf("Guard across a cut: ran %v, %v; want not run, ErrNotApproved", ran, err)
	}
	evs, _, err := m.Audit(admin, pam.EventFilter{Types: []pam.EventType{pam.EventGuardAllowed}})
	if err != nil || len(evs) != 0 {
		t.Errorf("guard.allowed events: %+v, %v", evs, err)
	}
}
