package pam_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/zerostanding/pam"
)

// The lifecycle is tested here as the pure function it is: no store, no
// clock, no directory.

var (
	lcNow    = epoch.Add(time.Hour)
	lcPolicy = &pam.Policy{ID: "move", Version: 3, Scope: pam.TaskScope("New-MoveRequest"), Approval: pam.Manual,
		ApproverGroups: []pam.ApproverGroup{{Group: "mailbox-managers", MinApprovals: 2}, {Group: "security"}},
		BreakGlass:     &pam.BreakGlass{Group: "oncall", MaxDuration: 2 * time.Hour, Limit: 2}}
)

// lcRequest returns alice's request in the named row of the lifecycle
// table, as of lcNow.
func lcRequest(row string) pam.Request {
	r := pam.Request{ID: "r1", Requester: "alice", Scope: pam.TaskScope("New-MoveRequest"), PolicyID: "move", Reason: "INC-1",
		Duration: 2 * time.Hour, State: pam.Pending, PolicyVersion: 3, CreatedAt: epoch, PendingUntil: epoch.Add(24 * time.Hour), Version: 1,
		MaxUses: 1, RemindAt: lcNow, EscalateAt: lcNow}
	switch row {
	case "pending":
	case "pending, due":
		r.PendingUntil = lcNow
	case "approved", "approved, due":
		r.State, r.ApprovedAt, r.ExpiresAt = pam.Approved, epoch, epoch.Add(2*time.Hour)
		if row == "approved, due" {
			r.ExpiresAt = lcNow
		}
	case "scheduled":
		r.State, r.Start, r.ApprovedAt, r.ExpiresAt = pam.Approved, lcNow.Add(time.Hour), lcNow.Add(time.Hour), lcNow.Add(3*time.Hour)
	case "extending", "extending, due":
		r.State, r.ApprovedAt, r.ExpiresAt = pam.Approved, epoch, epoch.Add(2*time.Hour)
		r.Extension = &pam.Extension{By: time.Hour, Reason: "more to move", RequestedAt: epoch.Add(30 * time.Minute), State: pam.Pending}
		if row == "extending, due" {
			r.ExpiresAt = lcNow
		}
	case "denied", "canceled", "revoked", "relinquished", "expired":
		r.State, r.ClosedAt = pam.State(row), epoch
	default:
		panic(row)
	}
	if r.State != pam.Pending {
		// Every request that was opened is break-glass here, its review
		// pending and overdue, so that only the table decides the
		// review's actions.
		r.BreakGlass = &pam.BreakGlassReview{State: pam.ReviewPending, DueAt: lcNow, NotifyAt: lcNow, Every: time.Hour}
	}
	return r
}

var lcRows = []string{"pending", "pending, due", "approved", "approved, due", "scheduled", "extending", "extending, due",
	"denied", "canceled", "revoked", "relinquished", "expired"}

var lcActions = []pam.Action{pam.ActionSettle, pam.ActionApprove, pam.ActionDeny, pam.ActionCancel, pam.ActionRevoke, pam.ActionRelinquish,
	pam.ActionExpire, pam.ActionExtend, pam.ActionUse, pam.ActionRemind, pam.ActionEscalate,
	pam.ActionBreakGlass, pam.ActionConfirm, pam.ActionFlag, pam.ActionReviewOverdue}

// lcFacts returns facts under which the actor may take action a, so that
// only the table decides.
func lcFacts(a pam.Action) pam.Facts {
	f := pam.Facts{Now: lcNow, Policy: lcPolicy, Comment: "ok"}
	switch a {
	case pam.ActionSettle:
		f.Verdict = pam.Decision{Approver: "auto:policy", Verdict: pam.Approve, At: lcNow, PolicyVersion: 3}
	case pam.ActionApprove, pam.ActionDeny, pam.ActionConfirm, pam.ActionFlag:
		f.Actor, f.MemberOf = "bob", pam.Membership{"bob": {0}}
	case pam.ActionCancel, pam.ActionRelinquish, pam.ActionUse:
		f.Actor = "alice"
	case pam.ActionExtend:
		f.Actor, f.By, f.Comment = "alice", time.Hour, "more to move"
	case pam.ActionBreakGlass:
		f.Actor, f.BreakGlasser = "alice", true
	case pam.ActionRevoke:
		f.Actor, f.Admin = "admin", true
	}
	return f
}

