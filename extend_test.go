package pam_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/zerostanding/pam"
)

// The extension rules as the pure lifecycle applies them.
func TestLifecycleExtensionFacts(t *testing.T) {
	extending := func(decided ...string) pam.Request {
		r := lcRequest("extending")
		for _, who := range decided {
			r.Extension.Decisions = append(r.Extension.Decisions, pam.Decision{Approver: who, Verdict: pam.Approve, At: epoch})
		}
		return r
	}
	approvedBy := func(r pam.Request, who ...string) pam.Request {
		for _, w := range who {
			r.Decisions = append(r.Decisions, pam.Decision{Approver: w, Verdict: pam.Approve, At: epoch})
		}
		return r
	}
	window := func(r pam.Request, d time.Duration) pam.Request {
		r.ExpiresAt = r.ApprovedAt.Add(d)
		return r
	}
	withPolicy := func(change func(*pam.Policy)) func(*pam.Facts) {
		return func(f *pam.Facts) {
			p := *lcPolicy
			change(&p)
			f.Policy = &p
		}
	}
	for _, tc := range []struct {
		name   string
		r      pam.Request
		a      pam.Action
		change func(*pam.Facts)
		err    error
		ends   time.Duration // the window's length after, when not refused
		ext    pam.State     // the extension's state after
		types  []pam.EventType
	}{
		{name: "extend: the holder", r: lcRequest("approved"), a: pam.ActionExtend,
			ends: 2 * time.Hour, ext: pam.Pending, types: []pam.EventType{pam.EventRequestExtensionRequested}},
		{name: "extend: an admin", r: lcRequest("approved"), a: pam.ActionExtend,
			change: func(f *pam.Facts) { f.Actor, f.Admin = "admin", true }, err: pam.ErrForbidden},
		{name: "extend: an approver", r: lcRequest("approved"), a: pam.ActionExtend,
			change: func(f *pam.Facts) { f.Actor, f.MemberOf = "bob", pam.Membership{"bob": {0}} }, err: pam.ErrForbidden},
		{name: "extend: the policy was deleted", r: lcRequest("approved"), a: pam.ActionExtend,
			change: func(f *pam.Facts) { f.Policy = nil }, err: pam.ErrWrongState},
		{name: "extend: a grant a policy change cut", r: lcRequest("approved"), a: pam.ActionExtend,
			change: withPolicy(func(p *pam.Policy) { p.MinGrantVersion = 4 }), err: pam.ErrWrongState},
		{name: "extend: by nothing", r: lcRequest("approved"), a: pam.ActionExtend,
			change: func(f *pam.Facts) { f.By = 0 }, err: pam.ErrInvalid},
		{name: "extend: to the cap exactly", r: lcRequest("approved"), a: pam.ActionExtend,
			change: func(f *pam.Facts) { f.By = 22 * time.Hour }, ends: 2 * time.Hour, ext: pam.Pending,
			types: []pam.EventType{pam.EventRequestExtensionRequested}},
		{name: "extend: one nanosecond past the cap", r: lcRequest("approved"), a: pam.ActionExtend,
			change: func(f *pam.Facts) { f.By = 22*time.Hour + time.Nanosecond }, err: pam.ErrDurationTooLong},
		{name: "extend: past MaxDuration, within MaxExtendedDuration", r: lcRequest("approved"), a: pam.ActionExtend,
			change: func(f *pam.Facts) {
				withPolicy(func(p *pam.Policy) { p.MaxExtendedDuration = 48 * time.Hour })(f)
				f.By = 46 * time.Hour
			}, ends: 2 * time.Hour, ext: pam.Pending, types: []pam.EventType{pam.EventRequestExtensionRequested}},
		{name: "extend: rejected by the request rule", r: lcRequest("approved"), a: pam.ActionExtend,
			change: func(f *pam.Facts) { f.Rejected = &pam.RejectedError{PolicyID: "move", Messages: []string{"no"}} }, err: pam.ErrRejected},
		{name: "extend: settled at once", r: lcRequest("approved"), a: pam.ActionExtend,
			change: func(f *pam.Facts) {
				f.Verdict = pam.Decision{Approver: "auto:policy", Verdict: pam.Approve, At: lcNow, PolicyVersion: 3}
			}, ends: 3 * time.Hour, ext: pam.Approved,
			types: []pam.EventType{pam.EventRequestExtensionRequested, pam.EventRequestDecision, pam.EventRequestExtended}},
		{name: "extend: denied at once", r: lcRequest("approved"), a: pam.ActionExtend,
			change: func(f *pam.Facts) {
				f.Verdict = pam.Decision{Approver: "auto:ticket", Verdict: pam.Deny, At: lcNow, PolicyVersion: 3}
			}, ends: 2 * time.Hour, ext: pam.Denied,
			types: []pam.EventType{pam.EventRequestExtensionRequested, pam.EventRequestDecision, pam.EventRequestExtensionDenied}},
		{name: "extend: one nanosecond before the end", r: window(lcRequest("approved"), time.Hour+time.Nanosecond), a: pam.ActionExtend,
			ends: time.Hour + time.Nanosecond, ext: pam.Pending, types: []pam.EventType{pam.EventRequestExtensionRequested}},
		{name: "extend: at the end", r: window(lcRequest("approved"), time.Hour), a: pam.ActionExtend, err: pam.ErrWrongState},
		{name: "extend: while an extension is pending", r: extending(), a: pam.ActionExtend, err: pam.ErrWrongState},
		{name: "extend: a revoked grant", r: lcRequest("revoked"), a: pam.ActionExtend, err: pam.ErrWrongState},
		{name: "extend: a pending request", r: lcRequest("pending"), a: pam.ActionExtend, err: pam.ErrWrongState},

		// The extension is decided like the request: M of N, one group
		// each, never by the holder, once per approver.
		{name: "approve extension: by the holder", r: extending(), a: pam.ActionApprove,
			change: func(f *pam.Facts) { f.Actor, f.MemberOf = "alice", pam.Membership{"alice": {0}} }, err: pam.ErrSelfApproval},
		{name: "approve extension: twice", r: extending("bob"), a: pam.ActionApprove, err: pam.ErrAlreadyDecided},
		{name: "approve extension: not an approver", r: extending(), a: pam.ActionApprove,
			change: func(f *pam.Facts) { f.MemberOf = nil }, err: pam.ErrForbidden},
		{name: "approve extension: by who approved the request", r: approvedBy(extending(), "bob"), a: pam.ActionApprove,
			ends: 2 * time.Hour, ext: pam.Pending, types: []pam.EventType{pam.EventRequestDecision}},
		{name: "approve extension: the last seat", r: extending("bob", "carol"), a: pam.ActionApprove,
			change: func(f *pam.Facts) {
				f.Actor, f.MemberOf = "erin", pam.Membership{"bob": {0}, "carol": {0, 1}, "erin": {1}}
			}, ends: 3 * time.Hour, ext: pam.Approved, types: []pam.EventType{pam.EventRequestDecision, pam.EventRequestExtended}},
		{name: "approve extension: an earlier approver left", r: extending("bob", "carol"), a: pam.ActionApprove,
			change: func(f *pam.Facts) {
				f.Actor, f.MemberOf = "erin", pam.Membership{"carol": {0, 1}, "erin": {1}}
			}, ends: 2 * time.Hour, ext: pam.Pending, types: []pam.EventType{pam.EventRequestDecision}},
		{name: "approve extension: the cap fell meanwhile", r: extending(), a: pam.ActionApprove,
			change: withPolicy(func(p *pam.Policy) { p.MaxDuration = 2*time.Hour + time.Minute }), err: pam.ErrDurationTooLong},
		{name: "deny extension: the cap fell meanwhile", r: extending(), a: pam.ActionDeny,
			change: withPolicy(func(p *pam.Policy) { p.MaxDuration = 2*time.Hour + time.Minute }),
			ends:   2 * time.Hour, ext: pam.Denied, types: []pam.EventType{pam.EventRequestDecision, pam.EventRequestExtensionDenied}},
		{name: "deny extension", r: extending("bob"), a: pam.ActionDeny,
			change: func(f *pam.Facts) { f.Actor, f.MemberOf = "erin", pam.Membership{"erin": {1}} },
			ends:   2 * time.Hour, ext: pam.Denied, types: []pam.EventType{pam.EventRequestDecision, pam.EventRequestExtensionDenied}},
		{name: "approve extension: one nanosecond before the end", r: window(extending("bob", "carol"), time.Hour+time.Nanosecond), a: pam.ActionApprove,
			change: func(f *pam.Facts) {
				f.Actor, f.MemberOf = "erin", pam.Membership{"bob": {0}, "carol": {0, 1}, "erin": {1}}
			}, ends: 2*time.Hour + time.Nanosecond, ext: pam.Approved, types: []pam.EventType{pam.EventRequestDecision, pam.EventRequestExtended}},
		{name: "approve extension: at the end", r: lcRequest("extending, due"), a: pam.ActionApprove, err: pam.ErrWrongState},
		{name: "revoke with an extension pending", r: extending(), a: pam.ActionRevoke,
			ends: 2 * time.Hour, ext: pam.Expired, types: []pam.EventType{pam.EventRequestRevoked}},
		{name: "expire with an extension pending", r: lcRequest("extending, due"), a: pam.ActionExpire,
			ends: time.Hour, ext: pam.Expired, types: []pam.EventType{pam.EventRequestExpired}},
		{name: "cancel an extension", r: extending(), a: pam.ActionCancel, err: pam.ErrWrongState},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := lcFacts(tc.a)
			if tc.change != nil {
				tc.change(&f)
			}
			before := tc.r
			got, events, err := pam.Apply(tc.r, tc.a, f)
			if d := cmp.Diff(before, tc.r); d != "" {
				t.Fatalf("Apply changed its input (-before +after):\n%s", d)
			}
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				if d := cmp.Diff(tc.r, got); d != "" || events != nil {
					t.Errorf("a refused action changed the request (-before +after):\n%s", d)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := got.ExpiresAt.Sub(got.ApprovedAt); d != tc.ends {
				t.Errorf("window %v, want %v", d, tc.ends)
			}
			if got.Extension == nil || got.Extension.State != tc.ext {
				t.Errorf("extension %+v, want %s", got.Extension, tc.ext)
			}
			if d := cmp.Diff(tc.types, types(events)); d != "" {
				t.Errorf("events (-want +got):\n%s", d)
			}
			if slices.ContainsFunc(got.Decisions, func(d pam.Decision) bool { return d.At.Equal(lcNow) }) {
				t.Error("a decision on the extension went to the request's decisions")
			}
		})
	}
}

