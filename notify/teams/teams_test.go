package teams_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/notify/teams"
)

func note(t pam.EventType) pam.Notification {
	at := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	return pam.Notification{ID: "msg_1", Type: t, Recipients: []string{"bob", "carol"}, Attempt: 1,
		Request: pam.Request{ID: "req_1", Requester: "alice", Scope: pam.TaskScope("New-MoveRequest"), PolicyID: "move",
			Reason: "leaver \u202egnp.exe [click](https://evil.example) **now**", Ticket: "INC-7", Duration: 2 * time.Hour,
			State: pam.Pending, CreatedAt: at, PendingUntil: at.Add(24 * time.Hour), Bind: map[string]any{"identity": "ceo@contoso.com"}}}
}

// TestTeams: the card posted to a Workflows webhook, its shape as
// Workflows takes it, user text shown as recorded (invisible characters
// visible, Markdown inert), a Review button to the request's page; a
// refusal is an error that never quotes the webhook's URL.
func TestTeams(t *testing.T) {
	var got []byte
	status := http.StatusAccepted
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "content type", http.StatusBadRequest)
			return
		}
		got, _ = io.ReadAll(r.Body)
		w.WriteHeader(status)
	}))
	defer srv.Close()
	n, err := teams.New(srv.URL+"/workflows/abc?sig=KEY", &teams.Options{BaseURL: "https://pam.example.com/"})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(context.Background(), note(pam.EventRequestSubmitted)); err != nil {
		t.Fatal(err)
	}
	var pretty bytes.Buffer
	json.Indent(&pretty, got, "", "  ")
	t.Logf("the message posted:\n%s", pretty.String())
	var msg struct {
		Type        string
		Attachments []struct {
			ContentType string
			Content     struct {
				Type, Version string
				Body          []struct {
					Type, Text string
					Facts      []struct{ Title, Value string }
				}
				Actions []struct{ Type, Title, URL string }
			}
		}
	}
	if err := json.Unmarshal(got, &msg); err != nil {
		t.Fatal(err)
	}
	if msg.Type != "message" || len(msg.Attachments) != 1 || msg.Attachments[0].ContentType != "application/vnd.microsoft.card.adaptive" {
		t.Fatalf("the message: %s", got)
	}
	card := msg.Attachments[0].Content
	if card.Type != "AdaptiveCard" || card.Version != "1.4" || card.Body[0].Text != "alice requests task:New-MoveRequest" {
		t.Errorf("the card: %+v", card)
	}
	if len(card.Actions) != 1 || card.Actions[0].Type != "Action.OpenUrl" || card.Actions[0].URL != "https://pam.example.com/requests/req_1" {
		t.Errorf("the actions: %+v", card.Actions)
	}
	facts := map[string]string{}
	for _, f := range card.Body[1].Facts {
		facts[f.Title] = f.Value
	}
	if want := `leaver \<U+202E\>gnp.exe \[click\]\(https://evil.example\) \*\*now\*\*`; facts["Reason"] != want {
		t.Errorf("the reason: %q, want %q", facts["Reason"], want)
	}
	if facts["Ticket"] != "INC-7" || facts["Decide by"] != "2026-11-03 09:00 UTC" || !strings.Contains(facts["Only for"], "ceo@contoso.com") {
		t.Errorf("the facts: %v", facts)
	}
	if bytes.Contains(got, []byte("\u202e")) {
		t.Error("the card carries the right-to-left override itself")
	}
	validate(t, got)

	status = http.StatusBadRequest
	if err := n.Notify(context.Background(), note(pam.EventRequestApproved)); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("a refusal: %v", err)
	}
	srv.Close()
	err = n.Notify(context.Background(), note(pam.EventRequestApproved))
	if err == nil || strings.Contains(err.Error(), "KEY") {
		t.Errorf("the webhook down: %v", err)
	}
	for _, bad := range []string{"http://teams.example.com/x", "ftp://x", ""} {
		if _, err := teams.New(bad, nil); !errors.Is(err, pam.ErrInvalid) {
			t.Errorf("URL %q: %v", bad, err)
		}
	}
}

