package pamhttp

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/zerostanding/pam"
)

// DefaultHealthTimeout is HealthOptions.Timeout's default.
const DefaultHealthTimeout = 2 * time.Second

// HealthOptions configure Health. The zero value means the documented
// defaults.
type HealthOptions struct {
	// Timeout bounds each store read of a readiness check (the ping,
	// the outbox). Default:
	// DefaultHealthTimeout.
	Timeout time.Duration
	// MaxOutboxAge, when above 0, makes readiness fail while the oldest
	// pending outbox message is older than it: a notifier has been down
	// that long, and approvers are not hearing of requests. 0: the
	// outbox is not checked.
	MaxOutboxAge time.Duration
}

// HealthCheck is one readiness check in the /readyz body.
type HealthCheck struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	// Detail says why a check failed. It never carries the underlying
	// error's text, which may name hosts, databases or identities: the
	// endpoints need no authentication. The Manager's Logger and
	// OnError have the error itself.
	Detail string `json:"detail,omitempty"`
}

// HealthReport is the body of /readyz (and of /livez, without checks).
type HealthReport struct {
	Status string        `json:"status"` // "ok" or "unavailable"
	Checks []HealthCheck `json:"checks,omitempty"`
}

// Health returns the liveness and readiness endpoints of a process that
// runs m:
//
//   - GET /livez answers 200 while the process serves HTTP. It checks
//     nothing else, so that an orchestrator restarts the process only
//     when restarting can help.
//   - GET /readyz answers 200 when every check passes, 503 otherwise,
//     with a HealthReport saying which failed: "store" (the store
//     answers Manager.Ping within Timeout), "audit_sink:NAME" for each
//     required audit sink (while one is failing Guard denies every
//     operation, see SinkConfig.Required), and "outbox" when
//     MaxOutboxAge is set.
//
// They are a handler of their own, not routes of the API Handler, and
// need no authentication: probes come from load balancers and
// orchestrators that hold no user's credentials, often on a port the
// API is not served on. What they answer is a bounded, fixed vocabulary
// (check names, sink names the host chose, ages): no error text, no
// identities. Mount it on its own mux or under its own prefix with
// http.StripPrefix.
func Health(m *pam.Manager, opts HealthOptions) (http.Handler, error) {
	if m == nil {
		return nil, fmt.Errorf("%w: pamhttp.Health: the Manager must not be nil", pam.ErrInvalid)
	}
	if opts.Timeout < 0 || opts.MaxOutboxAge < 0 {
		return nil, fmt.Errorf("%w: HealthOptions: Timeout and MaxOutboxAge must not be negative", pam.ErrInvalid)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultHealthTimeout
	}
	h := &health{m: m, opts: opts}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) {
		writeHealth(w, http.StatusOK, HealthReport{Status: "ok"})
	})
	mux.HandleFunc("GET /readyz", h.ready)
	return mux, nil
}

type health struct {
	m    *pam.Manager
	opts HealthOptions
}

// ready runs every check; each store read has its own Timeout.
func (h *health) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.Timeout)
	defer cancel()
	var checks []HealthCheck
	store := HealthCheck{Name: "store", OK: true}
	if err := h.m.Ping(ctx); err != nil {
		store.OK, store.Detail = false, "the store did not answer"
		if ctx.Err() != nil {
			store.Detail = fmt.Sprintf("the store did not answer within %s", h.opts.Timeout)
		}
	}
	checks = append(checks, store)
	for _, s := range h.m.SinkStatus() {
		if !s.Required {
			continue
		}
		c := HealthCheck{Name: "audit_sink:" + pam.DisplayText(s.Name), OK: s.Healthy}
		if !s.Healthy {
			c.Detail = fmt.Sprintf("the required audit sink is failing (%d failures): Guard denies every operation until it recovers", s.Failures)
		}
		checks = append(checks, c)
	}
	if h.opts.MaxOutboxAge > 0 {
		c := HealthCheck{Name: "outbox", OK: true}
		octx, cancel := context.WithTimeout(r.Context(), h.opts.Timeout)
		defer cancel()
		switch age, err := h.m.OldestPending(octx); {
		case err != nil:
			c.OK, c.Detail = false, "the outbox could not be read"
		case age > h.opts.MaxOutboxAge:
			c.OK, c.Detail = false, fmt.Sprintf("the oldest pending notification has waited %s (more than %s)", age.Round(time.Second), h.opts.MaxOutboxAge)
		}
		checks = append(checks, c)
	}
	rep, code := HealthReport{Status: "ok", Checks: checks}, http.StatusOK
	for _, c := range checks {
		if !c.OK {
			rep.Status, code = "unavailable", http.StatusServiceUnavailable
		}
	}
	writeHealth(w, code, rep)
}

func writeHealth(w http.ResponseWriter, code int, rep HealthReport) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(rep)
}