// extendPolicy needs two approvals from mailbox-managers and one from
// security; grants may grow to 12 hours in all.
func extendPolicy() pam.Policy {
	return pam.Policy{ID: "move", Scope: pam.TaskScope("New-MoveRequest"), Approval: pam.Manual,
		ApproverGroups: []pam.ApproverGroup{{Group: "mailbox-managers", MinApprovals: 2}, {Group: "security"}},
		MaxDuration:    8 * time.Hour, MaxExtendedDuration: 12 * time.Hour}
}

// TestExtendMofN: an extension is decided by the same quorum as the
// request, notifies the approvers and then the holder, and moves the
// window's end for Guard.
func TestExtendMofN(t *testing.T) {
	e := newEnv(t)
	e.policy(extendPolicy())
	r := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Duration: 2 * time.Hour})
	for _, who := range []string{"bob", "carol", "erin"} {
		r = e.approve(who, r.ID)
	}
	end := r.ExpiresAt
	e.delivered()
	e.clk.Add(time.Hour)
	seq := e.lastSeq()

	r, err := e.m.Extend(e.as("alice"), r.ID, 90*time.Minute, "the move is slow")
	if err != nil {
		t.Fatal(err)
	}
	if !r.ExpiresAt.Equal(end) || r.Extension == nil || r.Extension.State != pam.Pending || !r.ExtensionPending(e.clk.Now()) {
		t.Fatalf("extension asked: ends %v, %+v", r.ExpiresAt, r.Extension)
	}
	notes := e.delivered()
	var to []string
	for _, n := range notes {
		if n.Type != pam.EventRequestExtensionRequested || n.Request.Extension == nil {
			t.Errorf("notification %s", n.Type)
		}
		to = append(to, n.Recipients...)
	}
	if d := cmp.Diff([]string{"bob", "carol", "dave", "erin", "frank"}, to); d != "" {
		t.Errorf("extension requested, notified (-want +got):\n%s", d)
	}
	// It waits for bob again, though he approved the request.
	waiting, err := e.m.Reviewable(e.as("bob"))
	if err != nil || len(waiting) != 1 || waiting[0].ID != r.ID {
		t.Fatalf("Reviewable for bob: %v, %v", waiting, err)
	}
	if _, err := e.m.Approve(e.as("alice"), r.ID, ""); !errors.Is(err, pam.ErrSelfApproval) {
		t.Errorf("the holder approving their extension = %v", err)
	}
	e.approve("bob", r.ID)
	if _, err := e.m.Approve(e.as("bob"), r.ID, ""); !errors.Is(err, pam.ErrAlreadyDecided) {
		t.Errorf("bob approving twice = %v", err)
	}
	if waiting, _ := e.m.Reviewable(e.as("bob")); len(waiting) != 0 {
		t.Errorf("still waiting for bob: %v", waiting)
	}
	r = e.approve("carol", r.ID)
	if !r.ExpiresAt.Equal(end) {
		t.Fatalf("extended after two of three seats: %v", r.ExpiresAt)
	}
	// While it is pending the grant runs to its current end.
	if ran, err := e.guard("alice", "New-MoveRequest", nil); !ran || err != nil {
		t.Errorf("Guard while the extension is pending: ran %v, %v", ran, err)
	}
	r = e.approve("erin", r.ID)
	if !r.ExpiresAt.Equal(end.Add(90*time.Minute)) || r.Extension.State != pam.Approved || len(r.Extension.Decisions) != 3 || len(r.Decisions) != 3 {
		t.Fatalf("extended: ends %v, %+v, %d decisions on the request", r.ExpiresAt, r.Extension, len(r.Decisions))
	}
	events := e.eventsSince(seq)
	want := []pam.EventType{pam.EventRequestExtensionRequested, pam.EventRequestDecision, pam.EventRequestDecision,
		pam.EventGuardAllowed, pam.EventGuardFinished, pam.EventRequestDecision, pam.EventRequestExtended}
	if d := cmp.Diff(want, types(events)); d != "" {
		t.Fatalf("events (-want +got):\n%s", d)
	}
	if x := events[len(events)-1]; x.Actor != "erin" || x.Detail["expires_at"] != end.Add(90*time.Minute).Format(time.RFC3339Nano) || x.Detail["by"] != "1h30m0s" {
		t.Errorf("extended event %+v", x)
	}
	if notes := e.delivered(); len(notes) != 1 || notes[0].Type != pam.EventRequestExtended || notes[0].Recipients[0] != "alice" {
		t.Errorf("notifications %+v, want request.extended to alice", notes)
	}

	// The old end, to the nanosecond, and the new.
	e.clk.Set(end)
	if ran, err := e.guard("alice", "New-MoveRequest", nil); !ran || err != nil {
		t.Errorf("Guard at the old end: ran %v, %v", ran, err)
	}
	e.clk.Set(end.Add(90*time.Minute - time.Nanosecond))
	if ran, err := e.guard("alice", "New-MoveRequest", nil); !ran || err != nil {
		t.Errorf("Guard 1ns before the new end: ran %v, %v", ran, err)
	}
	e.clk.Set(end.Add(90 * time.Minute))
	if ran, err := e.guard("alice", "New-MoveRequest", nil); ran || !errors.Is(err, pam.ErrNotApproved) {
		t.Errorf("Guard at the new end: ran %v, %v", ran, err)
	}
	if _, err := e.m.Extend(e.as("alice"), r.ID, time.Hour, "again"); !errors.Is(err, pam.ErrWrongState) {
		t.Errorf("extending an expired grant = %v, want ErrWrongState", err)
	}
}

