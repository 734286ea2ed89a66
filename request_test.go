package pam_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/zerostanding/pam"
)

func TestSubmit(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	r := e.submit("Alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "leaver", Ticket: "INC-7"})
	want := pam.Request{
		ID: r.ID, Requester: "alice", Scope: pam.TaskScope("New-MoveRequest"), PolicyID: "move", Reason: "leaver", Ticket: "INC-7",
		Duration: pam.DefaultDuration, State: pam.Pending, PolicyVersion: 1, CreatedAt: epoch, PendingUntil: epoch.Add(24 * time.Hour), Version: 1,
	}
	if d := cmp.Diff(want, r); d != "" {
		t.Errorf("Submit (-want +got):\n%s", d)
	}
	if !strings.HasPrefix(r.ID, "req_") {
		t.Errorf("ID %q", r.ID)
	}
	got, err := e.m.Request(e.as("bob"), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(r, got); d != "" {
		t.Errorf("Request (-want +got):\n%s", d)
	}
	// The approvers hear of it, one message each; the requester, though
	// in the group, does not.
	e.delivered()
	e.dir.SetMembers("mailbox-managers", "bob", "alice", "carol")
	e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	notes := e.delivered()
	if len(notes) != 2 || notes[0].Type != pam.EventRequestSubmitted || notes[1].Type != pam.EventRequestSubmitted || notes[0].ID == notes[1].ID {
		t.Fatalf("notifications: %+v", notes)
	}
	if d := cmp.Diff([]string{"bob", "carol"}, append(notes[0].Recipients, notes[1].Recipients...)); d != "" {
		t.Errorf("recipients (-want +got):\n%s", d)
	}
}

func TestSubmitBinding(t *testing.T) {
	e := newEnv(t)
	e.policy(pam.Policy{ID: "recip", Scope: pam.RoleGroupScope("Recipient Management"), Approval: pam.Auto})
	e.policy(pam.Policy{ID: "journal", Scope: pam.RoleScope("Journaling"), Approval: pam.Auto})
	e.policy(pam.Policy{ID: "vip-move", Scope: pam.TaskScope("New-MoveRequest"), Approval: pam.Auto, Condition: "input.op.params.mailbox in data.pam.vip"})

	for _, tc := range []struct {
		name   string
		n      pam.RequestInput
		policy string
		scope  pam.Scope
		err    error
	}{
		{"task under a role group", pam.RequestInput{Scope: pam.TaskScope("Set-Mailbox")}, "recip", pam.TaskScope("Set-Mailbox"), nil},
		{"role under a role group", pam.RequestInput{Scope: pam.RoleScope("Move Mailboxes")}, "recip", pam.RoleScope("Move Mailboxes"), nil},
		{"role group itself", pam.RequestInput{Scope: pam.RoleGroupScope("Recipient Management")}, "recip", pam.RoleGroupScope("Recipient Management"), nil},
		{"role", pam.RequestInput{Scope: pam.RoleScope("Journaling")}, "journal", pam.RoleScope("Journaling"), nil},
		{"task two policies cover", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")}, "", pam.Scope{}, pam.ErrAmbiguous},
		{"named policy", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), PolicyID: "vip-move"}, "vip-move", pam.TaskScope("New-MoveRequest"), nil},
		{"policy only", pam.RequestInput{PolicyID: "journal"}, "journal", pam.RoleScope("Journaling"), nil},
		{"named policy not covering", pam.RequestInput{Scope: pam.TaskScope("Set-Mailbox"), PolicyID: "journal"}, "", pam.Scope{}, pam.ErrNoPolicy},
		{"unknown policy", pam.RequestInput{Scope: pam.TaskScope("Set-Mailbox"), PolicyID: "nope"}, "", pam.Scope{}, pam.ErrNoPolicy},
		{"uncovered task", pam.RequestInput{Scope: pam.TaskScope("Set-Password")}, "", pam.Scope{}, pam.ErrNoPolicy},
		{"role not covered by a task policy", pam.RequestInput{Scope: pam.RoleScope("Retention")}, "", pam.Scope{}, pam.ErrNoPolicy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.n.Reason = "because"
			r, err := e.m.Submit(e.as("alice"), tc.n)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Submit = %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if r.PolicyID != tc.policy || r.Scope != tc.scope {
				t.Errorf("bound to %s with scope %s, want %s with %s", r.PolicyID, r.Scope, tc.policy, tc.scope)
			}
		})
	}
	_, err := e.m.Submit(e.as("alice"), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "x"})
	var ae *pam.AmbiguousError
	if !errors.As(err, &ae) || !cmp.Equal(ae.PolicyIDs, []string{"recip", "vip-move"}) {
		t.Errorf("AmbiguousError = %v", err)
	}
}

