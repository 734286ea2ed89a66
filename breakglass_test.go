package pam_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/zerostanding/pam"
)

// breakGlassPolicy lets security break glass under the move policy: an
// hour at most, twice a day, reviewed by mailbox-managers within four
// hours, the admins alerted.
func breakGlassPolicy() pam.Policy {
	p := movePolicy()
	p.BreakGlass = &pam.BreakGlass{Group: "security", AlertGroup: "pam-admins", Limit: 2, ReviewWithin: 4 * time.Hour}
	return p
}

func (e *env) breakGlass(who string) pam.Request {
	e.t.Helper()
	r, err := e.m.BreakGlass(e.as(who), pam.RequestInput{PolicyID: "move", Reason: "INC-9 mail flow down"})
	if err != nil {
		e.t.Fatalf("BreakGlass as %s: %v", who, err)
	}
	return r
}

// nothingWritten checks that the trail and the store are as they were.
func (e *env) nothingWritten(t *testing.T, what string, seq int64) {
	t.Helper()
	if got := e.eventsSince(seq); len(got) != 0 {
		t.Errorf("%s wrote %v", what, types(got))
	}
	if rs, _, err := e.m.Requests(e.admin(), pam.RequestFilter{}); err != nil || len(rs) != 0 {
		t.Errorf("%s stored %d requests (%v)", what, len(rs), err)
	}
}

// TestBreakGlass: a member of the policy's break-glass group acts at
// once, for at most the break-glass duration (±1 ns), the approvers and
// the alert group told; every run is marked break_glass; a non-member,
// a duration too long and a directory that cannot answer write nothing.
func TestBreakGlass(t *testing.T) {
	e := newEnv(t)
	e.policy(breakGlassPolicy())
	seq := e.lastSeq()

	if _, err := e.m.BreakGlass(e.as("alice"), pam.RequestInput{PolicyID: "move", Reason: "x"}); !errors.Is(err, pam.ErrForbidden) {
		t.Errorf("alice, not in security: %v, want ErrForbidden", err)
	}
	e.nothingWritten(t, "a non-member", seq)
	boom := errors.New("directory down")
	e.dirs.Fail("security", boom)
	if _, err := e.m.BreakGlass(e.as("erin"), pam.RequestInput{PolicyID: "move", Reason: "x"}); !errors.Is(err, boom) {
		t.Errorf("with the directory down: %v, want its error", err)
	}
	e.nothingWritten(t, "a directory error", seq)
	e.dirs.Fail("security", nil)
	if _, err := e.m.BreakGlass(e.as("erin"), pam.RequestInput{PolicyID: "move", Reason: "x", Duration: time.Hour + time.Nanosecond}); !errors.Is(err, pam.ErrDurationTooLong) {
		t.Errorf("an hour and a nanosecond: %v, want ErrDurationTooLong", err)
	}
	if _, err := e.m.BreakGlass(e.as("erin"), pam.RequestInput{PolicyID: "move"}); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("no reason: %v, want ErrInvalid", err)
	}
	e.nothingWritten(t, "bad input", seq)
	plain := e.policy(pam.Policy{ID: "journal", Scope: pam.TaskScope("Set-JournalRule"), Approval: pam.Manual,
		ApproverGroups: []pam.ApproverGroup{{Group: "mailbox-managers"}}})
	if _, err := e.m.BreakGlass(e.as("erin"), pam.RequestInput{PolicyID: plain.ID, Reason: "x"}); !errors.Is(err, pam.ErrForbidden) {
		t.Errorf("a policy without break-glass: %v, want ErrForbidden", err)
	}
	e.delivered()

	seq = e.lastSeq()
	r := e.breakGlass("erin")
	if r.State != pam.Approved || !r.ApprovedAt.Equal(epoch) || !r.ExpiresAt.Equal(epoch.Add(time.Hour)) || r.BreakGlass == nil ||
		r.BreakGlass.State != pam.ReviewPending || !r.BreakGlass.DueAt.Equal(epoch.Add(4*time.Hour)) {
		t.Fatalf("activated: %+v %+v", r, r.BreakGlass)
	}
	if got := types(e.eventsSince(seq)); !slices.Equal(got, []pam.EventType{pam.EventRequestBreakGlass, pam.EventRequestApproved}) {
		t.Errorf("events %v", got)
	}
	notes := e.delivered()
	if got := recipients(notes, pam.EventRequestBreakGlass); !slices.Equal(got, []string{"admin", "bob", "carol", "dave"}) {
		t.Errorf("break-glass told %v, want the approvers and the alert group", got)
	}
	if got := recipients(notes, pam.EventRequestApproved); len(got) != 0 {
		t.Errorf("the activator was told of their own approval: %v", got)
	}

	e.clk.Set(r.ExpiresAt.Add(-time.Nanosecond))
	seq = e.lastSeq()
	if ran, err := e.guard("erin", "New-MoveRequest", nil); !ran || err != nil {
		t.Fatalf("Guard a nanosecond before the end: ran %v, %v", ran, err)
	}
	allowed := e.eventsSince(seq)[0]
	if allowed.Type != pam.EventGuardAllowed || allowed.RequestID != r.ID || allowed.Detail["break_glass"] != r.ID {
		t.Errorf("the run is not marked break-glass: %+v", allowed)
	}
	if res, err := e.m.Check(e.as("erin"), pam.Op{Task: "New-MoveRequest"}); err != nil || !res.Policies[0].BreakGlass {
		t.Errorf("Check does not say break-glass: %+v, %v", res, err)
	}
	e.clk.Set(r.ExpiresAt)
	if ran, err := e.guard("erin", "New-MoveRequest", nil); ran || !errors.Is(err, pam.ErrNotApproved) {
		t.Errorf("Guard at the end: ran %v, %v; want ErrNotApproved", ran, err)
	}
}