// TestExtendDenied: any deny denies the extension; the grant runs on to
// its end, and may be extended again.
func TestExtendDenied(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	r := e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Duration: 2 * time.Hour})
	if _, err := e.m.Extend(e.as("alice"), r.ID, time.Hour, "more"); err != nil {
		t.Fatal(err)
	}
	e.delivered()
	got, err := e.m.Deny(e.as("carol"), r.ID, "finish tomorrow")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != pam.Approved || !got.ExpiresAt.Equal(r.ExpiresAt) || got.Extension.State != pam.Denied {
		t.Fatalf("denied extension: %s until %v, %+v", got.State, got.ExpiresAt, got.Extension)
	}
	if notes := e.delivered(); len(notes) != 1 || notes[0].Type != pam.EventRequestExtensionDenied || notes[0].Recipients[0] != "alice" {
		t.Errorf("notifications %+v", notes)
	}
	if ran, err := e.guard("alice", "New-MoveRequest", nil); !ran || err != nil {
		t.Errorf("Guard after the extension was denied: ran %v, %v", ran, err)
	}
	if got, err = e.m.Extend(e.as("alice"), r.ID, 30*time.Minute, "just the last mailbox"); err != nil || got.Extension.State != pam.Pending || got.Extension.By != 30*time.Minute {
		t.Errorf("extend again: %+v, %v", got.Extension, err)
	}
}

