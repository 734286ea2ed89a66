package pamhttp

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/zerostanding/pam"
)

// TestQueryBothWays: what the Client writes, the handler reads back as
// the same filter.
func TestQueryBothWays(t *testing.T) {
	at := time.Date(2026, 11, 2, 9, 0, 0, 123456789, time.UTC)
	t.Run("requests", func(t *testing.T) {
		for _, f := range []pam.RequestFilter{
			{Requester: "bob", PolicyIDs: []string{"a", "b"}, States: []pam.State{pam.Pending, pam.Expired}, After: "req_1", Limit: 7},
			{}, // everyone's
			{Requester: "alice"},
		} {
			q, err := requestQuery(f)
			if err != nil {
				t.Fatal(err)
			}
			got, err := requestFilter(q, "alice")
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(f, got); d != "" {
				t.Errorf("%v (-sent +read):\n%s", q, d)
			}
		}
		if f, _ := requestFilter(nil, "alice"); f.Requester != "alice" {
			t.Errorf("no requester reads as the actor's own: %+v", f)
		}
	})
	t.Run("events", func(t *testing.T) {
		for _, f := range []pam.EventFilter{
			{Actor: "alice", Task: "T", Types: []pam.EventType{pam.EventRequestApproved, pam.EventGuardAllowed}, RequestID: "r", PolicyID: "p", Run: "run_1",
				Outcome: pam.OutcomeGranted, Since: at, Until: at.Add(time.Hour), After: 3, Before: 9, Descending: true, Limit: 20},
			{},
		} {
			got, err := eventFilter(eventQuery(f))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(f, got); d != "" {
				t.Errorf("%v (-sent +read):\n%s", eventQuery(f), d)
			}
		}
	})
	t.Run("messages", func(t *testing.T) {
		f := pam.MessageFilter{States: []pam.MessageState{pam.MessageFailed}, RequestID: "r", After: "m", Limit: 3}
		got, err := messageFilter(messageQuery(f))
		if err != nil || cmp.Diff(f, got) != "" {
			t.Errorf("read %+v, %v; sent %+v", got, err, f)
		}
	})
	t.Run("verify", func(t *testing.T) {
		o := pam.VerifyOptions{From: 2, To: 9}
		got, err := verifyOptions(verifyQuery(o))
		if err != nil || got.From != 2 || got.To != 9 {
			t.Errorf("read %+v, %v", got, err)
		}
	})
}