// TestTeamsCardsOfEveryType: every notification type makes a card that
// Microsoft's Adaptive Cards parser takes without a warning.
func TestTeamsCardsOfEveryType(t *testing.T) {
	for _, typ := range []pam.EventType{pam.EventRequestSubmitted, pam.EventRequestApproved, pam.EventRequestDenied, pam.EventRequestRevoked,
		pam.EventRequestExpired, pam.EventRequestRelinquished, pam.EventRequestExtensionRequested, pam.EventRequestExtended,
		pam.EventRequestExtensionDenied, pam.EventRequestReminded, pam.EventRequestEscalated, pam.EventRequestBreakGlass,
		pam.EventRequestBreakGlassOverdue, pam.EventRequestBreakGlassConfirmed, pam.EventRequestBreakGlassFlagged} {
		x := note(typ)
		if typ != pam.EventRequestSubmitted {
			x.Request.State, x.Request.ApprovedAt, x.Request.ExpiresAt = pam.Approved, x.Request.CreatedAt, x.Request.CreatedAt.Add(2*time.Hour)
			x.Request.Extension = &pam.Extension{By: time.Hour, Reason: "slow move", State: pam.Pending}
		}
		b, err := json.Marshal(teams.Message(x, "https://pam.example.com"))
		if err != nil {
			t.Fatal(err)
		}
		validate(t, b)
	}
}

// validate parses the message's card with Microsoft's adaptivecards
// package (npm; $PAM_ADAPTIVECARDS_JS is its dist/adaptivecards.js) and
// fails on any parse or validation event: an unknown element, a bad
// property value. Skipped without Node.js or the package, unless
// $PAM_REQUIRE_ADAPTIVECARDS is set (.ci/run sets both).
func validate(t *testing.T, message []byte) {
	t.Helper()
	var msg struct {
		Attachments []struct{ Content json.RawMessage }
	}
	if err := json.Unmarshal(message, &msg); err != nil || len(msg.Attachments) != 1 {
		t.Fatalf("the message: %s", message)
	}
	out, ok := parse(t, msg.Attachments[0].Content)
	if !ok {
		return
	}
	var res struct {
		Version string
		Events  []struct{ Message string }
		Items   int
		Actions int
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("the parser's answer %s: %v", out, err)
	}
	if res.Version != "1.4" || len(res.Events) > 0 || res.Items != 3 || res.Actions != 1 {
		t.Errorf("the Adaptive Cards parser: %s", out)
	}
}

// TestTheParserCatchesBadCards: the check above can fail.
func TestTheParserCatchesBadCards(t *testing.T) {
	for _, card := range []string{
		`{"type":"AdaptiveCard","version":"1.4","body":[{"type":"Bogus"}]}`,
		`{"type":"AdaptiveCard","version":"1.4","body":[{"type":"TextBlock","text":"x","size":"Huge"}]}`,
	} {
		out, ok := parse(t, []byte(card))
		if ok && !strings.Contains(string(out), `"message"`) {
			t.Errorf("%s passes: %s", card, out)
		}
	}
}

// parse runs testdata/check.js on card; ok is false when it cannot run
// (and that is allowed).
func parse(t *testing.T, card []byte) (out []byte, ok bool) {
	t.Helper()
	lib := os.Getenv("PAM_ADAPTIVECARDS_JS")
	node, err := exec.LookPath("node")
	if lib == "" || err != nil {
		if os.Getenv("PAM_REQUIRE_ADAPTIVECARDS") != "" {
			t.Fatal("no Node.js or no PAM_ADAPTIVECARDS_JS, and PAM_REQUIRE_ADAPTIVECARDS is set")
		}
		t.Log("the card is not validated: set PAM_ADAPTIVECARDS_JS to dist/adaptivecards.js of the npm package adaptivecards, with Node.js installed")
		return nil, false
	}
	cmd := exec.Command(node, "testdata/check.js")
	cmd.Env = append(os.Environ(), "AC_JS="+lib)
	cmd.Stdin = bytes.NewReader(card)
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("the Adaptive Cards parser: %v\n%s", err, out)
	}
	return out, true
}