func TestSubmitValidation(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	before := e.lastSeq()
	for name, tc := range map[string]struct {
		n    pam.RequestInput
		want error
	}{
		"empty reason":         {pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")}, pam.ErrInvalid},
		"reason too long":      {pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: strings.Repeat("r", pam.MaxReasonLen+1)}, pam.ErrInvalid},
		"reason with NUL":      {pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "a\x00b"}, pam.ErrInvalid},
		"reason invalid UTF-8": {pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "a\xc3"}, pam.ErrInvalid},
		"no scope":             {pam.RequestInput{Reason: "x"}, pam.ErrInvalid},
		"unknown kind":         {pam.RequestInput{Scope: pam.Scope{Kind: "cmdlet", Name: "x"}, Reason: "x"}, pam.ErrInvalid},
		"task with NUL":        {pam.RequestInput{Scope: pam.TaskScope("New\x00"), Reason: "x"}, pam.ErrInvalid},
		"negative duration":    {pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "x", Duration: -time.Second}, pam.ErrInvalid},
		"ticket with newline":  {pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "x", Ticket: "a\nb"}, pam.ErrInvalid},
		"over the maximum":     {pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "x", Duration: 8*time.Hour + 1}, pam.ErrDurationTooLong},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := e.m.Submit(e.as("alice"), tc.n); !errors.Is(err, tc.want) {
				t.Errorf("Submit = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := e.m.Submit(context.Background(), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "x"}); !errors.Is(err, pam.ErrNoActor) {
		t.Errorf("Submit without actor = %v, want ErrNoActor", err)
	}
	if got := e.lastSeq(); got != before {
		t.Errorf("rejected submissions were audited (%d events)", got-before)
	}
	if rs, _, _ := e.m.Requests(e.admin(), pam.RequestFilter{}); len(rs) != 0 {
		t.Errorf("rejected submissions stored: %+v", rs)
	}
	// Exactly the maximum is fine.
	r := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Duration: 8 * time.Hour})
	if r.Duration != 8*time.Hour {
		t.Errorf("duration %v", r.Duration)
	}
}

func TestRequestRule(t *testing.T) {
	e := newEnv(t)
	p := movePolicy()
	p.RequestRule = `
deny contains "reason must name a ticket like INC-1234" if not regex.match(` + "`INC-[0-9]+`" + `, input.request.reason)
deny contains "only on weekdays" if time.weekday(input.now) in {"Saturday", "Sunday"}
deny contains "no more than 2 hours" if input.request.duration > time.parse_duration_ns("2h")
`
	e.policy(p)
	_, err := e.m.Submit(e.as("alice"), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "just because"})
	var re *pam.RejectedError
	if !errors.As(err, &re) || !errors.Is(err, pam.ErrRejected) {
		t.Fatalf("Submit = %v, want RejectedError", err)
	}
	if d := cmp.Diff([]string{"no more than 2 hours", "reason must name a ticket like INC-1234"}, re.Messages); d != "" {
		t.Errorf("messages (-want +got):\n%s", d)
	}
	e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "INC-1234 leaver", Duration: 2 * time.Hour})
	e.clk.Set(time.Date(2026, 11, 7, 12, 0, 0, 0, time.UTC)) // Saturday
	_, err = e.m.Submit(e.as("alice"), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "INC-1234", Duration: time.Hour})
	if !errors.As(err, &re) || len(re.Messages) != 1 || re.Messages[0] != "only on weekdays" {
		t.Errorf("Saturday: %v", err)
	}
	// A rule that errors rejects (fail closed).
	p2 := pam.Policy{ID: "strict", Scope: pam.TaskScope("Set-Password"), Approval: pam.Auto,
		RequestRule: `deny contains "x" if to_number(input.request.reason) > 1`}
	e.policy(p2)
	if _, err := e.m.Submit(e.as("alice"), pam.RequestInput{Scope: pam.TaskScope("Set-Password"), Reason: "words"}); !errors.Is(err, pam.ErrRejected) {
		t.Errorf("erroring rule: %v, want ErrRejected", err)
	}
}

