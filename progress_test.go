package pam_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/zerostanding/pam"
)

// TestProgress: where an M-of-N request stands, per group, for each
// viewer; approvals that no longer count; an extension's own round.
func TestProgress(t *testing.T) {
	e := newEnv(t)
	p := movePolicy()
	p.ApproverGroups = []pam.ApproverGroup{{Group: "mailbox-managers", MinApprovals: 2}, {Group: "security"}}
	e.policy(p)
	r := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	prog := func(who string) pam.Progress {
		t.Helper()
		got, err := e.m.Progress(e.as(who), r.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	want := pam.Progress{Waiting: true, Need: 3, Groups: []pam.GroupProgress{{Group: "mailbox-managers", Need: 2}, {Group: "security", Need: 1}}, MayDecide: true}
	if d := cmp.Diff(want, prog("bob")); d != "" {
		t.Errorf("before any approval (-want +got):\n%s", d)
	}
	e.approve("bob", r.ID)
	e.approve("carol", r.ID) // in both groups: counts for one
	want.Have = 2
	want.Groups[0].Approvers = []string{"bob", "carol"}
	want.MayDecide = false // alice's own
	if d := cmp.Diff(want, prog("alice")); d != "" {
		t.Errorf("1 more wanted, as alice (-want +got):\n%s", d)
	}
	if got := prog("bob"); got.MayDecide {
		t.Error("bob, who approved, may decide again")
	}
	if got := prog("erin"); !got.MayDecide || got.Have != 2 {
		t.Errorf("erin (security): %+v", got)
	}
	if _, err := e.m.Progress(e.as("zed"), r.ID); !errors.Is(err, pam.ErrNotFound) {
		t.Errorf("an outsider: %v, want ErrNotFound", err)
	}
	// bob leaves the group: his approval no longer counts.
	if err := e.dir.SetMembers("mailbox-managers", "carol", "Dave"); err != nil {
		t.Fatal(err)
	}
	got := prog("alice")
	if got.Have != 1 || !cmp.Equal(got.Uncounted, []string{"bob"}) || !cmp.Equal(got.Groups[0].Approvers, []string{"carol"}) || !cmp.Equal(got.Groups[1].Approvers, []string(nil)) {
		// carol moves to mailbox-managers' seats; security waits.
		t.Errorf("after bob left: %+v", got)
	}
	e.approve("Dave", r.ID)
	e.approve("frank", r.ID)
	if got := prog("alice"); got.Waiting {
		t.Errorf("approved, still waiting: %+v", got)
	}
}
