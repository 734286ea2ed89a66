package pam_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/zerostanding/pam"
)

func TestReviewableAndMayView(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	a := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	e.clk.Add(1)
	b := e.submit("erin", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	e.clk.Add(1)
	c := e.submit("bob", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	e.approve("carol", b.ID)
	ids := func(who string) []string {
		rs, err := e.m.Reviewable(e.as(who))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rs {
			out = append(out, r.ID)
		}
		return out
	}
	for who, want := range map[string][]string{
		"bob":   {a.ID},       // not his own; b is approved already
		"carol": {a.ID, c.ID}, // oldest first
		"erin":  nil,          // not an approver
	} {
		if d := cmp.Diff(want, ids(who)); d != "" {
			t.Errorf("Reviewable(%s) (-want +got):\n%s", who, d)
		}
	}
	for who, want := range map[string]bool{"alice": true, "bob": true, "admin": true, "erin": false, "frank": false} {
		got, err := e.m.MayView(e.as(who), a)
		if err != nil || got != want {
			t.Errorf("MayView(%s) = %v, %v; want %v", who, got, err, want)
		}
	}
	if _, err := e.m.Reviewable(context.Background()); err == nil {
		t.Error("Reviewable without an actor succeeded")
	}
}

// TestReviewablePagesAndHistory: what waits for an approver comes a page
// at a time in either order and narrows by requester and search; an
// approver lists what they decided; the filters refuse what they cannot
// mean.
func TestReviewablePagesAndHistory(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	var alice, erin []string
	for i := range 7 {
		alice = append(alice, e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Ticket: fmt.Sprintf("CHG-%d", i)}).ID)
		e.clk.Add(time.Millisecond)
		if i < 3 {
			erin = append(erin, e.submit("erin", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Ticket: "INC-9"}).ID)
			e.clk.Add(time.Millisecond)
		}
	}
	e.approve("bob", alice[1])
	e.approve("bob", erin[2])
	if _, err := e.m.Deny(e.as("Dave"), alice[4], "no"); err != nil {
		t.Fatal(err)
	}
	pages := func(who string, f pam.RequestFilter) (ids []string, n int) {
		t.Helper()
		for {
			rs, next, err := e.m.ReviewableRequests(e.as(who), f)
			if err != nil {
				t.Fatal(err)
			}
			n++
			for _, r := range rs {
				ids = append(ids, r.ID)
			}
			if next == "" {
				return ids, n
			}
			if len(rs) != f.Limit || next != rs[len(rs)-1].ID {
				t.Fatalf("a page of %d with next %q, limit %d", len(rs), next, f.Limit)
			}
			f.After = next
		}
	}
	// Waiting for carol: every pending one (8), by ID.
	var want []string
	for _, id := range append(append([]string{}, alice...), erin...) {
		if id != alice[1] && id != erin[2] && id != alice[4] {
			want = append(want, id)
		}
	}
	slices.Sort(want)
	got, n := pages("carol", pam.RequestFilter{Limit: 3})
	if d := cmp.Diff(want, got); d != "" || n != 3 {
		t.Errorf("oldest first, in %d pages (-want +got):\n%s", n, d)
	}
	got, _ = pages("carol", pam.RequestFilter{Limit: 3, Newest: true})
	slices.Reverse(got)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("newest first (-want +got):\n%s", d)
	}
	all, err := e.m.Reviewable(e.as("carol"))
	if err != nil || len(all) != len(want) {
		t.Errorf("Reviewable: %d, %v; want %d", len(all), err, len(want))
	}
	if got, _ := pages("carol", pam.RequestFilter{Limit: 10, Requester: "ERIN"}); !cmp.Equal(got, erin[:2]) {
		t.Errorf("erin's waiting: %v, want %v", got, erin[:2])
	}
	if got, _ := pages("carol", pam.RequestFilter{Limit: 10, Search: "chg-6"}); !cmp.Equal(got, alice[6:]) {
		t.Errorf("search by ticket: %v, want %v", got, alice[6:])
	}
	if got, _ := pages("erin", pam.RequestFilter{Limit: 10}); len(got) != 0 {
		t.Errorf("erin is no approver of these, and sees %v", got)
	}
	for _, f := range []pam.RequestFilter{{States: []pam.State{pam.Pending}}, {DecidedBy: "bob"}, {Limit: pam.MaxPageSize + 1}, {Search: "a\u0000b"}} {
		if _, _, err := e.m.ReviewableRequests(e.as("carol"), f); !errors.Is(err, pam.ErrInvalid) {
			t.Errorf("ReviewableRequests(%+v) = %v, want ErrInvalid", f, err)
		}
	}

	// History: what bob decided, newest first, his to list; not carol's.
	rs, _, err := e.m.Requests(e.as("bob"), pam.RequestFilter{DecidedBy: "BOB", Newest: true})
	if err != nil || len(rs) != 2 || rs[0].ID != erin[2] || rs[1].ID != alice[1] {
		t.Errorf("bob's history = %v, %v", rs, err)
	}
	rs, _, err = e.m.Requests(e.as("dave"), pam.RequestFilter{DecidedBy: "dave", Search: "CHG-4"})
	if err != nil || len(rs) != 1 || rs[0].ID != alice[4] {
		t.Errorf("Dave's history = %v, %v", rs, err)
	}
	// An approver of the policy lists its requests: a requester's history.
	rs, _, err = e.m.Requests(e.as("carol"), pam.RequestFilter{Requester: "alice", PolicyIDs: []string{"move"}, Newest: true, Limit: 3})
	if err != nil || len(rs) != 3 || rs[0].ID != alice[6] {
		t.Errorf("alice's history under move, for carol = %v, %v", rs, err)
	}
	for _, c := range []struct {
		who, why string
		f        pam.RequestFilter
	}{
		{"erin", "no approver of move", pam.RequestFilter{Requester: "alice", PolicyIDs: []string{"move"}}},
		{"carol", "one of the policies is none", pam.RequestFilter{PolicyIDs: []string{"move", "nope"}}},
	} {
		if _, _, err := e.m.Requests(e.as(c.who), c.f); !errors.Is(err, pam.ErrForbidden) {
			t.Errorf("%s (%s) lists requests: %v, want ErrForbidden", c.who, c.why, err)
		}
	}
	if _, _, err := e.m.Requests(e.as("carol"), pam.RequestFilter{DecidedBy: "bob"}); !errors.Is(err, pam.ErrForbidden) {
		t.Errorf("carol lists bob's history: %v, want ErrForbidden", err)
	}
	if _, _, err := e.m.Requests(e.as("alice"), pam.RequestFilter{Requester: "alice", Search: "x\ny"}); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("a search with a newline: %v, want ErrInvalid", err)
	}
	// The requester's own, newest first, paged.
	rs, next, err := e.m.Requests(e.as("alice"), pam.RequestFilter{Requester: "alice", Newest: true, Limit: 2})
	if err != nil || len(rs) != 2 || rs[0].ID != alice[6] || next != alice[5] {
		t.Fatalf("alice's newest = %v %q %v", rs, next, err)
	}
	rs, _, err = e.m.Requests(e.as("alice"), pam.RequestFilter{Requester: "alice", Newest: true, Limit: 2, After: next})
	if err != nil || len(rs) != 2 || rs[0].ID != alice[4] || rs[1].ID != alice[3] {
		t.Errorf("alice's next page = %v %v", rs, err)
	}
}