func TestAutomaticApproval(t *testing.T) {
	t.Run("auto policy", func(t *testing.T) {
		e := newEnv(t)
		e.policy(pam.Policy{ID: "auto", Scope: pam.TaskScope("Set-Mailbox"), Approval: pam.Auto})
		e.clk.Add(time.Minute)
		r := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("Set-Mailbox")})
		if r.State != pam.Approved || !r.ApprovedAt.Equal(e.clk.Now()) || !r.ExpiresAt.Equal(e.clk.Now().Add(4*time.Hour)) {
			t.Errorf("auto policy: %+v", r)
		}
		if len(r.Decisions) != 1 || !r.Decisions[0].Automatic || r.Decisions[0].Approver != "auto:policy" {
			t.Errorf("decisions: %+v", r.Decisions)
		}
		want := []pam.EventType{pam.EventPolicyCreated, pam.EventRequestSubmitted, pam.EventRequestDecision, pam.EventRequestApproved}
		if d := cmp.Diff(want, types(e.events())); d != "" {
			t.Errorf("audit (-want +got):\n%s", d)
		}
		if n := e.delivered(); len(n) != 1 || n[0].Type != pam.EventRequestApproved || n[0].Recipients[0] != "alice" {
			t.Errorf("notifications: %+v", n)
		}
	})
	t.Run("rule", func(t *testing.T) {
		e := newEnv(t)
		p := movePolicy()
		p.AutoApproveRule = `approve if { input.request.duration <= time.parse_duration_ns("1h"); startswith(input.request.ticket, "CHG-") }`
		e.policy(p)
		r := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Duration: time.Hour, Ticket: "CHG-9"})
		if r.State != pam.Approved || r.Decisions[0].Approver != "auto:rule" {
			t.Errorf("rule approved: %+v", r)
		}
		r = e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Duration: 2 * time.Hour, Ticket: "CHG-9"})
		if r.State != pam.Pending {
			t.Errorf("rule did not approve yet state %s", r.State)
		}
	})
	t.Run("approvers", func(t *testing.T) {
		onCall := pam.ApproverFunc(func(_ context.Context, r pam.Request, p pam.Policy) (pam.Review, error) {
			switch r.Ticket {
			case "ok":
				return pam.Review{Verdict: pam.Approve, By: "oncall", Comment: "on call"}, nil
			case "no":
				return pam.Review{Verdict: pam.Deny, By: "oncall"}, nil
			case "err":
				return pam.Review{}, errors.New("schedule unavailable")
			case "weird":
				return pam.Review{Verdict: "maybe"}, nil
			case "bad name":
				return pam.Review{Verdict: pam.Approve, By: "on\x00call"}, nil
			}
			return pam.Review{}, nil
		})
		e := newEnv(t, func(o *pam.Options) { o.Approvers = []pam.Approver{onCall} })
		e.policy(movePolicy())
		for ticket, want := range map[string]pam.State{"ok": pam.Approved, "no": pam.Denied, "err": pam.Pending, "weird": pam.Pending, "bad name": pam.Pending, "": pam.Pending} {
			r := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Ticket: ticket})
			if r.State != want {
				t.Errorf("ticket %q: %s, want %s", ticket, r.State, want)
			}
			if want != pam.Pending && (r.Decisions[0].Approver != "auto:oncall" || !r.Decisions[0].Automatic) {
				t.Errorf("ticket %q: decision %+v", ticket, r.Decisions)
			}
		}
		if errs := e.errors.Take(); len(errs) != 3 {
			t.Errorf("OnError got %v, want the three failing reviews", errs)
		}
	})
}