// TestLifecycleTable checks every (state, action) cell: the legal ones
// succeed, every other is ErrWrongState and changes nothing.
func TestLifecycleTable(t *testing.T) {
	legal := map[string][]pam.Action{
		"pending":       {pam.ActionSettle, pam.ActionApprove, pam.ActionDeny, pam.ActionCancel, pam.ActionRemind, pam.ActionEscalate, pam.ActionBreakGlass},
		"pending, due":  {pam.ActionExpire},
		"approved":      {pam.ActionRevoke, pam.ActionRelinquish, pam.ActionExtend, pam.ActionUse, pam.ActionConfirm, pam.ActionFlag, pam.ActionReviewOverdue},
		"approved, due": {pam.ActionExpire, pam.ActionConfirm, pam.ActionFlag, pam.ActionReviewOverdue},
		// Before its window opens a grant can be given up, not extended.
		"scheduled": {pam.ActionRevoke, pam.ActionRelinquish},
		// An extension pending is decided as a request is.
		"extending":      {pam.ActionSettle, pam.ActionApprove, pam.ActionDeny, pam.ActionRevoke, pam.ActionRelinquish, pam.ActionUse, pam.ActionConfirm, pam.ActionFlag, pam.ActionReviewOverdue},
		"extending, due": {pam.ActionExpire, pam.ActionConfirm, pam.ActionFlag, pam.ActionReviewOverdue},
		"revoked":        {pam.ActionConfirm, pam.ActionFlag, pam.ActionReviewOverdue},
		"relinquished":   {pam.ActionConfirm, pam.ActionFlag, pam.ActionReviewOverdue},
		"expired":        {pam.ActionConfirm, pam.ActionFlag, pam.ActionReviewOverdue},
	}
	next := map[pam.Action]pam.State{
		pam.ActionSettle: pam.Approved, pam.ActionApprove: pam.Pending, pam.ActionDeny: pam.Denied,
		pam.ActionCancel: pam.Canceled, pam.ActionRevoke: pam.Revoked, pam.ActionRelinquish: pam.Relinquished, pam.ActionExpire: pam.Expired,
		pam.ActionExtend: pam.Approved, pam.ActionUse: pam.Approved, pam.ActionRemind: pam.Pending, pam.ActionEscalate: pam.Pending, pam.ActionBreakGlass: pam.Approved,
	}
	// Decisions on an extension leave the grant approved.
	extensionNext := map[pam.Action]pam.State{pam.ActionSettle: pam.Approved, pam.ActionApprove: pam.Approved, pam.ActionDeny: pam.Approved}
	for _, row := range lcRows {
		for _, a := range lcActions {
			t.Run(row+"/"+string(a), func(t *testing.T) {
				r := lcRequest(row)
				if got, want := r.Allows(a, lcNow), slices.Contains(legal[row], a); got != want {
					t.Errorf("Allows = %v, want %v", got, want)
				}
				got, events, err := pam.Apply(r, a, lcFacts(a))
				if !slices.Contains(legal[row], a) {
					if !errors.Is(err, pam.ErrWrongState) {
						t.Fatalf("err = %v, want ErrWrongState", err)
					}
					if d := cmp.Diff(r, got); d != "" || events != nil {
						t.Errorf("a refused action changed the request (-before +after):\n%s%v", d, events)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				want, ok := next[a]
				if s, isExt := extensionNext[a]; isExt && row == "extending" {
					want, ok = s, true
				}
				if !ok {
					// The review's actions leave the state as recorded,
					// but a flag on an active grant revokes it.
					want = r.State
					if a == pam.ActionFlag && (row == "approved" || row == "extending") {
						want = pam.Revoked
					}
				}
				if got.State != want {
					t.Errorf("state %s, want %s", got.State, want)
				}
				if len(events) == 0 {
					t.Error("no audit event")
				}
				for _, e := range events {
					if e.RequestID != r.ID || e.PolicyID != r.PolicyID || e.Time != lcNow {
						t.Errorf("event %+v does not name the request at now", e)
					}
				}
			})
		}
	}
}

// TestLifecycleFacts checks every fact that changes an answer.
func TestLifecycleFacts(t *testing.T) {
	bobApproved := lcRequest("pending")
	bobApproved.Decisions = []pam.Decision{{Approver: "bob", Verdict: pam.Approve, At: epoch, PolicyVersion: 3}}
	for _, tc := range []struct {
		name   string
		r      pam.Request
		a      pam.Action
		change func(*pam.Facts)
		err    error
		state  pam.State
		types  []pam.EventType
	}{
		{name: "approve: the policy was deleted", r: lcRequest("pending"), a: pam.ActionApprove,
			change: func(f *pam.Facts) { f.Policy = nil }, err: pam.ErrWrongState},
		{name: "approve: by the requester", r: lcRequest("pending"), a: pam.ActionApprove,
			change: func(f *pam.Facts) { f.Actor, f.MemberOf = "alice", pam.Membership{"alice": {0}} }, err: pam.ErrSelfApproval},
		{name: "deny: by the requester", r: lcRequest("pending"), a: pam.ActionDeny,
			change: func(f *pam.Facts) { f.Actor, f.MemberOf = "alice", pam.Membership{"alice": {0}} }, err: pam.ErrSelfApproval},
		{name: "approve: twice by one approver", r: bobApproved, a: pam.ActionApprove, err: pam.ErrAlreadyDecided},
		{name: "deny after approving", r: bobApproved, a: pam.ActionDeny, err: pam.ErrAlreadyDecided},
		{name: "approve: not in an approver group", r: lcRequest("pending"), a: pam.ActionApprove,
			change: func(f *pam.Facts) { f.MemberOf = nil }, err: pam.ErrForbidden},
		{name: "approve: one of three seats", r: lcRequest("pending"), a: pam.ActionApprove,
			state: pam.Pending, types: []pam.EventType{pam.EventRequestDecision}},
		{name: "approve: the last seat", r: bobApproved, a: pam.ActionApprove,
			change: func(f *pam.Facts) {
				f.Actor, f.MemberOf = "carol", pam.Membership{"bob": {0}, "carol": {0, 1}}
			},
			state: pam.Pending, types: []pam.EventType{pam.EventRequestDecision}},
		{name: "approve: quorum with every group seated", r: func() pam.Request {
			r := bobApproved
			r.Decisions = append(slices.Clone(r.Decisions), pam.Decision{Approver: "carol", Verdict: pam.Approve, At: epoch})
			return r
		}(), a: pam.ActionApprove,
			change: func(f *pam.Facts) {
				f.Actor, f.MemberOf = "erin", pam.Membership{"bob": {0}, "carol": {0, 1}, "erin": {1}}
			},
			state: pam.Approved, types: []pam.EventType{pam.EventRequestDecision, pam.EventRequestApproved}},
		{name: "approve: an earlier approver left the group", r: func() pam.Request {
			r := bobApproved
			r.Decisions = append(slices.Clone(r.Decisions), pam.Decision{Approver: "carol", Verdict: pam.Approve, At: epoch})
			return r
		}(), a: pam.ActionApprove,
			change: func(f *pam.Facts) {
				f.Actor, f.MemberOf = "erin", pam.Membership{"carol": {0, 1}, "erin": {1}}
			},
			state: pam.Pending, types: []pam.EventType{pam.EventRequestDecision}},
		{name: "deny: any deny denies", r: bobApproved, a: pam.ActionDeny,
			change: func(f *pam.Facts) { f.Actor, f.MemberOf = "erin", pam.Membership{"erin": {1}} },
			state:  pam.Denied, types: []pam.EventType{pam.EventRequestDecision, pam.EventRequestDenied}},
		{name: "cancel: not the requester", r: lcRequest("pending"), a: pam.ActionCancel,
			change: func(f *pam.Facts) { f.Actor, f.Admin = "admin", true }, err: pam.ErrForbidden},
		{name: "revoke: the requester", r: lcRequest("approved"), a: pam.ActionRevoke,
			change: func(f *pam.Facts) { f.Actor, f.Admin = "alice", false },
			state:  pam.Revoked, types: []pam.EventType{pam.EventRequestRevoked}},
		{name: "revoke: an approver", r: lcRequest("approved"), a: pam.ActionRevoke,
			change: func(f *pam.Facts) { f.Actor, f.Admin, f.MemberOf = "erin", false, pam.Membership{"erin": {1}} },
			state:  pam.Revoked, types: []pam.EventType{pam.EventRequestRevoked}},
		{name: "revoke: an approver after the policy was deleted", r: lcRequest("approved"), a: pam.ActionRevoke,
			change: func(f *pam.Facts) { f.Actor, f.Admin, f.Policy = "erin", false, nil }, err: pam.ErrForbidden},
		{name: "revoke: an admin after the policy was deleted", r: lcRequest("approved"), a: pam.ActionRevoke,
			change: func(f *pam.Facts) { f.Policy = nil },
			state:  pam.Revoked, types: []pam.EventType{pam.EventRequestRevoked}},
		{name: "revoke: anyone else", r: lcRequest("approved"), a: pam.ActionRevoke,
			change: func(f *pam.Facts) { f.Actor, f.Admin = "mallory", false }, err: pam.ErrForbidden},
		{name: "settle: an automatic deny", r: lcRequest("pending"), a: pam.ActionSettle,
			change: func(f *pam.Facts) { f.Verdict.Verdict = pam.Deny },
			state:  pam.Denied, types: []pam.EventType{pam.EventRequestDecision, pam.EventRequestDenied}},
		{name: "settle: no verdict", r: lcRequest("pending"), a: pam.ActionSettle,
			change: func(f *pam.Facts) { f.Verdict.Verdict = "" }, err: pam.ErrInvalid},
		{name: "settle: no policy", r: lcRequest("pending"), a: pam.ActionSettle,
			change: func(f *pam.Facts) { f.Policy = nil }, err: pam.ErrWrongState},
		{name: "approve: one nanosecond before the pending deadline", r: func() pam.Request {
			r := lcRequest("pending")
			r.PendingUntil = lcNow.Add(time.Nanosecond)
			return r
		}(), a: pam.ActionApprove, state: pam.Pending, types: []pam.EventType{pam.EventRequestDecision}},
		{name: "revoke: at the end of the window", r: lcRequest("approved, due"), a: pam.ActionRevoke, err: pam.ErrWrongState},
		{name: "relinquish: the holder", r: lcRequest("approved"), a: pam.ActionRelinquish,
			state: pam.Relinquished, types: []pam.EventType{pam.EventRequestRelinquished}},
		{name: "relinquish: the holder after the policy was deleted", r: lcRequest("approved"), a: pam.ActionRelinquish,
			change: func(f *pam.Facts) { f.Policy = nil },
			state:  pam.Relinquished, types: []pam.EventType{pam.EventRequestRelinquished}},
		{name: "relinquish: an admin", r: lcRequest("approved"), a: pam.ActionRelinquish,
			change: func(f *pam.Facts) { f.Actor, f.Admin = "admin", true }, err: pam.ErrForbidden},
		{name: "relinquish: an approver", r: lcRequest("approved"), a: pam.ActionRelinquish,
			change: func(f *pam.Facts) { f.Actor, f.MemberOf = "erin", pam.Membership{"erin": {1}} }, err: pam.ErrForbidden},
		{name: "relinquish: a pending request", r: lcRequest("pending"), a: pam.ActionRelinquish, err: pam.ErrWrongState},
		{name: "relinquish: at the end of the window", r: lcRequest("approved, due"), a: pam.ActionRelinquish, err: pam.ErrWrongState},
		{name: "relinquish: one nanosecond before the end of the window", r: func() pam.Request {
			r := lcRequest("approved")
			r.ExpiresAt = lcNow.Add(time.Nanosecond)
			return r
		}(), a: pam.ActionRelinquish, state: pam.Relinquished, types: []pam.EventType{pam.EventRequestRelinquished}},
		{name: "revoke: a relinquished request", r: lcRequest("relinquished"), a: pam.ActionRevoke, err: pam.ErrWrongState},
		{name: "use: the first of two runs", r: func() pam.Request {
			r := lcRequest("approved")
			r.MaxUses = 2
			return r
		}(), a: pam.ActionUse, state: pam.Approved},
		{name: "use: the last run", r: func() pam.Request {
			r := lcRequest("approved")
			r.MaxUses, r.Uses = 3, 2
			return r
		}(), a: pam.ActionUse, state: pam.Approved, types: []pam.EventType{pam.EventRequestSpent}},
		{name: "use: none left", r: func() pam.Request {
			r := lcRequest("approved")
			r.Uses = 1
			return r
		}(), a: pam.ActionUse, err: pam.ErrWrongState},
		{name: "use: someone else", r: lcRequest("approved"), a: pam.ActionUse,
			change: func(f *pam.Facts) { f.Actor, f.Admin = "admin", true }, err: pam.ErrForbidden},
		{name: "use: a grant without a limit", r: func() pam.Request {
			r := lcRequest("approved")
			r.MaxUses = 0
			return r
		}(), a: pam.ActionUse, err: pam.ErrInvalid},
		{name: "use: one nanosecond before the end of the window", r: func() pam.Request {
			r := lcRequest("approved")
			r.ExpiresAt = lcNow.Add(time.Nanosecond)
			return r
		}(), a: pam.ActionUse, state: pam.Approved, types: []pam.EventType{pam.EventRequestSpent}},
		{name: "use: at the end of the window", r: lcRequest("approved, due"), a: pam.ActionUse, err: pam.ErrWrongState},
		{name: "remind: one nanosecond early", r: func() pam.Request {
			r := lcRequest("pending")
			r.RemindAt = lcNow.Add(time.Nanosecond)
			return r
		}(), a: pam.ActionRemind, err: pam.ErrWrongState},
		{name: "remind: none set", r: func() pam.Request {
			r := lcRequest("pending")
			r.RemindAt = time.Time{}
			return r
		}(), a: pam.ActionRemind, err: pam.ErrWrongState},
		{name: "remind: the policy deleted", r: lcRequest("pending"), a: pam.ActionRemind,
			change: func(f *pam.Facts) { f.Policy = nil }, state: pam.Pending, types: []pam.EventType{pam.EventRequestReminded}},
		{name: "escalate: one nanosecond early", r: func() pam.Request {
			r := lcRequest("pending")
			r.EscalateAt = lcNow.Add(time.Nanosecond)
			return r
		}(), a: pam.ActionEscalate, err: pam.ErrWrongState},
		{name: "escalate: twice", r: func() pam.Request {
			r := lcRequest("pending")
			r.EscalateAt, r.EscalatedAt = time.Time{}, epoch
			return r
		}(), a: pam.ActionEscalate, err: pam.ErrWrongState},
		{name: "approve: an escalator alone", r: func() pam.Request {
			r := lcRequest("pending")
			r.EscalateAt, r.EscalatedAt = time.Time{}, epoch
			return r
		}(), a: pam.ActionApprove,
			change: func(f *pam.Facts) { f.Actor, f.MemberOf, f.Escalator = "sam", nil, true },
			state:  pam.Approved, types: []pam.EventType{pam.EventRequestDecision, pam.EventRequestApproved}},
		{name: "deny: an escalator", r: lcRequest("pending"), a: pam.ActionDeny,
			change: func(f *pam.Facts) { f.Actor, f.MemberOf, f.Escalator = "sam", nil, true },
			state:  pam.Denied, types: []pam.EventType{pam.EventRequestDecision, pam.EventRequestDenied}},
		{name: "approve: the requester as escalator", r: lcRequest("pending"), a: pam.ActionApprove,
			change: func(f *pam.Facts) { f.Actor, f.MemberOf, f.Escalator = "alice", nil, true }, err: pam.ErrSelfApproval},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := lcFacts(tc.a)
			if tc.change != nil {
				tc.change(&f)
			}
			got, events, err := pam.Apply(tc.r, tc.a, f)
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
			if got.State != tc.state {
				t.Errorf("state %s, want %s", got.State, tc.state)
			}
			var types []pam.EventType
			for _, e := range events {
				types = append(types, e.Type)
			}
			if d := cmp.Diff(tc.types, types); d != "" {
				t.Errorf("events (-want +got):\n%s", d)
			}
		})
	}
}

