package pam_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/zerostanding/pam"
)

func TestNoSelfApproval(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	// The requester is also an approver, under several spellings.
	e.dir.SetMembers("mailbox-managers", "Alice", "bob")
	r := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	for _, spelling := range []string{"alice", "Alice", "ALICE", "ａｌｉｃｅ", "Ａｌｉｃｅ"} {
		for name, decide := range map[string]func() (pam.Request, error){
			"approve": func() (pam.Request, error) { return e.m.Approve(e.as(spelling), r.ID, "") },
			"deny":    func() (pam.Request, error) { return e.m.Deny(e.as(spelling), r.ID, "") },
		} {
			if _, err := decide(); !errors.Is(err, pam.ErrSelfApproval) || !errors.Is(err, pam.ErrForbidden) {
				t.Errorf("%s as %q = %v, want ErrSelfApproval", name, spelling, err)
			}
		}
	}
	got, _ := e.m.Request(e.admin(), r.ID)
	if got.State != pam.Pending || len(got.Decisions) != 0 || got.Version != 1 {
		t.Errorf("self-decisions changed the request: %+v", got)
	}
}

func TestDecisions(t *testing.T) {
	e := newEnv(t)
	p := movePolicy()
	p.ApproverGroups[0].MinApprovals = 2
	e.policy(p)

	r := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	// An outsider may not see the request, so is not told it exists; an
	// admin may see it but not decide it.
	if _, err := e.m.Approve(e.as("mallory"), r.ID, ""); !errors.Is(err, pam.ErrNotFound) {
		t.Errorf("outsider approval = %v, want ErrNotFound", err)
	}
	if _, err := e.m.Approve(e.admin(), r.ID, ""); !errors.Is(err, pam.ErrForbidden) {
		t.Errorf("admin outside the approver groups = %v, want ErrForbidden", err)
	}
	r = e.approve("bob", r.ID)
	if r.State != pam.Pending || len(r.Decisions) != 1 {
		t.Fatalf("after one of two approvals: %s, %d decisions", r.State, len(r.Decisions))
	}
	for _, who := range []string{"bob", "BOB", "ｂｏｂ"} {
		if _, err := e.m.Approve(e.as(who), r.ID, ""); !errors.Is(err, pam.ErrAlreadyDecided) {
			t.Errorf("second approval as %q = %v, want ErrAlreadyDecided", who, err)
		}
		if _, err := e.m.Deny(e.as(who), r.ID, ""); !errors.Is(err, pam.ErrAlreadyDecided) {
			t.Errorf("deny after approve as %q = %v, want ErrAlreadyDecided", who, err)
		}
	}
	r = e.approve("Dave", r.ID)
	if r.State != pam.Approved || r.ApprovedAt.IsZero() {
		t.Fatalf("after two approvals: %s", r.State)
	}
	if _, err := e.m.Deny(e.as("carol"), r.ID, ""); !errors.Is(err, pam.ErrWrongState) {
		t.Errorf("deny after approval = %v, want ErrWrongState", err)
	}

	// Any deny ends it, even after approvals.
	r2 := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	e.approve("bob", r2.ID)
	d, err := e.m.Deny(e.as("carol"), r2.ID, "not during the freeze")
	if err != nil || d.State != pam.Denied || d.ClosedBy != "carol" {
		t.Fatalf("Deny = %+v, %v", d, err)
	}
	if _, err := e.m.Approve(e.as("dave"), r2.ID, ""); !errors.Is(err, pam.ErrWrongState) {
		t.Errorf("approve after deny = %v, want ErrWrongState", err)
	}
	var r2types []pam.EventType
	for _, ev := range e.events() {
		if ev.RequestID == r2.ID {
			r2types = append(r2types, ev.Type)
		}
	}
	want := []pam.EventType{pam.EventRequestSubmitted, pam.EventRequestDecision, pam.EventRequestDecision, pam.EventRequestDenied}
	if d := cmp.Diff(want, r2types); d != "" {
		t.Errorf("audit of the denied request (-want +got):\n%s", d)
	}
}

