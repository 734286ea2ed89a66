package sinks_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/sinks"
	"github.com/zerostanding/pam/store/memory"
)

var epoch = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)

// trail commits n events to a memory store and returns them chained.
func trail(t *testing.T, n int) []pam.Event {
	t.Helper()
	s := memory.New()
	for i := range n {
		tx := &pam.Tx{Events: []pam.Event{{Time: epoch.Add(time.Duration(i) * time.Second), Type: pam.EventGuardAllowed,
			Actor: "alice", Task: "New-MoveRequest", Outcome: "granted", Detail: map[string]string{"i": strings.Repeat("x", i%7)}}}}
		if err := s.Commit(context.Background(), tx); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.Events(context.Background(), pam.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return all
}

func TestFileRotatesAndKeepsEveryLineVerifiable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	f, err := sinks.OpenFile(path, &sinks.FileOptions{MaxBytes: 2000})
	if err != nil {
		t.Fatal(err)
	}
	events := trail(t, 60)
	for i := 0; i < len(events); i += 4 {
		if err := f.Write(context.Background(), events[i:min(i+4, len(events))]); err != nil {
			t.Fatal(err)
		}
	}
	// A retried write of events it has writes nothing twice.
	if err := f.Write(context.Background(), events[50:]); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	files, err := sinks.Files(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 5 || files[0] != path+".1" || files[len(files)-1] != path {
		t.Fatalf("files %v", files)
	}
	for _, p := range files {
		if st, _ := os.Stat(p); st.Size() > 2000 || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %d bytes, mode %v", p, st.Size(), st.Mode())
		}
	}
	got, err := sinks.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(events, got); d != "" {
		t.Fatalf("events read back (-written +read):\n%s", d)
	}
	for i, e := range got {
		if err := e.CheckHash(); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if i > 0 && e.PrevHash != got[i-1].Hash {
			t.Fatalf("line %d does not chain to the one before", i)
		}
	}
}

func TestFileResumesAfterItsLastLineAndCutsATornOne(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	events := trail(t, 10)
	f, err := sinks.OpenFile(path, &sinks.FileOptions{MaxBytes: 1500})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Write(context.Background(), events[:7]); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// A crash in the middle of a line.
	w, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	w.WriteString(`{"seq":8,"time":"2026-`)
	w.Close()

	f, err = sinks.OpenFile(path, &sinks.FileOptions{MaxBytes: 1500})
	if err != nil {
		t.Fatal(err)
	}
	if seq, _ := f.LastSeq(context.Background()); seq != 7 {
		t.Fatalf("LastSeq = %d, want 7", seq)
	}
	if err := f.Write(context.Background(), events[5:]); err != nil {
		t.Fatal(err)
	}
	f.Close()
	got, err := sinks.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(events, got); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
}

func TestFileAsARequiredSinkOfAManager(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	store := memory.New()
	run := func(n int) {
		f, err := sinks.OpenFile(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		groups, _ := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin"}})
		m, err := pam.New(store, groups, &pam.Options{AdminGroup: "pam-admins",
			Catalog:    pam.Catalog{Roles: map[string][]string{"r": {"t"}}},
			AuditSinks: []pam.SinkConfig{{Name: "file", Sink: f, Required: true}}})
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if err := m.SetCatalog(pam.WithActor(context.Background(), "admin"), pam.Catalog{Roles: map[string][]string{"r": {"t", strings.Repeat("u", i+1)}}}); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	run(3)
	// Events committed while no sink ran are delivered when it resumes.
	store.Commit(context.Background(), &pam.Tx{Events: []pam.Event{{Type: pam.EventCatalogSet, Actor: "offline"}}})
	run(2)
	want, _ := store.Events(context.Background(), pam.EventFilter{})
	got, err := sinks.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("file (-store +file):\n%s", d)
	}
}

func TestSlog(t *testing.T) {
	var buf bytes.Buffer
	s := sinks.NewSlog(slog.NewJSONHandler(&buf, nil))
	events := trail(t, 2)
	if err := s.Write(context.Background(), events); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d records", len(lines))
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[1]), &rec); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"time": "2026-11-02T09:00:01Z", "level": "INFO", "msg": "pam audit event", "seq": 2.0, "type": "guard.allowed",
		"actor": "alice", "request_id": "", "policy_id": "", "task": "New-MoveRequest", "outcome": "granted",
		"detail": map[string]any{"i": "x"}, "prev_hash": events[0].Hash, "hash": events[1].Hash}
	if d := cmp.Diff(want, rec); d != "" {
		t.Errorf("record (-want +got):\n%s", d)
	}
	if err := sinks.NewSlog(failingHandler{}).Write(context.Background(), events); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("a failing handler's error: %v", err)
	}
}

type failingHandler struct{ slog.Handler }

