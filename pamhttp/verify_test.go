package pamhttp_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/internal/fakes"
	"github.com/zerostanding/pam/pamhttp"
	"github.com/zerostanding/pam/sinks"
	"github.com/zerostanding/pam/store/memory"
)

// TestVerifyUsesCheckpoints: over HTTP, a trail rewritten and re-hashed
// to its head fails against the server's checkpoint sinks (GET) and
// against the caller's checkpoints (POST, the Client's Verify).
func TestVerifyUsesCheckpoints(t *testing.T) {
	store := memory.New()
	file := sinks.NewCheckpointFile(filepath.Join(t.TempDir(), "checkpoints.jsonl"))
	dir, _ := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin"}})
	honest, err := pam.New(store, dir, &pam.Options{CheckpointSinks: []pam.CheckpointSink{file}})
	if err != nil {
		t.Fatal(err)
	}
	admin := pam.WithActor(context.Background(), "admin")
	for _, id := range []string{"a", "b", "c"} {
		if _, err := honest.CreatePolicy(admin, pam.Policy{ID: id, Scope: pam.TaskScope(id), Approval: pam.Auto}); err != nil {
			t.Fatal(err)
		}
	}
	cp, err := honest.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m, err := pam.New(fakes.Rewritten{OutboxStore: store}, dir, &pam.Options{CheckpointSinks: []pam.CheckpointSink{file}})
	if err != nil {
		t.Fatal(err)
	}
	h, err := pamhttp.New(m, pamhttp.Options{Authenticate: func(r *http.Request) (string, error) {
		if u, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			return u, nil
		}
		return "", errors.New("no token")
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	c, err := pamhttp.NewClient(srv.URL, &pamhttp.ClientOptions{Token: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, o := range map[string]pam.VerifyOptions{
		"the server's checkpoint sinks (GET)": {},
		"the caller's checkpoint (POST)":      {Checkpoints: []pam.Checkpoint{cp}},
	} {
		_, err := c.Verify(ctx, o)
		var te *pam.TamperError
		if !errors.As(err, &te) || te.Reason != pam.ReasonCheckpointMismatch || !errors.Is(err, pam.ErrTampered) {
			t.Errorf("%s: %v, want checkpoint_mismatch", name, err)
		}
	}
	// Without any checkpoint the rewritten chain is consistent.
	if _, err := c.Verify(ctx, pam.VerifyOptions{Checkpoints: []pam.Checkpoint{}}); err != nil {
		t.Errorf("no checkpoints: %v", err)
	}
	if _, err := c.Verify(ctx, pam.VerifyOptions{PublicKeys: []ed25519.PublicKey{make(ed25519.PublicKey, 3)}}); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("a bad key: %v", err)
	}
}