// TestQuorum checks M-of-N over several groups: every group needs its
// own minimum, one person counts for one group only, and only people who
// are members when the quorum is evaluated count.
func TestQuorum(t *testing.T) {
	for _, tc := range []struct {
		name      string
		groups    []pam.ApproverGroup
		approvals []string
		removed   map[string][]string // group → members, set before the second approval
		want      pam.State
	}{
		{"one of one", []pam.ApproverGroup{{Group: "mailbox-managers"}}, []string{"bob"}, nil, pam.Approved},
		{"two of two", []pam.ApproverGroup{{Group: "mailbox-managers", MinApprovals: 2}}, []string{"bob", "dave"}, nil, pam.Approved},
		{"one of two", []pam.ApproverGroup{{Group: "mailbox-managers", MinApprovals: 2}}, []string{"bob"}, nil, pam.Pending},
		{"both groups", []pam.ApproverGroup{{Group: "mailbox-managers"}, {Group: "security"}}, []string{"bob", "erin"}, nil, pam.Approved},
		{"one group only", []pam.ApproverGroup{{Group: "mailbox-managers"}, {Group: "security"}}, []string{"bob", "dave"}, nil, pam.Pending},
		// carol is in both groups: she fills one seat, not two.
		{"member of both counts once", []pam.ApproverGroup{{Group: "mailbox-managers"}, {Group: "security"}}, []string{"carol"}, nil, pam.Pending},
		{"member of both plus one", []pam.ApproverGroup{{Group: "mailbox-managers"}, {Group: "security"}}, []string{"carol", "bob"}, nil, pam.Approved},
		// carol must take the security seat for the managers to fill theirs: the matching finds it.
		{"matching reassigns", []pam.ApproverGroup{{Group: "mailbox-managers", MinApprovals: 2}, {Group: "security"}}, []string{"carol", "bob", "dave"}, nil, pam.Approved},
		{"matching short", []pam.ApproverGroup{{Group: "mailbox-managers", MinApprovals: 2}, {Group: "security", MinApprovals: 2}}, []string{"carol", "bob", "erin"}, nil, pam.Pending},
		{"removed approver stops counting", []pam.ApproverGroup{{Group: "mailbox-managers", MinApprovals: 2}}, []string{"bob", "dave"},
			map[string][]string{"mailbox-managers": {"carol", "dave"}}, pam.Pending},
		{"removed, replaced", []pam.ApproverGroup{{Group: "mailbox-managers", MinApprovals: 2}}, []string{"bob", "dave", "carol"},
			map[string][]string{"mailbox-managers": {"carol", "dave"}}, pam.Approved},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			p := movePolicy()
			p.ApproverGroups = tc.groups
			e.policy(p)
			r := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
			for i, who := range tc.approvals {
				if i == 1 {
					for g, members := range tc.removed {
						e.dir.SetMembers(g, members...)
					}
				}
				r = e.approve(who, r.ID)
			}
			if r.State != tc.want {
				t.Errorf("state %s, want %s", r.State, tc.want)
			}
		})
	}
}

func TestDecisionOnDeletedPolicy(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	r := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	if err := e.m.DeletePolicy(e.admin(), "move"); err != nil {
		t.Fatal(err)
	}
	// bob approved under the policy; with it gone he no longer sees the
	// request, and is told so rather than its state.
	if _, err := e.m.Approve(e.as("bob"), r.ID, ""); !errors.Is(err, pam.ErrNotFound) {
		t.Errorf("bob's approval under a deleted policy = %v, want ErrNotFound", err)
	}
	if _, err := e.m.Approve(e.admin(), r.ID, ""); !errors.Is(err, pam.ErrWrongState) {
		t.Errorf("an admin's approval under a deleted policy = %v, want ErrWrongState", err)
	}
}