// TestExtendAutoAndCap: an Auto policy extends at once, up to its cap and
// not a nanosecond past it; rules judge extensions as they judge
// submissions.
func TestExtendAutoAndCap(t *testing.T) {
	e := newEnv(t)
	auto := pam.Policy{ID: "move", Scope: pam.TaskScope("New-MoveRequest"), Approval: pam.Auto, MaxDuration: 4 * time.Hour}
	e.policy(auto)
	r := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Duration: time.Hour})
	seq := e.lastSeq()
	for _, tc := range []struct {
		who    string
		by     time.Duration
		reason string
		want   error
	}{
		{"alice", 3*time.Hour + time.Nanosecond, "more", pam.ErrDurationTooLong},
		{"alice", 0, "more", pam.ErrInvalid},
		{"alice", -time.Hour, "more", pam.ErrInvalid},
		{"alice", time.Hour, "", pam.ErrInvalid},
		{"alice", time.Hour, "bad\x00reason", pam.ErrInvalid},
		{"admin", time.Hour, "more", pam.ErrForbidden},
		{"mallory", time.Hour, "more", pam.ErrNotFound},
	} {
		if _, err := e.m.Extend(e.as(tc.who), r.ID, tc.by, tc.reason); !errors.Is(err, tc.want) {
			t.Errorf("Extend by %v as %s (%q) = %v, want %v", tc.by, tc.who, tc.reason, err, tc.want)
		}
	}
	if _, err := e.m.Extend(context.Background(), r.ID, time.Hour, "more"); !errors.Is(err, pam.ErrNoActor) {
		t.Errorf("Extend without an actor = %v", err)
	}
	if got := e.eventsSince(seq); len(got) != 0 {
		t.Fatalf("refused extensions wrote %v", types(got))
	}
	got, err := e.m.Extend(e.as("alice"), r.ID, 3*time.Hour, "more")
	if err != nil || !got.ExpiresAt.Equal(r.ExpiresAt.Add(3*time.Hour)) || got.Extension.State != pam.Approved || !got.Extension.Decisions[0].Automatic {
		t.Fatalf("auto extension: %v, %+v", err, got)
	}
	if d := cmp.Diff([]pam.EventType{pam.EventRequestExtensionRequested, pam.EventRequestDecision, pam.EventRequestExtended}, types(e.eventsSince(seq))); d != "" {
		t.Errorf("events (-want +got):\n%s", d)
	}
	if _, err := e.m.Extend(e.as("alice"), r.ID, time.Nanosecond, "more"); !errors.Is(err, pam.ErrDurationTooLong) {
		t.Errorf("past the cap = %v", err)
	}

	// Rules: at most an hour at a time, approved at once when short.
	auto = pam.Policy{ID: "journal", Scope: pam.TaskScope("Set-JournalRule"), Approval: pam.Manual,
		ApproverGroups: []pam.ApproverGroup{{Group: "security"}},
		RequestRule: `deny contains "extend by an hour at most" if {
	input.extension.by > 3600000000000
}`,
		AutoApproveRule: `approve if {
	input.extension.by <= 600000000000
	input.request.duration <= 7200000000000
}`}
	e.policy(auto)
	j := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("Set-JournalRule"), Duration: time.Hour})
	j = e.approve("erin", j.ID)
	if _, err := e.m.Extend(e.as("alice"), j.ID, 2*time.Hour, "more"); !errors.Is(err, pam.ErrRejected) || !strings.Contains(err.Error(), "an hour at most") {
		t.Errorf("an extension the request rule rejects = %v", err)
	}
	if got, err := e.m.Extend(e.as("alice"), j.ID, 10*time.Minute, "more"); err != nil || got.Extension.State != pam.Approved || got.Extension.Decisions[0].Approver != "auto:rule" {
		t.Errorf("an extension the auto rule approves: %+v, %v", got.Extension, err)
	}
	if got, err := e.m.Extend(e.as("alice"), j.ID, time.Hour, "more"); err != nil || got.Extension.State != pam.Pending {
		t.Errorf("an extension past what the auto rule approves: %+v, %v", got.Extension, err)
	}
}