func (failingHandler) Enabled(context.Context, slog.Level) bool  { return true }
func (failingHandler) Handle(context.Context, slog.Record) error { return errors.New("disk full") }
func (f failingHandler) WithAttrs([]slog.Attr) slog.Handler      { return f }
func (f failingHandler) WithGroup(string) slog.Handler           { return f }

func TestWebhook(t *testing.T) {
	secret := []byte("s3cret")
	var mu sync.Mutex
	var got []pam.Event
	status := http.StatusOK
	delay := time.Duration(0)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := sinks.VerifySignature(secret, r.Header.Get(sinks.SignatureHeader), body, time.Now(), 5*time.Minute); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		if r.Header.Get("Authorization") != "Bearer t" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "headers", http.StatusBadRequest)
			return
		}
		mu.Lock()
		st, d := status, delay
		mu.Unlock()
		time.Sleep(d)
		if st != http.StatusOK {
			http.Error(w, "try later", st)
			return
		}
		var b struct{ Events []pam.Event }
		json.Unmarshal(body, &b)
		mu.Lock()
		got = append(got, b.Events...)
		mu.Unlock()
	}))
	defer srv.Close()
	events := trail(t, 3)
	wh, err := sinks.NewWebhook(srv.URL, &sinks.WebhookOptions{Secret: secret, Header: http.Header{"Authorization": {"Bearer t"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Write(context.Background(), events); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(events, got); d != "" {
		t.Errorf("received (-sent +got):\n%s", d)
	}

	mu.Lock()
	status = http.StatusServiceUnavailable
	mu.Unlock()
	if err := wh.Write(context.Background(), events); err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "try later") {
		t.Errorf("a failing receiver: %v", err)
	}
	mu.Lock()
	status, delay = http.StatusOK, 300*time.Millisecond
	mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := wh.Write(ctx, events); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a slow receiver: %v", err)
	}
	unsigned, _ := sinks.NewWebhook(srv.URL, &sinks.WebhookOptions{Header: http.Header{"Authorization": {"Bearer t"}}})
	if err := unsigned.Write(context.Background(), events); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("an unsigned body: %v", err)
	}
	if _, err := sinks.NewWebhook("ftp://x", nil); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("NewWebhook(ftp) = %v", err)
	}
}

func TestVerifySignatureRejectsReplaysAndChanges(t *testing.T) {
	secret, body := []byte("k"), []byte(`{"events":[]}`)
	h := sinks.Sign(secret, epoch, body)
	for name, tc := range map[string]struct {
		secret []byte
		header string
		body   []byte
		now    time.Time
		ok     bool
	}{
		"valid":           {secret, h, body, epoch.Add(time.Minute), true},
		"replayed later":  {secret, h, body, epoch.Add(10 * time.Minute), false},
		"changed body":    {secret, h, []byte(`{"events":[1]}`), epoch, false},
		"other secret":    {[]byte("j"), h, body, epoch, false},
		"no timestamp":    {secret, strings.Split(h, ",")[1], body, epoch, false},
		"moved timestamp": {secret, strings.Replace(h, "t=", "t=1", 1), body, epoch, false},
	} {
		err := sinks.VerifySignature(tc.secret, tc.header, tc.body, tc.now, 5*time.Minute)
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, sinks.ErrBadSignature) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestCheckpointFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "checkpoints.jsonl")
	if cps, err := sinks.ReadCheckpoints(path); err != nil || len(cps) != 0 {
		t.Fatalf("no file: %v, %v", cps, err)
	}
	c := sinks.NewCheckpointFile(path)
	want := []pam.Checkpoint{{Seq: 1, Hash: strings.Repeat("a", 64), Time: epoch}, {Seq: 9, Hash: strings.Repeat("b", 64), Time: epoch.Add(time.Hour), KeyID: "k", Signature: []byte{1, 2}}}
	for _, cp := range want {
		if err := c.WriteCheckpoint(context.Background(), cp); err != nil {
			t.Fatal(err)
		}
	}
	got, err := sinks.ReadCheckpoints(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

// TestWebhookStandardSignature: the audit webhook signed as Standard
// Webhooks do, verified by that scheme's own library; a batch's ID names
// its events, so a retry carries the same one.
func TestWebhookStandardSignature(t *testing.T) {
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
	w, err := sinks.NewWebhook(srv.URL, &sinks.WebhookOptions{StandardSecret: secret})
	if err != nil {
		t.Fatal(err)
	}
	events := trail(t, 5)
	for range 2 {
		if err := w.Write(context.Background(), events[1:4]); err != nil {
			t.Fatal(err)
		}
	}
	if len(ids) != 2 || ids[0] != "pam-events-2-4" || ids[1] != ids[0] {
		t.Errorf("webhook-ids %v", ids)
	}
	if _, err := sinks.NewWebhook(srv.URL, &sinks.WebhookOptions{StandardSecret: "s3cret"}); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("a secret without whsec_: %v", err)
	}
}