func TestPendingExpiryBoundary(t *testing.T) {
	for _, tc := range []struct {
		offset time.Duration
		want   pam.State
	}{{-time.Nanosecond, pam.Pending}, {0, pam.Expired}, {time.Nanosecond, pam.Expired}} {
		t.Run(tc.offset.String(), func(t *testing.T) {
			e := newEnv(t)
			p := movePolicy()
			p.PendingTTL = 2 * time.Hour
			e.policy(p)
			r := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
			e.clk.Set(epoch.Add(2*time.Hour + tc.offset))
			got, _ := e.m.Request(e.admin(), r.ID)
			if got.State != tc.want {
				t.Errorf("state %s, want %s", got.State, tc.want)
			}
			_, err := e.m.Approve(e.as("bob"), r.ID, "late")
			if (err == nil) != (tc.want == pam.Pending) {
				t.Errorf("Approve = %v at state %s", err, tc.want)
			}
			if err != nil && !errors.Is(err, pam.ErrWrongState) {
				t.Errorf("Approve of expired = %v, want ErrWrongState", err)
			}
			n, err := e.m.Sweep(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if wantN := map[bool]int{true: 1, false: 0}[tc.want == pam.Expired]; n != wantN {
				t.Errorf("Sweep recorded %d, want %d", n, wantN)
			}
		})
	}
}

func TestWindowStartsAtApproval(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	r := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Duration: time.Hour})
	e.clk.Add(3 * time.Hour) // approvers take their time
	r = e.approve("bob", r.ID)
	approvedAt := epoch.Add(3 * time.Hour)
	if !r.ApprovedAt.Equal(approvedAt) || !r.ExpiresAt.Equal(approvedAt.Add(time.Hour)) {
		t.Fatalf("window %v..%v, want from %v", r.ApprovedAt, r.ExpiresAt, approvedAt)
	}
	for _, tc := range []struct {
		at   time.Duration
		want bool
	}{{0, true}, {time.Hour - time.Nanosecond, true}, {time.Hour, false}, {time.Hour + time.Nanosecond, false}} {
		e.clk.Set(approvedAt.Add(tc.at))
		ran, err := e.guard("alice", "New-MoveRequest", nil)
		if ran != tc.want {
			t.Errorf("Guard at approval+%v: ran %v (%v), want %v", tc.at, ran, err, tc.want)
		}
		if !tc.want && !errors.Is(err, pam.ErrNotApproved) {
			t.Errorf("Guard at approval+%v = %v, want ErrNotApproved", tc.at, err)
		}
		got, _ := e.m.Request(e.admin(), r.ID)
		if wantState := map[bool]pam.State{true: pam.Approved, false: pam.Expired}[tc.want]; got.State != wantState {
			t.Errorf("state at approval+%v = %s, want %s", tc.at, got.State, wantState)
		}
	}
}