// TestLifecycleTransitionsAreExact checks the fields each transition
// writes, so a change to them is a visible change to this test.
func TestLifecycleTransitionsAreExact(t *testing.T) {
	settled, _, err := pam.Apply(lcRequest("pending"), pam.ActionSettle, lcFacts(pam.ActionSettle))
	if err != nil {
		t.Fatal(err)
	}
	want := lcRequest("pending")
	want.State, want.ApprovedAt, want.ExpiresAt = pam.Approved, lcNow, lcNow.Add(2*time.Hour)
	want.Decisions = []pam.Decision{{Approver: "auto:policy", Verdict: pam.Approve, At: lcNow, PolicyVersion: 3, Automatic: true}}
	if d := cmp.Diff(want, settled); d != "" {
		t.Errorf("settle (-want +got):\n%s", d)
	}

	// An expiry closes the request at its deadline, not when recorded.
	r := lcRequest("approved, due")
	f := lcFacts(pam.ActionExpire)
	f.Now = lcNow.Add(time.Hour)
	expired, events, err := pam.Apply(r, pam.ActionExpire, f)
	if err != nil {
		t.Fatal(err)
	}
	want = r
	want.State, want.ClosedAt = pam.Expired, r.ExpiresAt
	if d := cmp.Diff(want, expired); d != "" {
		t.Errorf("expire (-want +got):\n%s", d)
	}
	if d := cmp.Diff(map[string]string{"from": "approved", "expired_at": r.ExpiresAt.Format(time.RFC3339Nano)}, events[0].Detail); d != "" {
		t.Errorf("expiry detail (-want +got):\n%s", d)
	}

	// Relinquishing closes the request now, by its holder, with the
	// holder's comment.
	r = lcRequest("approved")
	relinquished, events, err := pam.Apply(r, pam.ActionRelinquish, lcFacts(pam.ActionRelinquish))
	if err != nil {
		t.Fatal(err)
	}
	want = r
	want.State, want.ClosedAt, want.ClosedBy = pam.Relinquished, lcNow, "alice"
	if d := cmp.Diff(want, relinquished); d != "" {
		t.Errorf("relinquish (-want +got):\n%s", d)
	}
	wantEvent := pam.Event{Time: lcNow, Type: pam.EventRequestRelinquished, Actor: "alice", RequestID: "r1", PolicyID: "move",
		Task: "New-MoveRequest", Detail: map[string]string{"comment": "ok"}}
	if d := cmp.Diff([]pam.Event{wantEvent}, events); d != "" {
		t.Errorf("relinquish events (-want +got):\n%s", d)
	}
}

