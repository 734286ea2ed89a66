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

// TestScheduledWindow: a request may name a start; approved before it,
// the window opens at the start, to the nanosecond, and lasts the
// duration; Guard and Check say when it opens meanwhile.
func TestScheduledWindow(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	start := epoch.Add(2 * time.Hour)
	seq := e.lastSeq()
	r := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Duration: time.Hour, Start: start})
	if !r.Start.Equal(start) || !r.PendingUntil.Equal(epoch.Add(pam.DefaultPendingTTL)) {
		t.Errorf("submitted: start %v, pending until %v", r.Start, r.PendingUntil)
	}
	e.clk.Add(10 * time.Minute)
	r = e.approve("bob", r.ID)
	if r.State != pam.Approved || !r.ApprovedAt.Equal(start) || !r.ExpiresAt.Equal(start.Add(time.Hour)) {
		t.Fatalf("approved: %s, window %v..%v", r.State, r.ApprovedAt, r.ExpiresAt)
	}
	if !r.Scheduled(e.clk.Now()) || r.Allows(pam.ActionExtend, e.clk.Now()) || !r.Allows(pam.ActionRevoke, e.clk.Now()) {
		t.Errorf("a scheduled grant: Scheduled %v, may extend %v, may revoke %v", r.Scheduled(e.clk.Now()),
			r.Allows(pam.ActionExtend, e.clk.Now()), r.Allows(pam.ActionRevoke, e.clk.Now()))
	}
	events := e.eventsSince(seq)
	if d := cmp.Diff([]pam.EventType{pam.EventRequestSubmitted, pam.EventRequestDecision, pam.EventRequestApproved}, types(events)); d != "" {
		t.Fatalf("events (-want +got):\n%s", d)
	}
	if events[0].Detail["start"] != start.Format(time.RFC3339Nano) || events[2].Detail["opens_at"] != start.Format(time.RFC3339Nano) ||
		!events[2].Time.Equal(epoch.Add(10*time.Minute)) {
		t.Errorf("submitted %v, approved %v at %v", events[0].Detail, events[2].Detail, events[2].Time)
	}
	if _, err := e.m.Extend(e.as("alice"), r.ID, time.Hour, "more"); !errors.Is(err, pam.ErrWrongState) || !strings.Contains(err.Error(), "not open yet") {
		t.Errorf("Extend before the window opens = %v, want ErrWrongState", err)
	}

	// One nanosecond before the start: denied, and told when it opens.
	e.clk.Set(start.Add(-time.Nanosecond))
	ran, err := e.guard("alice", "New-MoveRequest", nil)
	var na *pam.NotApprovedError
	if ran || !errors.As(err, &na) || !strings.Contains(na.Reason, "request "+r.ID+" is approved and opens at "+start.Format(time.RFC3339)) {
		t.Fatalf("Guard 1ns before the start: ran %v, %v", ran, err)
	}
	res, err := e.m.Check(e.as("alice"), pam.Op{Task: "New-MoveRequest"})
	if err != nil || res.Allowed || !strings.Contains(res.Policies[0].Missing, "opens at") {
		t.Errorf("Check 1ns before the start: %+v, %v", res, err)
	}

	// At the start: runs, with the window's end as its deadline.
	e.clk.Set(start)
	var deadline time.Time
	err = e.m.Guard(e.as("alice"), pam.Op{Task: "New-MoveRequest"}, func(ctx context.Context) error {
		deadline, _ = ctx.Deadline()
		return nil
	})
	if err != nil || !deadline.Equal(start.Add(time.Hour)) {
		t.Fatalf("Guard at the start: %v, deadline %v", err, deadline)
	}
	if n, err := e.m.Sweep(context.Background()); n != 0 || err != nil {
		t.Errorf("Sweep inside the window: %d, %v", n, err)
	}
	e.clk.Set(start.Add(time.Hour - time.Nanosecond))
	if ran, err := e.guard("alice", "New-MoveRequest", nil); !ran || err != nil {
		t.Errorf("Guard 1ns before the end: ran %v, %v", ran, err)
	}
	e.clk.Set(start.Add(time.Hour))
	if ran, err := e.guard("alice", "New-MoveRequest", nil); ran || !errors.Is(err, pam.ErrNotApproved) {
		t.Errorf("Guard at the end: ran %v, %v", ran, err)
	}
	if n, err := e.m.Sweep(context.Background()); n != 1 || err != nil {
		t.Errorf("Sweep at the end: %d, %v", n, err)
	}
}

// TestScheduledGrantNotDue: a scheduled grant is not due before its
// end, however long before its opening it was approved; the sweeper
// leaves it alone.
func TestScheduledGrantNotDue(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	r := e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Duration: time.Hour, Start: epoch.Add(48 * time.Hour)})
	if !r.Due().Equal(epoch.Add(49 * time.Hour)) {
		t.Errorf("Due = %v", r.Due())
	}
	e.clk.Add(48 * time.Hour)
	if n, err := e.m.Sweep(context.Background()); n != 0 || err != nil {
		t.Errorf("Sweep at the opening: %d, %v", n, err)
	}
	if ran, err := e.guard("alice", "New-MoveRequest", nil); !ran || err != nil {
		t.Errorf("Guard at the opening: ran %v, %v", ran, err)
	}
}

