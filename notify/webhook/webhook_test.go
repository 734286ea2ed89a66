package webhook_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/notify/webhook"
)

func note() pam.Notification {
	return pam.Notification{ID: "msg_1", Type: pam.EventRequestSubmitted, Recipients: []string{"bob"}, Attempt: 2,
		Request: pam.Request{ID: "req_1", Requester: "alice", Scope: pam.TaskScope("New-MoveRequest"), Reason: "<b>leaver</b> & co", Duration: 2 * time.Hour}}
}

func TestSignedDelivery(t *testing.T) {
	secret := []byte("s3cret")
	var mu sync.Mutex
	var bodies []webhook.Payload
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify(secret, r.Header.Get(webhook.SignatureHeader), body, time.Now(), 5*time.Minute); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		if r.Header.Get("Idempotency-Key") != "msg_1" {
			http.Error(w, "no key", http.StatusBadRequest)
			return
		}
		var p webhook.Payload
		json.Unmarshal(body, &p)
		mu.Lock()
		bodies = append(bodies, p)
		mu.Unlock()
	}))
	defer srv.Close()
	n, err := webhook.New(srv.URL, &webhook.Options{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(context.Background(), note()); err != nil {
		t.Fatal(err)
	}
	if len(bodies) != 1 || bodies[0].ID != "msg_1" || bodies[0].Recipient != "bob" || bodies[0].Request.Reason != "<b>leaver</b> & co" || bodies[0].Attempt != 2 {
		t.Errorf("received %+v", bodies)
	}
	wrong, _ := webhook.New(srv.URL, &webhook.Options{Secret: []byte("other")})
	if err := wrong.Notify(context.Background(), note()); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("a wrongly signed body: %v", err)
	}
}

func TestFailuresAndTimeouts(t *testing.T) {
	var mu sync.Mutex
	status, delay := http.StatusBadGateway, time.Duration(0)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		st, d := status, delay
		mu.Unlock()
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
		w.WriteHeader(st)
		w.Write([]byte("upstream down"))
	}))
	defer srv.Close()
	n, _ := webhook.New(srv.URL, &webhook.Options{Timeout: 100 * time.Millisecond})
	if err := n.Notify(context.Background(), note()); err == nil || !strings.Contains(err.Error(), "502") || !strings.Contains(err.Error(), "upstream down") {
		t.Errorf("a failing receiver: %v", err)
	}
	mu.Lock()
	status, delay = http.StatusOK, time.Second
	mu.Unlock()
	start := time.Now()
	if err := n.Notify(context.Background(), note()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a receiver that hangs: %v", err)
	}
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Errorf("the timeout did not cut the request: %v", d)
	}
	mu.Lock()
	delay = 0
	mu.Unlock()
	if err := n.Notify(context.Background(), note()); err != nil {
		t.Errorf("a receiver back up: %v", err)
	}
	if _, err := webhook.New("mailto:x", nil); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("New(mailto) = %v", err)
	}
}

func TestSlackFormat(t *testing.T) {
	body, err := webhook.Slack("https://pam.example.com/")(note())
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	want := "*alice* requests *task:New-MoveRequest* for 2h0m0s: &lt;b&gt;leaver&lt;/b&gt; &amp; co <https://pam.example.com/requests/req_1|Open request req_1>"
	if got["text"] != want {
		t.Errorf("text:\n got %s\nwant %s", got["text"], want)
	}
	// Invisible characters show; the JSON payload keeps them as recorded.
	x := note()
	x.Request.Reason = "rotate key \u202egnp.exe"
	b, _ := webhook.Slack("")(x)
	json.Unmarshal(b, &got)
	if !strings.Contains(got["text"], "rotate key &lt;U+202E&gt;gnp.exe") || strings.Contains(got["text"], "\u202e") {
		t.Errorf("a right-to-left override in Slack's text: %q", got["text"])
	}
	for _, typ := range []pam.EventType{pam.EventRequestApproved, pam.EventRequestDenied, pam.EventRequestRevoked, pam.EventRequestRelinquished, pam.EventRequestExpired} {
		x := note()
		x.Type = typ
		b, _ := webhook.Slack("")(x)
		if !strings.Contains(string(b), "task:New-MoveRequest") || strings.Contains(string(b), "Open request") {
			t.Errorf("%s: %s", typ, b)
		}
	}
	// Approvers nudged read what they decide on, limits included.
	for typ, lead := range map[pam.EventType]string{pam.EventRequestReminded: "Reminder: *alice* still waits", pam.EventRequestEscalated: "Escalated to you: *alice* requests"} {
		x := note()
		x.Type = typ
		x.Request.Bind, x.Request.MaxUses = map[string]any{"identity": "ceo@contoso.com"}, 1
		b, _ := webhook.Slack("")(x)
		json.Unmarshal(b, &got)
		if !strings.HasPrefix(got["text"], lead) || !strings.Contains(got["text"], `(bound to identity = "ceo@contoso.com"; 1 run (0 used))`) {
			t.Errorf("%s: %s", typ, got["text"])
		}
	}
	// Break-glass alerts say who took what, without approval, and why.
	for typ, lead := range map[pam.EventType]string{pam.EventRequestBreakGlass: ":rotating_light: Break-glass: *alice* took", pam.EventRequestBreakGlassOverdue: "Review overdue: *alice* broke glass"} {
		x := note()
		x.Type = typ
		b, _ := webhook.Slack("")(x)
		json.Unmarshal(b, &got)
		if !strings.HasPrefix(got["text"], lead) || !strings.HasSuffix(got["text"], "without approval: &lt;b&gt;leaver&lt;/b&gt; &amp; co") && typ == pam.EventRequestBreakGlass {
			t.Errorf("%s: %s", typ, got["text"])
		}
	}
}

// TestStandardWebhooks: with StandardSecret each notification carries
// the Standard Webhooks headers, which the scheme's own Go library
// verifies; the ID is the notification's, the same on a retry; a
// receiver with another secret refuses it; a malformed secret is
// refused when the notifier is made. The spec's published example is
// signed as the spec says.
func TestStandardWebhooks(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	verifier, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := verifier.Verify(body, r.Header); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		ids = append(ids, r.Header.Get("webhook-id"))
	}))
	defer srv.Close()
	n, err := webhook.New(srv.URL, &webhook.Options{StandardSecret: secret})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := n.Notify(context.Background(), note()); err != nil {
			t.Fatal(err)
		}
	}
	if !cmp.Equal(ids, []string{"msg_1", "msg_1"}) {
		t.Errorf("webhook-ids %v", ids)
	}
	other, _ := webhook.New(srv.URL, &webhook.Options{StandardSecret: "whsec_" + base64.StdEncoding.EncodeToString([]byte("another secret, 24 bytes!"))})
	if err := other.Notify(context.Background(), note()); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("signed with another secret: %v", err)
	}
	for _, bad := range []string{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_***", "whsec_c2hvcnQ="} {
		if _, err := webhook.New(srv.URL, &webhook.Options{StandardSecret: bad}); !errors.Is(err, pam.ErrInvalid) {
			t.Errorf("secret %q: %v", bad, err)
		}
	}
	// The example of the specification and its libraries' tests.
	lib, _ := standardwebhooks.NewWebhook(secret)
	want, _ := lib.Sign("msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if want != "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=" {
		t.Fatalf("the library signs the example as %s", want)
	}
	if got := webhook.StandardSign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`)); got != want {
		t.Errorf("the example signed as %s, want %s", got, want)
	}
}
