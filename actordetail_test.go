package pam_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/zerostanding/pam"
)

func TestWithActorDetail(t *testing.T) {
	e := newEnv(t)
	p := e.policy(movePolicy())
	from := map[string]string{"os_user": "alice-unix", "host": "laptop-7"}
	ctx := pam.WithActorDetail(e.as("alice"), from)
	r, err := e.m.Submit(ctx, pam.RequestInput{PolicyID: p.ID, Reason: "INC-1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Approve(pam.WithActorDetail(e.as("bob"), map[string]string{"host": "bobs-box"}), r.ID, "ok"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Revoke(e.admin(), r.ID, "done"); err != nil {
		t.Fatal(err)
	}
	seen := map[pam.EventType]bool{}
	for _, ev := range e.events() {
		if ev.RequestID != r.ID {
			continue
		}
		seen[ev.Type] = true
		var want map[string]string
		switch ev.Actor {
		case "alice":
			want = map[string]string{"actor.os_user": "alice-unix", "actor.host": "laptop-7"}
		case "bob":
			want = map[string]string{"actor.host": "bobs-box"}
		}
		for k, v := range ev.Detail {
			if strings.HasPrefix(k, pam.ActorDetailPrefix) && want[k] != v {
				t.Errorf("%s by %s: detail %s = %q, want %q", ev.Type, ev.Actor, k, v, want[k])
			}
		}
		for k, v := range want {
			if ev.Detail[k] != v {
				t.Errorf("%s by %s: detail %s = %q, want %q (detail %v)", ev.Type, ev.Actor, k, ev.Detail[k], v, ev.Detail)
			}
		}
		if ev.Type == pam.EventRequestRevoked && ev.Detail["comment"] != "done" {
			t.Errorf("the engine's own detail is lost: %v", ev.Detail)
		}
	}
	for _, typ := range []pam.EventType{pam.EventRequestSubmitted, pam.EventRequestDecision, pam.EventRequestApproved, pam.EventRequestRevoked} {
		if !seen[typ] {
			t.Errorf("no %s event", typ)
		}
	}
	if from["os_user"] != "alice-unix" || len(from) != 2 {
		t.Errorf("the caller's map changed: %v", from)
	}
}

func TestWithActorDetailGuard(t *testing.T) {
	e := newEnv(t)
	p := e.policy(movePolicy())
	e.grant("alice", pam.RequestInput{PolicyID: p.ID})
	// The first run's end may ride with the second run's start, from
	// another host: it takes the detail of neither.
	for _, host := range []string{"laptop-7", "desk-2"} {
		ctx := pam.WithActorDetail(e.as("alice"), map[string]string{"host": host})
		if err := e.m.Guard(ctx, pam.Op{Task: "New-MoveRequest"}, func(context.Context) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	hosts := map[string]bool{}
	var start, end bool
	for _, ev := range e.events() {
		switch ev.Type {
		case pam.EventGuardAllowed:
			start = true
			hosts[ev.Detail["actor.host"]] = true
		case pam.EventGuardFinished:
			end = true
			if _, ok := ev.Detail["actor.host"]; ok {
				t.Errorf("the run's end: detail %v", ev.Detail)
			}
		}
	}
	if !start || !end || !hosts["laptop-7"] || !hosts["desk-2"] || len(hosts) != 2 {
		t.Errorf("starts from %v; a start %v, an end %v", hosts, start, end)
	}
}

func TestWithActorDetailInvalid(t *testing.T) {
	e := newEnv(t)
	p := e.policy(movePolicy())
	before := len(e.events())
	many := map[string]string{}
	for i := range 17 {
		many[string(rune('a'+i))] = "x"
	}
	for name, d := range map[string]map[string]string{
		"upper case": {"Host": "x"},
		"dot":        {"a.b": "x"},
		"empty key":  {"": "x"},
		"long key":   {strings.Repeat("k", 65): "x"},
		"too many":   many,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := e.m.Submit(pam.WithActorDetail(e.as("alice"), d), pam.RequestInput{PolicyID: p.ID, Reason: "INC-1"})
			if !errors.Is(err, pam.ErrInvalid) {
				t.Fatalf("Submit: %v, want ErrInvalid", err)
			}
		})
	}
	if after := len(e.events()); after != before {
		t.Errorf("%d events written by refused commits", after-before)
	}
	rs, _, err := e.m.Requests(e.admin(), pam.RequestFilter{})
	if err != nil || len(rs) != 0 {
		t.Errorf("requests after refused commits: %v %v", rs, err)
	}
}
