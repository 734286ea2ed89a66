package pamhttp_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/pamhttp"
)

// actAs returns a context and an API that act as user ("" for nobody).
type actAs func(t *testing.T, e *env, user string) (context.Context, pamhttp.API)

// ways are the two ways of reaching the engine.
var ways = []struct {
	name string
	as   actAs
}{
	{"Manager", func(_ *testing.T, e *env, user string) (context.Context, pamhttp.API) {
		ctx := context.Background()
		if user != "" {
			ctx = pam.WithActor(ctx, user)
		}
		return ctx, e.m
	}},
	{"Client", func(t *testing.T, e *env, user string) (context.Context, pamhttp.API) {
		opts := &pamhttp.ClientOptions{}
		if user != "" {
			opts.Token = "token-" + user
		}
		c, err := pamhttp.NewClient(e.srv.URL+"/pam/", opts)
		if err != nil {
			t.Fatal(err)
		}
		return context.Background(), c
	}},
}

// TestManagerAndClientAgree runs one scenario through the API interface
// twice: on the Manager in process, and on the Client over HTTP. The
// answers, the durations and the errors (by sentinel) are the same.
func TestManagerAndClientAgree(t *testing.T) {
	for _, way := range ways {
		t.Run(way.name, func(t *testing.T) {
			e := newEnv(t)
			scenario(t, func(user string) (context.Context, pamhttp.API) { return way.as(t, e, user) })
		})
	}
}

func is(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v (%T), want %v", what, err, err, want)
	}
}