func TestSweepAndRun(t *testing.T) {
	e := newEnv(t, func(o *pam.Options) { o.SweepInterval = 10 * time.Minute })
	e.policy(movePolicy())
	pending := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	granted := e.grant("carol", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Duration: time.Hour})
	e.delivered()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.m.Run(ctx) }()
	// Run creates its ticker before its first sweep; advancing the clock
	// before that would be lost.
	waitFor(t, func() bool { return e.store.RequestsCalls() > 0 })

	e.clk.Add(time.Hour + 10*time.Minute) // past the window, not past pending TTL
	waitFor(t, func() bool { r, _ := e.store.Request(ctx, granted.ID); return r.State == pam.Expired })
	e.clk.Add(24 * time.Hour)
	waitFor(t, func() bool { r, _ := e.store.Request(ctx, pending.ID); return r.State == pam.Expired })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v", err)
	}
	r, _ := e.store.Request(context.Background(), granted.ID)
	if !r.ClosedAt.Equal(granted.ExpiresAt) {
		t.Errorf("expired request closed at %v, want its ExpiresAt %v", r.ClosedAt, granted.ExpiresAt)
	}
	var expired []string
	for _, ev := range e.events() {
		if ev.Type == pam.EventRequestExpired {
			expired = append(expired, ev.RequestID+"/"+ev.Detail["from"])
		}
	}
	if d := cmp.Diff([]string{granted.ID + "/approved", pending.ID + "/pending"}, expired); d != "" {
		t.Errorf("expiry events (-want +got):\n%s", d)
	}
	var notes []string
	for _, n := range e.delivered() {
		if n.Type == pam.EventRequestExpired {
			notes = append(notes, n.Recipients[0]+"/"+n.Request.ID)
		}
	}
	if d := cmp.Diff([]string{"alice/" + pending.ID, "carol/" + granted.ID}, notes); d != "" {
		t.Errorf("expiry notifications (-want +got):\n%s", d)
	}
	// Terminal states never change again.
	if _, err := e.m.Revoke(e.admin(), granted.ID, ""); !errors.Is(err, pam.ErrWrongState) {
		t.Errorf("Revoke of expired = %v", err)
	}
	if n, _ := e.m.Sweep(context.Background()); n != 0 {
		t.Errorf("second sweep recorded %d", n)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCancelAndRevoke(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	r := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	if _, err := e.m.Cancel(e.as("bob"), r.ID, ""); !errors.Is(err, pam.ErrForbidden) {
		t.Errorf("Cancel by another = %v, want ErrForbidden", err)
	}
	c, err := e.m.Cancel(e.as("ALICE"), r.ID, "not needed")
	if err != nil || c.State != pam.Canceled || c.ClosedBy != "alice" {
		t.Fatalf("Cancel = %+v, %v", c, err)
	}
	if _, err := e.m.Approve(e.as("bob"), r.ID, ""); !errors.Is(err, pam.ErrWrongState) {
		t.Errorf("Approve of canceled = %v", err)
	}
	if _, err := e.m.Cancel(e.as("alice"), "req_nope", ""); !errors.Is(err, pam.ErrNotFound) {
		t.Errorf("Cancel of unknown = %v", err)
	}

	for _, who := range []string{"admin", "carol", "alice"} {
		t.Run("revoke by "+who, func(t *testing.T) {
			g := e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
			// An outsider may not see the request, so is not told it exists.
			if _, err := e.m.Revoke(e.as("mallory"), g.ID, ""); !errors.Is(err, pam.ErrNotFound) {
				t.Errorf("Revoke by outsider = %v, want ErrNotFound", err)
			}
			if _, err := e.m.Cancel(e.as("alice"), g.ID, ""); !errors.Is(err, pam.ErrWrongState) {
				t.Errorf("Cancel of approved = %v", err)
			}
			if ran, _ := e.guard("alice", "New-MoveRequest", nil); !ran {
				t.Fatal("Guard before revoke did not run")
			}
			rv, err := e.m.Revoke(e.as(who), g.ID, "incident over")
			if err != nil || rv.State != pam.Revoked || rv.ClosedBy != who {
				t.Fatalf("Revoke = %+v, %v", rv, err)
			}
			if ran, err := e.guard("alice", "New-MoveRequest", nil); ran || !errors.Is(err, pam.ErrNotApproved) {
				t.Errorf("Guard after revoke: ran %v, %v", ran, err)
			}
			if _, err := e.m.Revoke(e.as(who), g.ID, ""); !errors.Is(err, pam.ErrWrongState) {
				t.Errorf("second revoke = %v", err)
			}
		})
	}
	pend := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	if _, err := e.m.Revoke(e.admin(), pend.ID, ""); !errors.Is(err, pam.ErrWrongState) {
		t.Errorf("Revoke of pending = %v", err)
	}
	for _, bad := range []string{"", "a\x00", strings.Repeat("x", 300)} {
		if _, err := e.m.Revoke(e.admin(), bad, ""); !errors.Is(err, pam.ErrInvalid) {
			t.Errorf("Revoke(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := e.m.Revoke(e.admin(), pend.ID, "bad\x00comment"); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("NUL in comment = %v", err)
	}
}

func TestRequestsListing(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	var ids []string
	for i := range 7 {
		who := []string{"alice", "dave"}[i%2]
		ids = append(ids, e.submit(who, pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Duration: time.Hour}).ID)
	}
	e.approve("bob", ids[0])
	e.clk.Add(2 * time.Hour) // ids[0] expires, unrecorded
	rs, next, err := e.m.Requests(e.admin(), pam.RequestFilter{Requester: "ALICE", States: []pam.State{pam.Expired}})
	if err != nil || next != "" || len(rs) != 1 || rs[0].ID != ids[0] || rs[0].State != pam.Expired {
		t.Fatalf("expired of alice: %+v %q %v", rs, next, err)
	}
	rs, _, _ = e.m.Requests(e.admin(), pam.RequestFilter{States: []pam.State{pam.Approved}})
	if len(rs) != 0 {
		t.Errorf("expired request listed as approved: %+v", rs)
	}
	var seen []string
	f := pam.RequestFilter{Limit: 3}
	for {
		page, next, err := e.m.Requests(e.admin(), f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page {
			seen = append(seen, r.ID)
		}
		if next == "" {
			break
		}
		f.After = next
	}
	if len(seen) != 7 {
		t.Errorf("paged through %d requests, want 7", len(seen))
	}
	if _, _, err := e.m.Requests(e.admin(), pam.RequestFilter{Limit: pam.MaxPageSize + 1}); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("oversized page = %v", err)
	}
}

// TestReadsAreAuthorised: the engine enforces who reads what, whatever
// the front end.
func TestReadsAreAuthorised(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	r := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "leaver"})
	bg := context.Background()

	for _, tc := range []struct {
		name string
		call func() error
		want error // nil: allowed
	}{
		{"the requester reads her request", func() error { _, err := e.m.Request(e.as("alice"), r.ID); return err }, nil},
		{"an approver reads it", func() error { _, err := e.m.Request(e.as("carol"), r.ID); return err }, nil},
		{"an admin reads it", func() error { _, err := e.m.Request(e.admin(), r.ID); return err }, nil},
		{"someone else is told it does not exist", func() error { _, err := e.m.Request(e.as("erin"), r.ID); return err }, pam.ErrNotFound},
		{"no actor", func() error { _, err := e.m.Request(bg, r.ID); return err }, pam.ErrNoActor},

		{"the requester lists her own", func() error {
			_, _, err := e.m.Requests(e.as("Alice"), pam.RequestFilter{Requester: "ALICE"})
			return err
		}, nil},
		{"a list without a requester is an admin's", func() error { _, _, err := e.m.Requests(e.as("alice"), pam.RequestFilter{}); return err }, pam.ErrForbidden},
		{"someone else's list", func() error {
			_, _, err := e.m.Requests(e.as("bob"), pam.RequestFilter{Requester: "alice"})
			return err
		}, pam.ErrForbidden},
		{"an admin lists everyone's", func() error { _, _, err := e.m.Requests(e.admin(), pam.RequestFilter{}); return err }, nil},
		{"no actor lists", func() error { _, _, err := e.m.Requests(bg, pam.RequestFilter{Requester: "alice"}); return err }, pam.ErrNoActor},

		{"the trail of one's own actions", func() error { _, _, err := e.m.Audit(e.as("alice"), pam.EventFilter{Actor: "alice"}); return err }, nil},
		{"the trail of a visible request", func() error { _, _, err := e.m.Audit(e.as("bob"), pam.EventFilter{RequestID: r.ID}); return err }, nil},
		{"the trail of an invisible request", func() error { _, _, err := e.m.Audit(e.as("erin"), pam.EventFilter{RequestID: r.ID}); return err }, pam.ErrForbidden},
		{"the trail of someone else", func() error { _, _, err := e.m.Audit(e.as("alice"), pam.EventFilter{Actor: "bob"}); return err }, pam.ErrForbidden},
		{"the whole trail", func() error { _, _, err := e.m.Audit(e.as("alice"), pam.EventFilter{}); return err }, pam.ErrForbidden},
		{"the whole trail, as an admin", func() error { _, _, err := e.m.Audit(e.admin(), pam.EventFilter{}); return err }, nil},
		{"the trail without an actor", func() error { _, _, err := e.m.Audit(bg, pam.EventFilter{}); return err }, pam.ErrNoActor},

		{"the outbox", func() error { _, _, err := e.m.Messages(e.as("bob"), pam.MessageFilter{}); return err }, pam.ErrForbidden},
		{"the outbox, as an admin", func() error { _, _, err := e.m.Messages(e.admin(), pam.MessageFilter{}); return err }, nil},
		{"verification", func() error { _, err := e.m.Verify(e.as("bob"), pam.VerifyOptions{}); return err }, pam.ErrForbidden},
		{"verification, as an admin", func() error { _, err := e.m.Verify(e.admin(), pam.VerifyOptions{}); return err }, nil},
		{"policies, as anyone", func() error { _, err := e.m.Policies(e.as("erin")); return err }, nil},
		{"policies without an actor", func() error { _, err := e.m.Policies(bg); return err }, pam.ErrNoActor},
		{"a policy without an actor", func() error { _, err := e.m.Policy(bg, "move"); return err }, pam.ErrNoActor},
		{"the catalog, as anyone", func() error { _, err := e.m.Catalog(e.as("erin")); return err }, nil},
		{"the catalog without an actor", func() error { _, err := e.m.Catalog(bg); return err }, pam.ErrNoActor},
	} {
		err := tc.call()
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}

	// What a non-admin sees of the trail is what the filter asked for.
	evs, _, err := e.m.Audit(e.as("bob"), pam.EventFilter{RequestID: r.ID})
	if err != nil || len(evs) == 0 {
		t.Fatalf("bob's view of the request's trail: %d events, %v", len(evs), err)
	}
	for _, ev := range evs {
		if ev.RequestID != r.ID {
			t.Errorf("bob sees event %d of request %q", ev.Seq, ev.RequestID)
		}
	}
}

