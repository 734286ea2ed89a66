package sqlite_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/store/sqlite"
)

// TestOutboxSurvivesKill: a child process writes requests (each with a
// message to every approver) and delivers them to an HTTP receiver, and
// is killed with SIGKILL at random points, with messages undelivered,
// half-delivered or delivered but not yet marked. A last child delivers
// what is left. Every message reaches the receiver, which drops
// duplicates by message ID: each is taken exactly once.
func TestOutboxSurvivesKill(t *testing.T) {
	if os.Getenv("PAM_OUTBOX_CHILD") != "" {
		t.Skip("in the child")
	}
	var mu sync.Mutex
	posts, taken := 0, map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := io.ReadAll(r.Body)
		mu.Lock()
		posts++
		taken[string(id)] = true // the idempotent receiver: by ID
		mu.Unlock()
	}))
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "outbox.db")
	runs := 6
	rng := rand.New(rand.NewPCG(3, 4))
	killed := 0
	for run := range runs + 1 {
		mode := "work"
		if run == runs {
			mode = "drain"
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestOutboxChild$")
		cmd.Env = append(os.Environ(), "PAM_OUTBOX_CHILD="+path, "PAM_OUTBOX_URL="+srv.URL, "PAM_OUTBOX_MODE="+mode, "PAM_OUTBOX_RUN="+strconv.Itoa(run))
		out := &strings.Builder{}
		ready := make(chan struct{})
		cmd.Stdout, cmd.Stderr = &readyWriter{out: out, ready: ready}, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if mode == "work" {
			// Killed at a random point once it has committed its first
			// request, however slow the machine is to start it.
			select {
			case <-ready:
			case <-time.After(60 * time.Second):
				t.Fatalf("run %d wrote nothing in 60 s:\n%s", run, out)
			}
			time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
			cmd.Process.Signal(syscall.SIGKILL)
		}
		err := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			killed++
		} else if err != nil {
			t.Fatalf("run %d (%s): %v\n%s", run, mode, err, out)
		}
	}
	s := open(t, path)
	msgs, err := s.Messages(context.Background(), pam.MessageFilter{})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, m := range msgs {
		if m.State != pam.MessageDelivered {
			t.Errorf("message %s is %s after %d attempts: %s", m.ID, m.State, m.Attempts, m.LastError)
		}
		if !taken[m.ID] {
			t.Errorf("message %s never reached the receiver", m.ID)
		}
	}
	if len(taken) != len(msgs) {
		t.Errorf("the receiver took %d distinct messages, the outbox holds %d", len(taken), len(msgs))
	}
	if killed == 0 || len(msgs) == 0 {
		t.Fatalf("%d kills, %d messages: the test did not exercise anything", killed, len(msgs))
	}
	t.Logf("%d runs killed with SIGKILL, then one drain: %d messages, %d POSTs, %d taken by the idempotent receiver (each exactly once)", killed, len(msgs), posts, len(taken))
}

// childReady is the line a working child prints once its first request
// is committed.
const childReady = "pam-outbox-child-ready"

// readyWriter passes a child's output to out and closes ready when it
// has printed childReady.
type readyWriter struct {
	mu    sync.Mutex
	out   *strings.Builder
	ready chan struct{}
	seen  bool
}

func (w *readyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.out.Write(p)
	if !w.seen && strings.Contains(w.out.String(), childReady) {
		w.seen = true
		close(w.ready)
	}
	return len(p), nil
}

// TestOutboxChild is the child of TestOutboxSurvivesKill.
func TestOutboxChild(t *testing.T) {
	path := os.Getenv("PAM_OUTBOX_CHILD")
	if path == "" {
		t.Skip("only as the child of TestOutboxSurvivesKill")
	}
	ctx := context.Background()
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	url := os.Getenv("PAM_OUTBOX_URL")
	notify := pam.NotifierFunc(func(ctx context.Context, n pam.Notification) error {
		time.Sleep(2 * time.Millisecond) // widen the window for the kill
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(n.ID))
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	dir, _ := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin"}, "approvers": {"bob", "carol", "dave"}})
	m, err := pam.New(s, dir, &pam.Options{AdminGroup: "pam-admins", Notifiers: []pam.NotifierConfig{{Name: "http", Notifier: notify, MinBackoff: time.Millisecond}},
		NotifyTimeout: time.Second, OutboxLease: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	admin := pam.WithActor(ctx, "admin")
	if _, err := m.Policy(admin, "p"); err != nil {
		if _, err := m.CreatePolicy(admin, pam.Policy{ID: "p", Scope: pam.TaskScope("t"), Approval: pam.Manual,
			ApproverGroups: []pam.ApproverGroup{{Group: "approvers"}}}); err != nil {
			t.Fatal(err)
		}
	}
	if os.Getenv("PAM_OUTBOX_MODE") == "drain" {
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if _, err := m.Deliver(ctx); err != nil {
				t.Fatal(err)
			}
			pending, _, err := m.Messages(pam.WithActor(ctx, "admin"), pam.MessageFilter{States: []pam.MessageState{pam.MessagePending}, Limit: 1})
			if err != nil {
				t.Fatal(err)
			}
			if len(pending) == 0 {
				return
			}
		}
		t.Fatal("messages still pending after 30 s")
	}
	// Work: requests and deliveries interleaved until killed.
	for i := 0; ; i++ {
		who := pam.WithActor(ctx, fmt.Sprintf("user%s-%d", os.Getenv("PAM_OUTBOX_RUN"), i))
		if _, err := m.Submit(who, pam.RequestInput{Scope: pam.TaskScope("t"), Reason: "outbox test"}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			fmt.Println(childReady)
		}
		if i%3 == 2 {
			if _, err := m.Deliver(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
}