func ok(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func scenario(t *testing.T, as func(user string) (context.Context, pamhttp.API)) {
	nobodyCtx, nobody := as("")
	adminCtx, admin := as("admin")
	aliceCtx, alice := as("alice")
	bobCtx, bob := as("bob")
	carolCtx, carol := as("carol")

	_, err := nobody.Submit(nobodyCtx, pam.RequestInput{PolicyID: "move", Reason: "r"})
	is(t, "no actor", err, pam.ErrNoActor)

	// Policies.
	x := pam.Policy{ID: "x", Name: "X", Scope: pam.TaskScope("X"), Approval: pam.Auto, DefaultDuration: time.Hour, MaxDuration: 90 * time.Minute,
		MaxStartDelay: 48 * time.Hour, MaxExtendedDuration: 3 * time.Hour}
	_, err = alice.CreatePolicy(aliceCtx, x)
	is(t, "create as a non-admin", err, pam.ErrForbidden)
	p, err := admin.CreatePolicy(adminCtx, x)
	ok(t, "create", err)
	if p.Version != 1 || p.MaxDuration != 90*time.Minute || p.DefaultDuration != time.Hour || p.CreatedBy != "admin" ||
		p.MaxStartDelay != 48*time.Hour || p.MaxExtendedDuration != 3*time.Hour {
		t.Fatalf("created %+v", p)
	}
	_, err = admin.CreatePolicy(adminCtx, x)
	is(t, "create again", err, pam.ErrExists)
	p.MaxDuration = 2 * time.Hour
	p2, err := admin.UpdatePolicy(adminCtx, p)
	ok(t, "update", err)
	if p2.Version != 2 || p2.MaxDuration != 2*time.Hour {
		t.Fatalf("updated %+v", p2)
	}
	_, err = admin.UpdatePolicy(adminCtx, p)
	is(t, "update at an old version", err, pam.ErrConflict)
	got, err := alice.Policy(aliceCtx, "x")
	ok(t, "get", err)
	if got.Version != 2 || got.MaxDuration != 2*time.Hour {
		t.Fatalf("got %+v", got)
	}
	ps, err := alice.Policies(aliceCtx)
	ok(t, "list", err)
	if len(ps) != 2 {
		t.Fatalf("policies %+v", ps)
	}
	// Only members of its requester groups may request under a policy.
	y := pam.Policy{ID: "y", Scope: pam.TaskScope("Y"), Approval: pam.Auto, RequesterGroups: []string{"approvers"}}
	if y, err = admin.CreatePolicy(adminCtx, y); err != nil || len(y.RequesterGroups) != 1 {
		t.Fatalf("create with requester groups: %+v, %v", y, err)
	}
	_, err = alice.Submit(aliceCtx, pam.RequestInput{PolicyID: "y", Reason: "r"})
	is(t, "submit as a non-member", err, pam.ErrForbidden)
	yres, err := alice.Check(aliceCtx, pam.Op{Task: "Y"})
	ok(t, "check as a non-member", err)
	if len(yres.Policies) != 1 || !yres.Policies[0].Ineligible || !strings.Contains(yres.Policies[0].Missing, "only members of approvers may request") {
		t.Fatalf("check as a non-member: %+v", yres.Policies)
	}
	_, err = bob.Submit(bobCtx, pam.RequestInput{PolicyID: "y", Reason: "r"})
	ok(t, "submit as a member", err)
	ok(t, "delete y", admin.DeletePolicy(adminCtx, "y"))
	ok(t, "delete", admin.DeletePolicy(adminCtx, "x"))
	_, err = admin.Policy(adminCtx, "x")
	is(t, "get a deleted policy", err, pam.ErrNotFound)
	is(t, "delete as a non-admin", alice.DeletePolicy(aliceCtx, "move"), pam.ErrForbidden)

	// Requests.
	move := pam.TaskScope("New-MoveRequest")
	_, err = alice.Submit(aliceCtx, pam.RequestInput{Scope: move, Reason: "r", Duration: 9 * time.Hour})
	is(t, "too long", err, pam.ErrDurationTooLong)
	_, err = alice.Submit(aliceCtx, pam.RequestInput{Scope: move})
	is(t, "no reason", err, pam.ErrInvalid)
	_, err = alice.Submit(aliceCtx, pam.RequestInput{Scope: pam.TaskScope("Other"), Reason: "r"})
	is(t, "nothing covered", err, pam.ErrNoPolicy)
	r, err := alice.Submit(aliceCtx, pam.RequestInput{Scope: move, Reason: "INC-1", Duration: 2 * time.Hour, Ticket: "INC-1"})
	ok(t, "submit", err)
	if r.State != pam.Pending || r.Duration != 2*time.Hour || r.Requester != "alice" || r.PolicyID != "move" || r.Ticket != "INC-1" {
		t.Fatalf("submitted %+v", r)
	}
	// While it waits, Check names it and what it waits for.
	res, err := alice.Check(aliceCtx, pam.Op{Task: "New-MoveRequest"})
	ok(t, "check while pending", err)
	if res.Allowed || len(res.Policies) != 1 || res.Policies[0].Pending != r.ID || !errors.Is(res.Err, pam.ErrNotApproved) ||
		!strings.Contains(res.Err.Error(), "request "+r.ID+" is pending: 0 of 1 approvals, waiting for approvers") {
		t.Fatalf("check while pending: %+v, %v", res, res.Err)
	}
	_, err = alice.Approve(aliceCtx, r.ID, "me")
	is(t, "self-approval", err, pam.ErrSelfApproval)
	is(t, "self-approval is forbidden", err, pam.ErrForbidden)
	waiting, err := bob.Reviewable(bobCtx)
	ok(t, "reviewable", err)
	if len(waiting) != 1 || waiting[0].ID != r.ID {
		t.Fatalf("reviewable %+v", waiting)
	}
	prog, err := bob.Progress(bobCtx, r.ID)
	ok(t, "progress", err)
	if !prog.Waiting || prog.Have != 0 || prog.Need != 1 || !prog.MayDecide || len(prog.Groups) != 1 {
		t.Fatalf("progress for bob %+v", prog)
	}
	_, err = carol.Progress(carolCtx, "req_nonexistent")
	is(t, "progress of a request that is not there", err, pam.ErrNotFound)
	for q, want := range map[string]int{"inc-1": 1, "INC-2": 0, "Alice": 1} {
		page, next, err := bob.ReviewableRequests(bobCtx, pam.RequestFilter{Search: q, Newest: true, Limit: 1})
		ok(t, "a page of reviewable", err)
		if len(page) != want || (want == 1 && (page[0].ID != r.ID || next != r.ID)) {
			t.Fatalf("reviewable searching %q: %+v next %q", q, page, next)
		}
	}
	_, _, err = bob.ReviewableRequests(bobCtx, pam.RequestFilter{Search: "a\x00"})
	is(t, "a search with a control character", err, pam.ErrInvalid)
	r, err = bob.Approve(bobCtx, r.ID, "ticket checked")
	ok(t, "approve", err)
	if r.State != pam.Approved || len(r.Decisions) != 1 || r.Decisions[0].Comment != "ticket checked" || r.Duration != 2*time.Hour {
		t.Fatalf("approved %+v", r)
	}
	_, err = carol.Approve(carolCtx, r.ID, "")
	is(t, "approve again", err, pam.ErrWrongState)
	decided, _, err := bob.Requests(bobCtx, pam.RequestFilter{DecidedBy: "bob", Newest: true})
	ok(t, "bob's history", err)
	if len(decided) != 1 || decided[0].ID != r.ID {
		t.Fatalf("bob's history %+v", decided)
	}
	_, _, err = carol.Requests(carolCtx, pam.RequestFilter{DecidedBy: "bob"})
	is(t, "carol reads bob's history", err, pam.ErrForbidden)
	_, err = bob.Deny(bobCtx, "req_nonexistent", "")
	is(t, "deny a request that is not there", err, pam.ErrNotFound)
	got2, err := alice.Request(aliceCtx, r.ID)
	ok(t, "get", err)
	if got2.State != pam.Approved || !got2.ExpiresAt.Equal(r.ExpiresAt) {
		t.Fatalf("got %+v", got2)
	}

	// Check.
	op := pam.Op{Task: "New-MoveRequest", Params: map[string]any{"identity": "ceo"}}
	res, err = alice.Check(aliceCtx, op)
	ok(t, "check", err)
	if !res.Allowed || res.Outcome != pam.OutcomeGranted || res.Err != nil || len(res.Policies) != 1 || res.Policies[0].Grant != r.ID || !res.Deadline.Equal(r.ExpiresAt) {
		t.Fatalf("check %+v", res)
	}
	res, err = carol.Check(carolCtx, op)
	ok(t, "check without a grant", err)
	if res.Allowed || res.Outcome != pam.OutcomeNotApproved || res.Actor != "carol" {
		t.Fatalf("check %+v", res)
	}
	is(t, "check's error", res.Err, pam.ErrNotApproved)

	// Pages of requests.
	second, err := alice.Submit(aliceCtx, pam.RequestInput{PolicyID: "move", Reason: "INC-2"})
	ok(t, "submit", err)
	var ids []string
	f := pam.RequestFilter{Requester: "alice", Limit: 1}
	for {
		rs, next, err := alice.Requests(aliceCtx, f)
		ok(t, "requests", err)
		for _, r := range rs {
			ids = append(ids, r.ID)
		}
		if next == "" {
			break
		}
		f.After = next
	}
	if want := []string{r.ID, second.ID}; !slices.Equal(ids, want) && !slices.Equal(ids, []string{second.ID, r.ID}) {
		t.Fatalf("paged requests %v, want %v", ids, want)
	}
	rs, _, err := alice.Requests(aliceCtx, pam.RequestFilter{Requester: "Alice", States: []pam.State{pam.Approved}})
	ok(t, "approved requests", err)
	if len(rs) != 1 || rs[0].ID != r.ID {
		t.Fatalf("approved requests %+v", rs)
	}

	// The trail.
	var events []pam.Event
	ef := pam.EventFilter{RequestID: r.ID, Limit: 2}
	for {
		page, next, err := admin.Audit(adminCtx, ef)
		ok(t, "audit", err)
		events = append(events, page...)
		if next == 0 {
			break
		}
		ef.After = next
	}
	if len(events) < 3 || events[0].Type != pam.EventRequestSubmitted || events[0].Hash == "" {
		t.Fatalf("events %+v", events)
	}
	newest, _, err := admin.Audit(adminCtx, pam.EventFilter{Descending: true, Limit: 1, Types: []pam.EventType{pam.EventRequestSubmitted}})
	ok(t, "newest", err)
	if len(newest) != 1 || newest[0].RequestID != second.ID {
		t.Fatalf("newest %+v", newest)
	}
	vr, err := admin.Verify(adminCtx, pam.VerifyOptions{})
	ok(t, "verify", err)
	if vr.From != 1 || vr.To < 5 || vr.Events != vr.To || vr.Head == "" {
		t.Fatalf("verify %+v", vr)
	}
	_, _, err = admin.Messages(adminCtx, pam.MessageFilter{States: []pam.MessageState{pam.MessageFailed}})
	ok(t, "messages", err)
	_, _, err = admin.Messages(adminCtx, pam.MessageFilter{Limit: pam.MaxPageSize + 1})
	is(t, "messages, too many", err, pam.ErrInvalid)

	for user, want := range map[string]bool{"alice": false, "admin": true} {
		ctx, api := as(user)
		got, err := api.IsAdmin(ctx)
		ok(t, "is admin", err)
		if got != want {
			t.Errorf("IsAdmin(%s) = %v", user, got)
		}
	}

	// Ends.
	r, err = admin.Revoke(adminCtx, r.ID, "done")
	ok(t, "revoke", err)
	if r.State != pam.Revoked || r.ClosedBy != "admin" {
		t.Fatalf("revoked %+v", r)
	}
	_, err = alice.Cancel(aliceCtx, r.ID, "")
	is(t, "cancel a revoked one", err, pam.ErrWrongState)
	c, err := alice.Cancel(aliceCtx, second.ID, "not needed")
	ok(t, "cancel", err)
	if c.State != pam.Canceled {
		t.Fatalf("canceled %+v", c)
	}

	// The holder ends their own grant early; no one else may.
	third, err := alice.Submit(aliceCtx, pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "INC-3", Duration: time.Hour})
	ok(t, "submit a third", err)
	_, err = bob.Approve(bobCtx, third.ID, "")
	ok(t, "approve the third", err)
	_, err = bob.Relinquish(bobCtx, third.ID, "")
	is(t, "relinquish another's grant", err, pam.ErrForbidden)
	rel, err := alice.Relinquish(aliceCtx, third.ID, "done early")
	ok(t, "relinquish", err)
	if rel.State != pam.Relinquished || rel.ClosedBy != "alice" {
		t.Fatalf("relinquished %+v", rel)
	}
	_, err = alice.Relinquish(aliceCtx, third.ID, "")
	is(t, "relinquish twice", err, pam.ErrWrongState)

	// A start ahead schedules the window; not beyond the horizon.
	start := epoch.Add(time.Hour)
	sched, err := alice.Submit(aliceCtx, pam.RequestInput{Scope: move, Reason: "INC-4", Duration: time.Hour, Start: start})
	ok(t, "submit a scheduled request", err)
	sched, err = bob.Approve(bobCtx, sched.ID, "")
	ok(t, "approve the scheduled request", err)
	if !sched.Start.Equal(start) || !sched.ApprovedAt.Equal(start) || !sched.ExpiresAt.Equal(start.Add(time.Hour)) {
		t.Fatalf("scheduled %+v", sched)
	}
	_, err = alice.Extend(aliceCtx, sched.ID, time.Hour, "more")
	is(t, "extend a grant not open yet", err, pam.ErrWrongState)
	_, err = alice.Relinquish(aliceCtx, sched.ID, "not needed")
	ok(t, "relinquish a scheduled grant", err)
	_, err = alice.Submit(aliceCtx, pam.RequestInput{Scope: move, Reason: "r", Start: epoch.Add(pam.DefaultMaxStartDelay + time.Second)})
	is(t, "a start beyond the horizon", err, pam.ErrInvalid)

	// The holder asks for more time; an approver grants it.
	fifth, err := alice.Submit(aliceCtx, pam.RequestInput{Scope: move, Reason: "INC-5", Duration: time.Hour})
	ok(t, "submit a fifth", err)
	fifth, err = bob.Approve(bobCtx, fifth.ID, "")
	ok(t, "approve the fifth", err)
	_, err = bob.Extend(bobCtx, fifth.ID, time.Hour, "more")
	is(t, "extend another's grant", err, pam.ErrForbidden)
	_, err = alice.Extend(aliceCtx, fifth.ID, 7*time.Hour+time.Nanosecond, "more")
	is(t, "extend past the cap", err, pam.ErrDurationTooLong)
	_, err = alice.Extend(aliceCtx, fifth.ID, 0, "more")
	is(t, "extend by nothing", err, pam.ErrInvalid)
	ext, err := alice.Extend(aliceCtx, fifth.ID, 30*time.Minute, "the move is slow")
	ok(t, "extend", err)
	if ext.Extension == nil || ext.Extension.State != pam.Pending || ext.Extension.By != 30*time.Minute || !ext.ExpiresAt.Equal(fifth.ExpiresAt) {
		t.Fatalf("extension asked %+v", ext.Extension)
	}
	_, err = alice.Extend(aliceCtx, fifth.ID, 30*time.Minute, "again")
	is(t, "extend with an extension pending", err, pam.ErrWrongState)
	waiting, err = bob.Reviewable(bobCtx)
	ok(t, "reviewable", err)
	if len(waiting) != 1 || waiting[0].ID != fifth.ID || waiting[0].Extension == nil {
		t.Fatalf("waiting for bob %+v", waiting)
	}
	ext, err = bob.Approve(bobCtx, fifth.ID, "ok")
	ok(t, "approve the extension", err)
	if ext.Extension.State != pam.Approved || !ext.ExpiresAt.Equal(fifth.ExpiresAt.Add(30*time.Minute)) {
		t.Fatalf("extended %+v", ext)
	}
}