func TestPendingLimit(t *testing.T) {
	e := newEnv(t, func(o *pam.Options) { o.MaxPending = 3 })
	e.policy(movePolicy())
	in := pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "r"}
	var first pam.Request
	for i := range 3 {
		r := e.submit("alice", in)
		if i == 0 {
			first = r
		}
	}
	seq := e.lastSeq()
	if _, err := e.m.Submit(e.as("alice"), in); !errors.Is(err, pam.ErrLimit) {
		t.Fatalf("fourth pending request: %v, want ErrLimit", err)
	}
	if e.lastSeq() != seq {
		t.Error("a refused submission was audited")
	}
	if rs, _, _ := e.m.Requests(e.as("alice"), pam.RequestFilter{Requester: "alice"}); len(rs) != 3 {
		t.Errorf("%d requests stored, want 3", len(rs))
	}
	e.submit("bob", in) // the bound is per requester
	if _, err := e.m.Cancel(e.as("alice"), first.ID, ""); err != nil {
		t.Fatal(err)
	}
	e.submit("alice", in)
	// Expired requests count no more, recorded or not.
	e.clk.Add(25 * time.Hour)
	for range 3 {
		e.submit("alice", in)
	}

	unbounded := newEnv(t, func(o *pam.Options) { o.MaxPending = -1 })
	unbounded.policy(movePolicy())
	for range pam.DefaultMaxPending + 5 {
		unbounded.submit("alice", in)
	}
	bounded := newEnv(t)
	bounded.policy(movePolicy())
	for range pam.DefaultMaxPending {
		bounded.submit("alice", in)
	}
	if _, err := bounded.m.Submit(bounded.as("alice"), in); !errors.Is(err, pam.ErrLimit) {
		t.Errorf("past the default bound: %v", err)
	}
}