// TestReadRule is the read rule of Request, Requests and Audit.
func TestReadRule(t *testing.T) {
	r := lcRequest("pending")
	for _, tc := range []struct {
		name string
		f    pam.Facts
		want bool
	}{
		{"the requester", pam.Facts{Actor: "alice"}, true},
		{"an admin", pam.Facts{Actor: "admin", Admin: true}, true},
		{"an approver", pam.Facts{Actor: "erin", MemberOf: pam.Membership{"erin": {1}}}, true},
		{"someone else", pam.Facts{Actor: "mallory"}, false},
		{"another approver's membership", pam.Facts{Actor: "mallory", MemberOf: pam.Membership{"erin": {1}}}, false},
		{"no actor", pam.Facts{}, false},
	} {
		if got := pam.MayView(&r, tc.f); got != tc.want {
			t.Errorf("%s: MayView = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// FuzzLifecycle drives the pure function with arbitrary requests, actions
// and facts, and checks what must hold whatever the input.
func FuzzLifecycle(f *testing.F) {
	f.Add(uint8(0), uint8(1), "bob", uint8(1), int64(0), false, uint8(1))
	f.Add(uint8(2), uint8(4), "alice", uint8(0), int64(-1), true, uint8(0))
	f.Add(uint8(0), uint8(1), "alice", uint8(3), int64(5), false, uint8(3))
	f.Fuzz(func(t *testing.T, row, action uint8, actor string, groups uint8, shift int64, admin bool, decided uint8) {
		r := lcRequest(lcRows[int(row)%len(lcRows)])
		r.PendingUntil = r.PendingUntil.Add(time.Duration(shift))
		for i := range int(decided % 4) {
			who := []string{"bob", "carol", "alice", "erin"}[i]
			r.Decisions = append(r.Decisions, pam.Decision{Approver: who, Verdict: pam.Approve, At: epoch})
		}
		a := lcActions[int(action)%len(lcActions)]
		fc := lcFacts(a)
		fc.Actor, fc.Admin = actor, admin
		fc.MemberOf = pam.Membership{}
		for _, who := range append([]string{actor}, "bob", "carol", "erin") {
			for gi := range 2 {
				if groups&(1<<gi) != 0 {
					fc.MemberOf[who] = append(fc.MemberOf[who], gi)
				}
			}
		}
		before := r.StateAt(fc.Now)
		got, events, err := pam.Apply(r, a, fc)
		if err != nil {
			if d := cmp.Diff(r, got); d != "" || events != nil {
				t.Fatalf("refused %s changed the request:\n%s", a, d)
			}
			return
		}
		if !r.Allows(a, fc.Now) || len(events) == 0 {
			t.Fatalf("%s on a %s request succeeded: allowed %v, %d events", a, before, r.Allows(a, fc.Now), len(events))
		}
		if r.State.Terminal() {
			// A terminal request's state and window never change; only
			// a break-glass review may be recorded on it, pending →
			// confirmed or flagged (or its overdue notice moved on).
			if got.State != r.State || !got.ClosedAt.Equal(r.ClosedAt) || got.ClosedBy != r.ClosedBy ||
				!got.ApprovedAt.Equal(r.ApprovedAt) || !got.ExpiresAt.Equal(r.ExpiresAt) {
				t.Fatalf("%s changed a terminal request's state or window", a)
			}
			reviewOnly := got
			reviewOnly.BreakGlass = r.BreakGlass
			if d := cmp.Diff(r, reviewOnly); d != "" || r.BreakGlass == nil || r.BreakGlass.State != pam.ReviewPending {
				t.Fatalf("%s changed a terminal request beyond its pending review:\n%s", a, d)
			}
			if gs := got.BreakGlass.State; gs != pam.ReviewPending && gs != pam.ReviewConfirmed && gs != pam.ReviewFlagged {
				t.Fatalf("review state %q", gs)
			}
		}
		if r.BreakGlass != nil && r.BreakGlass.State != pam.ReviewPending && !cmp.Equal(r.BreakGlass, got.BreakGlass) {
			t.Fatalf("%s changed a finished review", a)
		}
		if got.State.Terminal() != !got.ClosedAt.IsZero() {
			t.Fatalf("state %s with ClosedAt %v", got.State, got.ClosedAt)
		}
		seen := map[string]bool{}
		for _, d := range got.Decisions {
			if seen[d.Approver] {
				t.Fatalf("%s decided twice", d.Approver)
			}
			seen[d.Approver] = true
			if d.Approver == r.Requester && !d.Automatic && len(r.Decisions) < len(got.Decisions) && d == got.Decisions[len(got.Decisions)-1] {
				t.Fatalf("the requester decided their own request")
			}
		}
		if len(got.Decisions) < len(r.Decisions) {
			t.Fatal("decisions shrank")
		}
	})
}