// TestBreakGlassRunPrefersApproval: with an approved grant beside the
// break-glass one, runs go under the approved one, unmarked.
func TestBreakGlassRunPrefersApproval(t *testing.T) {
	e := newEnv(t)
	e.policy(breakGlassPolicy())
	e.breakGlass("erin")
	g := e.grant("erin", pam.RequestInput{PolicyID: "move"})
	seq := e.lastSeq()
	if ran, err := e.guard("erin", "New-MoveRequest", nil); !ran || err != nil {
		t.Fatal(ran, err)
	}
	if a := e.eventsSince(seq)[0]; a.RequestID != g.ID || a.Detail["break_glass"] != "" {
		t.Errorf("ran under %s, detail %v; want the approved %s, unmarked", a.RequestID, a.Detail, g.ID)
	}
}

// TestBreakGlassLimit: Limit activations per Period per actor, the
// period sliding (±1 ns), and counted per actor.
func TestBreakGlassLimit(t *testing.T) {
	e := newEnv(t)
	e.policy(breakGlassPolicy())
	e.breakGlass("erin")
	e.clk.Add(time.Hour)
	e.breakGlass("erin")
	e.breakGlass("frank") // another actor's count
	e.clk.Set(epoch.Add(24*time.Hour - time.Nanosecond))
	seq := e.lastSeq()
	if _, err := e.m.BreakGlass(e.as("erin"), pam.RequestInput{PolicyID: "move", Reason: "x"}); !errors.Is(err, pam.ErrLimit) {
		t.Errorf("a third within the day: %v, want ErrLimit", err)
	}
	if got := e.eventsSince(seq); len(got) != 0 {
		t.Errorf("the refusal wrote %v", types(got))
	}
	e.clk.Set(epoch.Add(24 * time.Hour)) // the first is a day old
	e.breakGlass("erin")
	e.clk.Set(epoch.Add(25*time.Hour - time.Nanosecond))
	if _, err := e.m.BreakGlass(e.as("erin"), pam.RequestInput{PolicyID: "move", Reason: "x"}); !errors.Is(err, pam.ErrLimit) {
		t.Errorf("a nanosecond before the second is a day old: %v, want ErrLimit", err)
	}
	e.clk.Set(epoch.Add(25 * time.Hour))
	e.breakGlass("erin")
}

