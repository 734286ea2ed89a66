package pamhttp_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/internal/fakes"
	"github.com/zerostanding/pam/pamhttp"
	"github.com/zerostanding/pam/store/memory"
)

// healthEnv is a Manager with a required audit sink and a notifier, and
// its health endpoints.
type healthEnv struct {
	m     *pam.Manager
	clk   *clock.Mock
	store *fakes.Store
	sink  *fakes.Sink
	notes *fakes.Notifier
	h     http.Handler
}

func newHealthEnv(t *testing.T) *healthEnv {
	t.Helper()
	e := &healthEnv{clk: clock.NewMock(), store: &fakes.Store{OutboxStore: memory.New()}, sink: &fakes.Sink{}, notes: &fakes.Notifier{}}
	e.clk.Set(epoch)
	dir, _ := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin"}, "approvers": {"bob", "carol"}})
	var err error
	e.m, err = pam.New(e.store, dir, &pam.Options{Clock: e.clk, AdminGroup: "pam-admins", Notifier: e.notes,
		AuditSinks:        []pam.SinkConfig{{Name: "siem", Sink: e.sink, Required: true, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}},
		AuditPollInterval: 5 * time.Millisecond, OnError: func(error) {},
		Catalog: pam.Catalog{Roles: map[string][]string{"Mail": {"New-MoveRequest"}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		e.m.Close(ctx)
	})
	if _, err := e.m.CreatePolicy(pam.WithActor(context.Background(), "admin"), pam.Policy{ID: "move", Name: "Mailbox moves",
		Scope: pam.TaskScope("New-MoveRequest"), Approval: pam.Manual, ApproverGroups: []pam.ApproverGroup{{Group: "approvers"}}, MaxDuration: 8 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	e.h, err = pamhttp.Health(e.m, pamhttp.HealthOptions{Timeout: 50 * time.Millisecond, MaxOutboxAge: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// get serves path and returns the status and the report.
func (e *healthEnv) get(t *testing.T, path string) (int, pamhttp.HealthReport) {
	t.Helper()
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	var rep pamhttp.HealthReport
	if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
		t.Fatalf("%s: %v: %s", path, err, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q", path, ct)
	}
	return rec.Code, rep
}

// failing returns the names of the failed checks, and fails the test
// when the status does not match them.
func (e *healthEnv) failing(t *testing.T) []string {
	t.Helper()
	code, rep := e.get(t, "/readyz")
	var failed []string
	for _, c := range rep.Checks {
		if !c.OK {
			failed = append(failed, c.Name+": "+c.Detail)
		}
	}
	switch {
	case len(failed) == 0 && (code != http.StatusOK || rep.Status != "ok"):
		t.Errorf("no check failed, but %d %q", code, rep.Status)
	case len(failed) > 0 && (code != http.StatusServiceUnavailable || rep.Status != "unavailable"):
		t.Errorf("checks failed (%v), but %d %q", failed, code, rep.Status)
	}
	return failed
}

// eventually polls cond (background workers) for up to 10 seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestHealth(t *testing.T) {
	e := newHealthEnv(t)
	ctx := context.Background()
	eventually(t, "the sink to be healthy", func() bool { return e.m.SinkStatus()[0].Cursor > 0 })

	if code, rep := e.get(t, "/livez"); code != http.StatusOK || rep.Status != "ok" {
		t.Fatalf("/livez: %d %+v", code, rep)
	}
	code, rep := e.get(t, "/readyz")
	if code != http.StatusOK || len(rep.Checks) != 3 || rep.Checks[0].Name != "store" || rep.Checks[1].Name != "audit_sink:siem" || rep.Checks[2].Name != "outbox" {
		t.Fatalf("/readyz: %d %+v", code, rep)
	}

	t.Run("store does not answer", func(t *testing.T) {
		e.store.HangRevision(true)
		failed := e.failing(t)
		if len(failed) != 1 || !strings.HasPrefix(failed[0], "store: the store did not answer within 50ms") {
			t.Errorf("failed %v", failed)
		}
		if code, _ := e.get(t, "/livez"); code != http.StatusOK {
			t.Errorf("/livez while the store hangs: %d", code)
		}
		e.store.HangRevision(false)
		if failed := e.failing(t); len(failed) != 0 {
			t.Errorf("recovered, but failed %v", failed)
		}
	})

	t.Run("required sink failing", func(t *testing.T) {
		e.sink.Fail(errors.New("dial tcp 10.0.0.7:514: connection refused"))
		if _, err := e.m.Submit(pam.WithActor(ctx, "alice"), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "move", Duration: time.Hour}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the sink to fail", func() bool { return !e.m.SinkStatus()[0].Healthy })
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		if strings.Contains(rec.Body.String(), "10.0.0.7") {
			t.Errorf("/readyz tells a stranger the sink's error: %s", rec.Body)
		}
		failed := e.failing(t)
		if len(failed) != 1 || !strings.HasPrefix(failed[0], "audit_sink:siem: the required audit sink is failing") {
			t.Errorf("failed %v", failed)
		}
		e.sink.Fail(nil)
		eventually(t, "the sink to recover", func() bool { return e.m.SinkStatus()[0].Healthy })
		if failed := e.failing(t); len(failed) != 0 {
			t.Errorf("recovered, but failed %v", failed)
		}
	})

	t.Run("outbox backlog", func(t *testing.T) {
		// The request above wrote messages that nothing delivered yet.
		e.clk.Add(9 * time.Minute)
		if failed := e.failing(t); len(failed) != 0 {
			t.Errorf("9 minutes: failed %v", failed)
		}
		e.clk.Add(2 * time.Minute)
		failed := e.failing(t)
		if len(failed) != 1 || failed[0] != "outbox: the oldest pending notification has waited 11m0s (more than 10m0s)" {
			t.Errorf("failed %v", failed)
		}
		for {
			n, err := e.m.Deliver(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
		}
		if failed := e.failing(t); len(failed) != 0 {
			t.Errorf("delivered, but failed %v", failed)
		}
	})
}

func TestHealthValidates(t *testing.T) {
	if _, err := pamhttp.Health(nil, pamhttp.HealthOptions{}); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("nil Manager: %v", err)
	}
	e := newHealthEnv(t)
	for _, o := range []pamhttp.HealthOptions{{Timeout: -1}, {MaxOutboxAge: -time.Second}} {
		if _, err := pamhttp.Health(e.m, o); !errors.Is(err, pam.ErrInvalid) {
			t.Errorf("%+v: %v", o, err)
		}
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, httptest.NewRequest("POST", "/readyz", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /readyz: %d", rec.Code)
	}
}