// TestExtendBoundaries: an extension asked or granted one nanosecond
// before the end moves it; at the end the grant has expired, and the
// pending extension lapses with it.
func TestExtendBoundaries(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	r := e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Duration: time.Hour})
	e.clk.Set(r.ExpiresAt.Add(-time.Nanosecond))
	if _, err := e.m.Extend(e.as("alice"), r.ID, time.Hour, "more"); err != nil {
		t.Fatalf("Extend 1ns before the end: %v", err)
	}
	got := e.approve("carol", r.ID)
	if !got.ExpiresAt.Equal(r.ExpiresAt.Add(time.Hour)) {
		t.Fatalf("approved 1ns before the end: ends %v", got.ExpiresAt)
	}

	e.clk.Set(got.ExpiresAt.Add(-time.Nanosecond))
	if _, err := e.m.Extend(e.as("alice"), r.ID, time.Hour, "more"); err != nil {
		t.Fatal(err)
	}
	e.clk.Set(got.ExpiresAt)
	if _, err := e.m.Approve(e.as("carol"), r.ID, ""); !errors.Is(err, pam.ErrWrongState) {
		t.Errorf("approve the extension at the end = %v, want ErrWrongState", err)
	}
	if n, err := e.m.Sweep(context.Background()); n != 1 || err != nil {
		t.Fatalf("Sweep: %d, %v", n, err)
	}
	got, _ = e.m.Request(e.as("alice"), r.ID)
	if got.State != pam.Expired || got.Extension.State != pam.Expired || !got.ClosedAt.Equal(got.ExpiresAt) {
		t.Errorf("after the end: %s, extension %s", got.State, got.Extension.State)
	}
	if waiting, _ := e.m.Reviewable(e.as("carol")); len(waiting) != 0 {
		t.Errorf("a lapsed extension still waits: %v", waiting)
	}
}