// TestBreakGlassLimitRace: Managers racing over one store activate
// exactly Limit times.
func TestBreakGlassLimitRace(t *testing.T) {
	e := newEnv(t)
	e.policy(breakGlassPolicy())
	other, err := pam.New(e.store, e.dir, &pam.Options{Clock: e.clk, Catalog: testCatalog, AdminGroup: "pam-admins"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, limited := 0, 0
	for i := range 16 {
		m := []*pam.Manager{e.m, other}[i%2]
		wg.Go(func() {
			_, err := m.BreakGlass(e.as("erin"), pam.RequestInput{PolicyID: "move", Reason: "x"})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, pam.ErrLimit):
				limited++
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if ok != 2 || limited != 14 {
		t.Errorf("%d activated, %d refused; want 2 and 14", ok, limited)
	}
}

// TestBreakGlassReview: approvers confirm or flag, never the activator;
// the review is due ReviewWithin after activation (±1 ns), after the
// grant ended, and an overdue one tells the reviewers once per
// ReviewWithin however many Managers sweep; the lists show what needs
// attention.
func TestBreakGlassReview(t *testing.T) {
	e := newEnv(t)
	e.policy(breakGlassPolicy())
	r := e.breakGlass("erin")
	e.delivered()
	other, err := pam.New(e.store, e.dir, &pam.Options{Clock: e.clk, Catalog: testCatalog, AdminGroup: "pam-admins", Notifier: e.notes})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(context.Background())
	sweepBoth := func() {
		var wg sync.WaitGroup
		for _, m := range []*pam.Manager{e.m, other} {
			wg.Go(func() {
				if _, err := m.Sweep(context.Background()); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	overdue := func(since int64) int {
		n := 0
		for _, ev := range e.eventsSince(since) {
			if ev.Type == pam.EventRequestBreakGlassOverdue {
				n++
			}
		}
		return n
	}
	for _, who := range []string{"bob", "admin"} {
		if got, err := e.m.BreakGlassReviews(e.as(who)); err != nil || len(got) != 1 || got[0].ID != r.ID {
			t.Errorf("%s's reviews: %v, %v", who, got, err)
		}
	}
	if got, err := e.m.BreakGlassReviews(e.as("alice")); err != nil || len(got) != 0 {
		t.Errorf("alice's reviews: %v, %v", got, err)
	}

	due := r.BreakGlass.DueAt
	e.clk.Set(due.Add(-time.Nanosecond)) // the grant ended; the review is not due yet
	seq := e.lastSeq()
	sweepBoth()
	if got := types(e.eventsSince(seq)); !slices.Equal(got, []pam.EventType{pam.EventRequestExpired}) {
		t.Errorf("a nanosecond before the review is due: %v", got)
	}
	e.clk.Set(due)
	seq = e.lastSeq()
	sweepBoth()
	sweepBoth()
	if n := overdue(seq); n != 1 {
		t.Errorf("at the due time: %d overdue notices, want 1", n)
	}
	if got := recipients(e.delivered(), pam.EventRequestBreakGlassOverdue); !slices.Equal(got, []string{"bob", "carol", "dave"}) {
		t.Errorf("overdue told %v, want the approvers", got)
	}
	e.clk.Set(due.Add(4*time.Hour - time.Nanosecond))
	seq = e.lastSeq()
	sweepBoth()
	if n := overdue(seq); n != 0 {
		t.Errorf("within the next interval: %d overdue notices", n)
	}
	e.clk.Set(due.Add(4 * time.Hour))
	sweepBoth()
	if n := overdue(seq); n != 1 {
		t.Errorf("an interval later: %d overdue notices, want 1", n)
	}

	for _, tc := range []struct {
		who string
		err error
	}{{"erin", pam.ErrSelfApproval}, {"alice", pam.ErrNotFound}, {"frank", pam.ErrNotFound}} {
		if _, err := e.m.ReviewBreakGlass(e.as(tc.who), r.ID, pam.ReviewConfirmed, ""); !errors.Is(err, tc.err) {
			t.Errorf("%s's review: %v, want %v", tc.who, err, tc.err)
		}
	}
	if _, err := e.m.ReviewBreakGlass(e.as("bob"), r.ID, pam.ReviewPending, ""); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("a pending verdict: %v, want ErrInvalid", err)
	}
	seq = e.lastSeq()
	got, err := e.m.ReviewBreakGlass(e.as("bob"), r.ID, pam.ReviewConfirmed, "the incident was real")
	if err != nil || got.State != pam.Expired || got.BreakGlass.State != pam.ReviewConfirmed || got.BreakGlass.By != "bob" || !got.ExpiresAt.Equal(r.ExpiresAt) {
		t.Fatalf("confirmed: %+v %+v, %v", got, got.BreakGlass, err)
	}
	if evs := e.eventsSince(seq); len(evs) != 1 || evs[0].Type != pam.EventRequestBreakGlassConfirmed || evs[0].Detail["overdue"] != "true" {
		t.Errorf("confirm events %+v", evs)
	}
	if _, err := e.m.ReviewBreakGlass(e.as("carol"), r.ID, pam.ReviewFlagged, ""); !errors.Is(err, pam.ErrWrongState) {
		t.Errorf("a second review: %v, want ErrWrongState", err)
	}
	if got, _ := e.m.BreakGlassReviews(e.as("bob")); len(got) != 0 {
		t.Errorf("confirmed still listed: %v", got)
	}
	if got, _ := e.m.BreakGlassReviews(e.as("bob"), pam.ReviewConfirmed); len(got) != 1 {
		t.Errorf("confirmed not listed: %v", got)
	}
	e.clk.Add(48 * time.Hour)
	seq = e.lastSeq()
	sweepBoth()
	if n := overdue(seq); n != 0 {
		t.Errorf("a reviewed request is still overdue: %d", n)
	}
	// A plain request is not break-glass.
	g := e.grant("alice", pam.RequestInput{PolicyID: "move"})
	if _, err := e.m.ReviewBreakGlass(e.as("bob"), g.ID, pam.ReviewFlagged, ""); !errors.Is(err, pam.ErrWrongState) {
		t.Errorf("reviewing a plain request: %v, want ErrWrongState", err)
	}
}

// TestBreakGlassFlagEndsRunningWork: a flag on an active break-glass
// grant revokes it, and the work running under it ends.
func TestBreakGlassFlagEndsRunningWork(t *testing.T) {
	e := newEnv(t)
	e.policy(breakGlassPolicy())
	r := e.breakGlass("erin")
	run := startGuarded(t, e.m, "erin", "New-MoveRequest")
	seq := e.lastSeq()
	flagged := time.Now()
	got, err := e.m.ReviewBreakGlass(e.as("bob"), r.ID, pam.ReviewFlagged, "no incident")
	if err != nil || got.State != pam.Revoked || got.BreakGlass.State != pam.ReviewFlagged {
		t.Fatalf("flagged: %+v, %v", got, err)
	}
	run.endedWithin(t, flagged, time.Second, pam.GrantRevoked, r.ID)
	if got := types(e.eventsSince(seq)); !slices.Equal(got[:2], []pam.EventType{pam.EventRequestBreakGlassFlagged, pam.EventRequestRevoked}) {
		t.Errorf("events %v", got)
	}
	if ran, err := e.guard("erin", "New-MoveRequest", nil); ran || !errors.Is(err, pam.ErrNotApproved) {
		t.Errorf("Guard after the flag: ran %v, %v", ran, err)
	}
	if list, _ := e.m.BreakGlassReviews(e.admin()); len(list) != 1 || list[0].BreakGlass.State != pam.ReviewFlagged {
		t.Errorf("flagged not listed: %v", list)
	}
}

// TestBreakGlassPolicyValidation: the break-glass settings are checked
// with the policy.
func TestBreakGlassPolicyValidation(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name   string
		change func(*pam.Policy)
	}{
		{"no group", func(p *pam.Policy) { p.BreakGlass.Group = "" }},
		{"a bad alert group", func(p *pam.Policy) { p.BreakGlass.AlertGroup = "a\x00b" }},
		{"longer than the policy's maximum", func(p *pam.Policy) { p.BreakGlass.MaxDuration = 9 * time.Hour }},
		{"a negative period", func(p *pam.Policy) { p.BreakGlass.Period = -1 }},
		{"too many", func(p *pam.Policy) { p.BreakGlass.Limit = pam.MaxBreakGlassLimit + 1 }},
		{"reviews due every second", func(p *pam.Policy) { p.BreakGlass.ReviewWithin = time.Second }},
		{"no one to review", func(p *pam.Policy) { p.Approval, p.ApproverGroups = pam.Auto, nil }},
	} {
		p := breakGlassPolicy()
		tc.change(&p)
		if _, err := e.m.CreatePolicy(e.admin(), p); !errors.Is(err, pam.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", tc.name, err)
		}
	}
}

// TestBreakGlassRequestRule: the policy's request rule judges a
// break-glass reason as it does a request's; a rejection writes nothing.
func TestBreakGlassRequestRule(t *testing.T) {
	e := newEnv(t)
	p := breakGlassPolicy()
	p.RequestRule = "deny contains \"name the incident (INC-n)\" if { not regex.match(`INC-[0-9]+`, input.request.reason) }"
	e.policy(p)
	seq := e.lastSeq()
	if _, err := e.m.BreakGlass(e.as("erin"), pam.RequestInput{PolicyID: "move", Reason: "urgent"}); !errors.Is(err, pam.ErrRejected) {
		t.Errorf("no incident named: %v, want ErrRejected", err)
	}
	e.nothingWritten(t, "a rejection", seq)
	e.breakGlass("erin") // "INC-9 mail flow down"
}

// TestBreakGlassIDsTellStrangersNothing: a break-glass request's ID is
// predictable (its activator and number under the policy), so whoever may
// not see it must learn nothing by acting on it: every action answers
// ErrNotFound, as for an ID that was never used, whatever state the
// request is in.
func TestBreakGlassIDsTellStrangersNothing(t *testing.T) {
	e := newEnv(t)
	e.policy(breakGlassPolicy())
	r := e.breakGlass("erin")
	never := r.ID[:len(r.ID)-1] + "9"
	mallory := e.as("mallory")
	for _, id := range []string{r.ID, never} {
		for name, act := range map[string]func() error{
			"approve": func() error { _, err := e.m.Approve(mallory, id, ""); return err },
			"deny":    func() error { _, err := e.m.Deny(mallory, id, ""); return err },
			"cancel":  func() error { _, err := e.m.Cancel(mallory, id, ""); return err },
			"revoke":  func() error { _, err := e.m.Revoke(mallory, id, ""); return err },
			"end":     func() error { _, err := e.m.Relinquish(mallory, id, ""); return err },
			"extend":  func() error { _, err := e.m.Extend(mallory, id, time.Minute, "x"); return err },
			"confirm": func() error { _, err := e.m.ReviewBreakGlass(mallory, id, pam.ReviewConfirmed, ""); return err },
			"flag":    func() error { _, err := e.m.ReviewBreakGlass(mallory, id, pam.ReviewFlagged, ""); return err },
			"read":    func() error { _, err := e.m.Request(mallory, id); return err },
		} {
			if err := act(); !errors.Is(err, pam.ErrNotFound) {
				t.Errorf("%s of %s by a stranger: %v, want ErrNotFound", name, id, err)
			}
		}
	}
	// Reviewed, and then revoked: still nothing.
	if _, err := e.m.ReviewBreakGlass(e.as("bob"), r.ID, pam.ReviewFlagged, "no incident"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.ReviewBreakGlass(mallory, r.ID, pam.ReviewConfirmed, ""); !errors.Is(err, pam.ErrNotFound) {
		t.Errorf("a stranger's review of a reviewed request: %v, want ErrNotFound", err)
	}
}
