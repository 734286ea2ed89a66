package pam_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/internal/fakes"
)

func TestOutboxIsWrittenWithTheTransition(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	r := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	msgs, _, err := e.m.Messages(e.admin(), pam.MessageFilter{RequestID: r.ID})
	if err != nil {
		t.Fatal(err)
	}
	var to []string
	for _, m := range msgs {
		if m.State != pam.MessagePending || m.Type != pam.EventRequestSubmitted || m.Notifier != "default" || m.Request.ID != r.ID || m.Attempts != 0 {
			t.Errorf("message %+v", m)
		}
		to = append(to, m.Recipient)
	}
	if d := cmp.Diff([]string{"bob", "carol", "dave"}, sortedStrings(to)); d != "" {
		t.Errorf("one message per approver (-want +got):\n%s", d)
	}
	// A commit that fails writes no message.
	e.store.FailCommit(func(*pam.Tx) error { return errors.New("disk full") })
	if _, err := e.m.Submit(e.as("erin"), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "x"}); err == nil {
		t.Fatal("Submit succeeded on a failing store")
	}
	e.store.FailCommit(nil)
	if all := e.messages(pam.MessageFilter{}); len(all) != 3 {
		t.Errorf("%d messages after a failed commit, want 3", len(all))
	}
	notes := e.delivered()
	if len(notes) != 3 {
		t.Fatalf("%d notifications", len(notes))
	}
	for _, n := range notes {
		if len(n.Recipients) != 1 || n.Attempt != 1 || !strings.HasPrefix(n.ID, "msg_") {
			t.Errorf("notification %+v", n)
		}
	}
	if pending := e.messages(pam.MessageFilter{States: []pam.MessageState{pam.MessagePending}}); len(pending) != 0 {
		t.Errorf("%d messages still pending", len(pending))
	}
	delivered := e.messages(pam.MessageFilter{States: []pam.MessageState{pam.MessageDelivered}})
	if len(delivered) != 3 || !delivered[0].DeliveredAt.Equal(epoch) || delivered[0].Attempts != 1 {
		t.Errorf("delivered messages %+v", delivered)
	}
}