// TestExtendMovesRunningDeadline: work running under a grant follows its
// extension: fn's context deadline moves as the extension is granted, on
// the Manager that granted it at once, and on another Manager sharing
// the store through its grant watcher; the context ends at the new end,
// not the old.
func TestExtendMovesRunningDeadline(t *testing.T) {
	e := newEnv(t, func(o *pam.Options) { o.AuditPollInterval = 5 * time.Millisecond })
	e.policy(movePolicy())
	other, err := pam.New(e.store, e.dirs, &pam.Options{Clock: e.clk, AdminGroup: "pam-admins", AuditPollInterval: 5 * time.Millisecond, SyncRunEnds: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close(context.Background()) })
	r := e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Duration: time.Hour})
	end := r.ExpiresAt

	type run struct {
		deadline func() time.Time
		fn       *runningFn
	}
	start := func(m *pam.Manager) run {
		ctxs := make(chan context.Context, 1)
		fn := &runningFn{release: make(chan struct{}), ended: make(chan struct{}), done: make(chan struct{})}
		go func() {
			defer close(fn.done)
			fn.err = m.Guard(e.as("alice"), pam.Op{Task: "New-MoveRequest"}, func(ctx context.Context) error {
				ctxs <- ctx
				select {
				case <-ctx.Done():
					fn.cause = context.Cause(ctx)
					close(fn.ended)
					return ctx.Err()
				case <-fn.release:
					return nil
				}
			})
		}()
		ctx := <-ctxs
		t.Cleanup(func() {
			select {
			case <-fn.ended:
			default:
				close(fn.release)
			}
			<-fn.done
		})
		return run{deadline: func() time.Time { d, _ := ctx.Deadline(); return d }, fn: fn}
	}
	here, there := start(e.m), start(other)
	for _, x := range []run{here, there} {
		if d := x.deadline(); !d.Equal(end) {
			t.Fatalf("deadline %v, want the grant's end %v", d, end)
		}
	}
	if _, err := e.m.Extend(e.as("alice"), r.ID, 2*time.Hour, "more"); err != nil {
		t.Fatal(err)
	}
	if d := here.deadline(); !d.Equal(end) {
		t.Errorf("a pending extension moved the deadline to %v", d)
	}
	e.approve("carol", r.ID)
	newEnd := end.Add(2 * time.Hour)
	if d := here.deadline(); !d.Equal(newEnd) {
		t.Errorf("on the Manager that extended: deadline %v, want %v", d, newEnd)
	}
	eventually(t, "the other Manager's run to follow the extension", func() bool { return there.deadline().Equal(newEnd) })

	e.clk.Set(end)
	for name, x := range map[string]run{"here": here, "there": there} {
		select {
		case <-x.fn.ended:
			t.Errorf("%s: ended at the old end: %v", name, x.fn.cause)
		case <-time.After(20 * time.Millisecond):
		}
	}
	e.clk.Set(newEnd.Add(-time.Nanosecond))
	select {
	case <-here.fn.ended:
		t.Fatal("ended 1ns before the new end")
	case <-time.After(10 * time.Millisecond):
	}
	e.clk.Set(newEnd)
	for name, x := range map[string]run{"here": here, "there": there} {
		select {
		case <-x.fn.ended:
			var ge *pam.GrantEndedError
			if !errors.As(x.fn.cause, &ge) || ge.Reason != pam.GrantExpired || !errors.Is(x.fn.cause, context.DeadlineExceeded) {
				t.Errorf("%s: cause %v, want the grant expired", name, x.fn.cause)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s: still running at the new end", name)
		}
	}
}