// TestScheduleApprovedLate: approved after its start, the window opens
// at the approval and lasts the whole duration.
func TestScheduleApprovedLate(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	r := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Duration: time.Hour, Start: epoch.Add(time.Hour)})
	e.clk.Add(90 * time.Minute)
	r = e.approve("bob", r.ID)
	if now := e.clk.Now(); !r.ApprovedAt.Equal(now) || !r.ExpiresAt.Equal(now.Add(time.Hour)) || r.Scheduled(now) {
		t.Errorf("approved after its start: window %v..%v", r.ApprovedAt, r.ExpiresAt)
	}
	events := e.events()
	if _, ok := events[len(events)-1].Detail["opens_at"]; ok {
		t.Errorf("an approval that opens at once says opens_at: %v", events[len(events)-1].Detail)
	}
}

// TestScheduleStartRules: a start at or before now is now; one beyond the
// policy's horizon is refused, naming the field, and writes nothing; the
// pending TTL counts from the submission.
func TestScheduleStartRules(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	p := movePolicy()
	p.ID, p.Scope, p.MaxStartDelay, p.PendingTTL = "journal", pam.TaskScope("Set-JournalRule"), 48*time.Hour, time.Hour
	e.policy(p)

	for _, start := range []time.Time{epoch, epoch.Add(-time.Hour)} {
		r := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Start: start})
		if !r.Start.IsZero() {
			t.Errorf("start %v kept as %v, want none", start, r.Start)
		}
		r = e.approve("bob", r.ID)
		if !r.ApprovedAt.Equal(epoch) {
			t.Errorf("start %v: opens at %v", start, r.ApprovedAt)
		}
	}

	seq := e.lastSeq()
	for _, tc := range []struct {
		task  string
		start time.Time
	}{
		{"Set-JournalRule", epoch.Add(48*time.Hour + time.Nanosecond)},
		{"New-MoveRequest", epoch.Add(pam.DefaultMaxStartDelay + time.Nanosecond)},
	} {
		_, err := e.m.Submit(e.as("alice"), pam.RequestInput{Scope: pam.TaskScope(tc.task), Reason: "r", Start: tc.start})
		var ve *pam.ValidationError
		if !errors.Is(err, pam.ErrInvalid) || !errors.As(err, &ve) || ve.Field != "Start" {
			t.Errorf("%s starting %v ahead: %v, want ErrInvalid on Start", tc.task, tc.start.Sub(epoch), err)
		}
	}
	if got := e.eventsSince(seq); len(got) != 0 {
		t.Fatalf("refused submissions wrote %v", types(got))
	}
	r := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("Set-JournalRule"), Start: epoch.Add(48 * time.Hour)})
	e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Start: epoch.Add(pam.DefaultMaxStartDelay)})
	// Pending for its TTL from the submission, not from the start.
	e.clk.Add(time.Hour)
	if got, _ := e.m.Request(e.as("alice"), r.ID); got.State != pam.Expired {
		t.Errorf("an hour after submission under a one-hour TTL: %s", got.State)
	}
	if _, err := e.m.Approve(e.as("bob"), r.ID, ""); !errors.Is(err, pam.ErrWrongState) {
		t.Errorf("approve after the TTL = %v", err)
	}
}

// TestPolicyScheduleAndExtensionLimits: the new durations are checked
// like the others.
func TestPolicyScheduleAndExtensionLimits(t *testing.T) {
	for _, tc := range []struct {
		p     pam.Policy
		field string
	}{
		{pam.Policy{MaxStartDelay: -1}, "MaxStartDelay"},
		{pam.Policy{MaxExtendedDuration: -1}, "MaxExtendedDuration"},
		{pam.Policy{MaxDuration: 8 * time.Hour, MaxExtendedDuration: 8*time.Hour - time.Nanosecond}, "MaxExtendedDuration"},
		{pam.Policy{MaxExtendedDuration: 400 * 24 * time.Hour}, "MaxExtendedDuration"},
		{pam.Policy{MaxDuration: 8 * time.Hour, MaxExtendedDuration: 8 * time.Hour}, ""},
		{pam.Policy{MaxStartDelay: 24 * time.Hour, MaxExtendedDuration: 48 * time.Hour}, ""},
	} {
		p := tc.p
		p.Scope, p.Approval = pam.TaskScope("New-MoveRequest"), pam.Auto
		err := p.Validate()
		var ve *pam.ValidationError
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%+v: %v", tc.p, err)
		case tc.field != "" && (!errors.As(err, &ve) || ve.Field != tc.field):
			t.Errorf("%+v: %v, want ErrInvalid on %s", tc.p, err, tc.field)
		}
	}
}