func sortedStrings(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestOutboxRetriesThenParks: a notifier that fails is retried with
// backoff, each notifier on its own; after MaxAttempts the message is
// parked as failed, reported and audited. The transition never fails.
func TestOutboxRetriesThenParks(t *testing.T) {
	mail, chat := &fakes.Notifier{}, &fakes.Notifier{}
	e := newEnv(t, func(o *pam.Options) {
		o.Notifier = nil
		o.Notifiers = []pam.NotifierConfig{
			{Name: "mail", Notifier: mail, MaxAttempts: 3, MinBackoff: time.Minute, MaxBackoff: 10 * time.Minute},
			{Name: "chat", Notifier: chat},
		}
	})
	e.policy(movePolicy())
	mail.Fail(errors.New("smtp down"))
	r := e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	if r = e.approve("bob", r.ID); r.State != pam.Approved {
		t.Fatalf("state %s", r.State)
	}
	deliver := func() int {
		n, err := e.m.Deliver(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := deliver(); n != 8 { // 3 approvers + the requester, twice
		t.Fatalf("first pass claimed %d, want 8", n)
	}
	if got := len(chat.Take()); got != 4 {
		t.Errorf("chat got %d, want 4: the mail outage does not hold it up", got)
	}
	if n := deliver(); n != 0 {
		t.Errorf("retries before their backoff: %d", n)
	}
	// Backoff doubles from a minute, with jitter: half to all of it.
	e.clk.Add(time.Minute)
	if n := deliver(); n != 4 {
		t.Errorf("second attempt claimed %d, want 4", n)
	}
	e.clk.Add(2 * time.Minute)
	if n := deliver(); n != 4 {
		t.Errorf("third attempt claimed %d, want 4", n)
	}
	e.clk.Add(time.Hour)
	if n := deliver(); n != 0 {
		t.Errorf("parked messages were claimed again: %d", n)
	}
	failed := e.messages(pam.MessageFilter{States: []pam.MessageState{pam.MessageFailed}})
	if len(failed) != 4 {
		t.Fatalf("%d failed messages, want 4", len(failed))
	}
	for _, m := range failed {
		if m.Notifier != "mail" || m.Attempts != 3 || !strings.Contains(m.LastError, "smtp down") {
			t.Errorf("failed message %+v", m)
		}
	}
	var audited []string
	for _, ev := range e.events() {
		if ev.Type == pam.EventNotifyFailed {
			audited = append(audited, ev.Detail["recipient"]+"/"+ev.Detail["attempts"])
			if ev.RequestID != r.ID || ev.Detail["notifier"] != "mail" || !strings.Contains(ev.Detail["error"], "smtp down") {
				t.Errorf("notify.failed %+v", ev)
			}
		}
	}
	if d := cmp.Diff([]string{"alice/3", "bob/3", "carol/3", "dave/3"}, sortedStrings(audited)); d != "" {
		t.Errorf("notify.failed events (-want +got):\n%s", d)
	}
	if errs := e.errors.Take(); len(errs) != 12 {
		t.Errorf("OnError got %d errors, want 12 (every failed attempt)", len(errs))
	}
}

func TestOutboxRecoversAfterAnOutage(t *testing.T) {
	e := newEnv(t, func(o *pam.Options) {
		o.Notifiers = []pam.NotifierConfig{{Name: "default2", Notifier: &fakes.Notifier{}}}
	})
	e.policy(movePolicy())
	e.notes.Fail(errors.New("smtp down"))
	e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	e.delivered()
	e.notes.Fail(nil)
	e.clk.Add(time.Hour)
	notes := e.delivered()
	if len(notes) != 3 || notes[0].Attempt != 2 {
		t.Fatalf("after the outage: %+v", notes)
	}
}

func TestNotifierOptionsAreValidated(t *testing.T) {
	dir, _ := pam.NewStaticDirectory(testGroups)
	for name, ns := range map[string][]pam.NotifierConfig{
		"nil notifier":   {{Name: "x"}},
		"no name":        {{Notifier: &fakes.Notifier{}}},
		"same name":      {{Name: "x", Notifier: &fakes.Notifier{}}, {Name: "x", Notifier: &fakes.Notifier{}}},
		"negative tries": {{Name: "x", Notifier: &fakes.Notifier{}, MaxAttempts: -1}},
	} {
		if _, err := pam.New(fakesStore(), dir, &pam.Options{AdminGroup: "pam-admins", Notifiers: ns}); !errors.Is(err, pam.ErrInvalid) {
			t.Errorf("%s: New = %v, want ErrInvalid", name, err)
		}
	}
}

// TestOneBadRecipientBlocksNoOther: delivery is per recipient.
func TestOneBadRecipientBlocksNoOther(t *testing.T) {
	var mu sync.Mutex
	var got []string
	e := newEnv(t, func(o *pam.Options) {
		o.Notifier = pam.NotifierFunc(func(_ context.Context, n pam.Notification) error {
			if n.Recipients[0] == "carol" {
				return errors.New("550 mailbox unavailable")
			}
			mu.Lock()
			got = append(got, n.Recipients[0])
			mu.Unlock()
			return nil
		})
	})
	e.policy(movePolicy())
	e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	if _, err := e.m.Deliver(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"bob", "dave"}, sortedStrings(got)); d != "" {
		t.Errorf("delivered (-want +got):\n%s", d)
	}
	pending := e.messages(pam.MessageFilter{States: []pam.MessageState{pam.MessagePending}})
	if len(pending) != 1 || pending[0].Recipient != "carol" || pending[0].Attempts != 1 || !strings.Contains(pending[0].LastError, "550") {
		t.Errorf("pending %+v", pending)
	}
}