// TestClientReadChecks: the engine checks reads, and the Client reports
// them as the engine's errors.
func TestClientReadChecks(t *testing.T) {
	e := newEnv(t)
	r, err := e.m.Submit(pam.WithActor(context.Background(), "alice"), pam.RequestInput{PolicyID: "move", Reason: "r"})
	if err != nil {
		t.Fatal(err)
	}
	client := func(user string) *pamhttp.Client {
		c, err := pamhttp.NewClient(e.srv.URL+"/pam", &pamhttp.ClientOptions{Token: "token-" + user, HTTPClient: e.srv.Client()})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ctx := context.Background()
	_, err = client("erin").Request(ctx, r.ID)
	is(t, "a stranger's read", err, pam.ErrNotFound)
	_, err = client("erin").Approve(ctx, r.ID, "")
	is(t, "a stranger's approval", err, pam.ErrNotFound)
	_, _, err = client("alice").Requests(ctx, pam.RequestFilter{})
	is(t, "everyone's requests", err, pam.ErrForbidden)
	_, _, err = client("alice").Requests(ctx, pam.RequestFilter{Requester: "bob"})
	is(t, "someone else's requests", err, pam.ErrForbidden)
	all, _, err := client("admin").Requests(ctx, pam.RequestFilter{})
	if err != nil || len(all) != 1 {
		t.Fatalf("admin's list: %v %v", all, err)
	}
	_, _, err = client("alice").Audit(ctx, pam.EventFilter{})
	is(t, "the trail", err, pam.ErrForbidden)
	_, err = client("alice").Verify(ctx, pam.VerifyOptions{})
	is(t, "verify", err, pam.ErrForbidden)
	_, _, err = client("alice").Messages(ctx, pam.MessageFilter{})
	is(t, "the outbox", err, pam.ErrForbidden)
	var p *pamhttp.Problem
	if !errors.As(err, &p) || p.Status != http.StatusForbidden || p.Code != "forbidden" {
		t.Errorf("problem %+v", p)
	}
	me, err := client("Alice").Me(ctx)
	if err != nil || me.Actor != "alice" || me.Admin {
		t.Errorf("me: %+v %v", me, err)
	}
}

func TestClientRefuses(t *testing.T) {
	e := newEnv(t)
	for _, u := range []string{"", "pam.example.com", "ftp://x/", "http://"} {
		if _, err := pamhttp.NewClient(u, nil); !errors.Is(err, pam.ErrInvalid) {
			t.Errorf("NewClient(%q): %v", u, err)
		}
	}
	c, err := pamhttp.NewClient(e.srv.URL+"/pam", &pamhttp.ClientOptions{Token: "token-admin"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, _, err = c.Requests(ctx, pam.RequestFilter{DueBy: epoch})
	is(t, "DueBy", err, pam.ErrInvalid)
	// The caller's checkpoints reach the server, which checks the trail
	// against them.
	_, err = c.Verify(ctx, pam.VerifyOptions{Checkpoints: []pam.Checkpoint{{Seq: 1}}})
	is(t, "a checkpoint the trail does not match", err, pam.ErrTampered)
	// An answer that is no problem of the API matches no sentinel.
	wrong, _ := pamhttp.NewClient(e.srv.URL+"/elsewhere", nil)
	_, err = wrong.Policies(ctx)
	var p *pamhttp.Problem
	if !errors.As(err, &p) || p.Status != http.StatusNotFound || errors.Is(err, pam.ErrNotFound) {
		t.Errorf("a 404 from elsewhere: %v", err)
	}
}

// TestStatusTableBothWays: every sentinel the handler answers comes back
// from a problem as itself.
func TestStatusTableBothWays(t *testing.T) {
	sentinels := []error{pam.ErrInvalid, pam.ErrNotFound, pam.ErrConflict, pam.ErrExists, pam.ErrNoActor, pam.ErrForbidden,
		pam.ErrSelfApproval, pam.ErrAlreadyDecided, pam.ErrWrongState, pam.ErrNoPolicy, pam.ErrAmbiguous, pam.ErrDurationTooLong,
		pam.ErrRejected, pam.ErrNotApproved, pam.ErrAudit, pam.ErrTampered}
	for _, s := range sentinels {
		st, code := pamhttp.StatusOf(fmt.Errorf("wrapped: %w", s))
		p := &pamhttp.Problem{Status: st, Code: code}
		if !errors.Is(p, s) {
			t.Errorf("%v: answered %d %s, which maps back to %v", s, st, code, p.Unwrap())
		}
	}
	errs, sts, codes := pamhttp.Statuses()
	for i := range errs {
		if p := (&pamhttp.Problem{Status: sts[i], Code: codes[i]}); !errors.Is(p, errs[i]) {
			t.Errorf("code %s maps back to %v, not %v", codes[i], p.Unwrap(), errs[i])
		}
	}
	if st, code := pamhttp.StatusOf(errors.New("boom")); st != 500 || (&pamhttp.Problem{Code: code}).Unwrap() != nil {
		t.Errorf("an internal error: %d %s", st, code)
	}
}

// TestBreakGlassManagerAndClientAgree: break-glass, its review list and
// its review answer alike in process and over HTTP.
func TestBreakGlassManagerAndClientAgree(t *testing.T) {
	for _, way := range ways {
		t.Run(way.name, func(t *testing.T) {
			e := newEnv(t)
			adminCtx, admin := way.as(t, e, "admin")
			aliceCtx, alice := way.as(t, e, "alice")
			bobCtx, bob := way.as(t, e, "bob")
			p, err := admin.Policy(adminCtx, "move")
			ok(t, "policy", err)
			p.BreakGlass = &pam.BreakGlass{Group: "pam-admins", MaxDuration: 30 * time.Minute}
			_, err = admin.UpdatePolicy(adminCtx, p)
			ok(t, "allow break-glass", err)
			_, err = alice.BreakGlass(aliceCtx, pam.RequestInput{PolicyID: "move", Reason: "r"})
			is(t, "alice breaks glass", err, pam.ErrForbidden)
			_, err = admin.BreakGlass(adminCtx, pam.RequestInput{PolicyID: "move", Reason: "r", Duration: time.Hour})
			is(t, "too long", err, pam.ErrDurationTooLong)
			r, err := admin.BreakGlass(adminCtx, pam.RequestInput{PolicyID: "move", Reason: "r"})
			ok(t, "break glass", err)
			if r.Duration != 30*time.Minute || r.BreakGlass == nil || r.BreakGlass.State != pam.ReviewPending {
				t.Fatalf("activated %+v", r)
			}
			_, err = admin.BreakGlass(adminCtx, pam.RequestInput{PolicyID: "move", Reason: "r"})
			is(t, "again", err, pam.ErrLimit)
			list, err := bob.BreakGlassReviews(bobCtx)
			ok(t, "reviews", err)
			if len(list) != 1 || list[0].ID != r.ID {
				t.Fatalf("reviews %+v", list)
			}
			_, err = bob.BreakGlassReviews(bobCtx, "bogus")
			is(t, "a bogus state", err, pam.ErrInvalid)
			_, err = admin.ReviewBreakGlass(adminCtx, r.ID, pam.ReviewConfirmed, "")
			is(t, "self-review", err, pam.ErrSelfApproval)
			_, err = bob.ReviewBreakGlass(bobCtx, r.ID, "maybe", "")
			is(t, "a bad verdict", err, pam.ErrInvalid)
			got, err := bob.ReviewBreakGlass(bobCtx, r.ID, pam.ReviewConfirmed, "fine")
			ok(t, "confirm", err)
			if got.BreakGlass.State != pam.ReviewConfirmed || got.BreakGlass.By != "bob" {
				t.Fatalf("confirmed %+v", got.BreakGlass)
			}
			list, err = bob.BreakGlassReviews(bobCtx, pam.ReviewConfirmed)
			ok(t, "confirmed reviews", err)
			if len(list) != 1 {
				t.Fatalf("confirmed reviews %+v", list)
			}
		})
	}
}
