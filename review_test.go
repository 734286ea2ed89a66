package pam_test

import (
	"context"
	"testing"

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
