// Package pamhttp serves the engine over HTTP: a JSON API for everything
// the Manager does, and a server-rendered approver page that works
// without JavaScript. Mount the handler under any prefix with
// http.StripPrefix.
//
// The host authenticates: Options.Authenticate maps each request to an
// actor (its sessions, OIDC, mTLS…). The handler never takes identity
// from a header of its own. Every state-changing call is checked by
// net/http's CrossOriginProtection (Sec-Fetch-Site and Origin), request
// bodies are capped, and user text is escaped by html/template on the
// page and by encoding/json in the API.
package pamhttp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/zerostanding/pam"
)

// Options configure a handler. Authenticate is required.
type Options struct {
	// Authenticate returns the identity of the person making r, or an
	// error when there is none (the answer is then 401).
	Authenticate func(r *http.Request) (string, error)
	// MaxBodyBytes caps request bodies. Default: 64 KiB.
	MaxBodyBytes int64
	// TrustedOrigins may make cross-origin state-changing calls
	// ("https://admin.example.com"). Default: none.
	TrustedOrigins []string
	// Now is the time the page shows ages and remaining times against.
	// Default: time.Now.
	Now func() time.Time
}

// Handler serves the API under /api/v1/ and the page under /.
type Handler struct {
	m    *pam.Manager
	opts Options
	h    http.Handler
}

// New returns the handler for m.
func New(m *pam.Manager, opts Options) (*Handler, error) {
	if m == nil || opts.Authenticate == nil {
		return nil, fmt.Errorf("%w: pamhttp needs a Manager and Options.Authenticate", pam.ErrInvalid)
	}
	if opts.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("%w: Options.MaxBodyBytes must not be negative", pam.ErrInvalid)
	}
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = 64 << 10
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &Handler{m: m, opts: opts}
	mux := http.NewServeMux()
	h.routesAPI(mux)
	h.routesPage(mux)
	cop := http.NewCrossOriginProtection()
	for _, o := range opts.TrustedOrigins {
		if err := cop.AddTrustedOrigin(o); err != nil {
			return nil, fmt.Errorf("%w: trusted origin %q: %v", pam.ErrInvalid, o, err)
		}
	}
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		problem(w, http.StatusForbidden, "cross_origin", "cross-origin request refused")
	}))
	h.h = cop.Handler(mux)
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "same-origin")
	h.h.ServeHTTP(w, r)
}

// actor authenticates r and returns a context acting as them.
func (h *Handler) actor(r *http.Request) (context.Context, error) {
	who, err := h.opts.Authenticate(r)
	if err != nil || who == "" {
		return nil, fmt.Errorf("%w: not signed in", pam.ErrNoActor)
	}
	ctx := pam.WithActor(r.Context(), who)
	if _, ok := pam.ActorFrom(ctx); !ok {
		return nil, fmt.Errorf("%w: %q is not a valid identity", pam.ErrNoActor, who)
	}
	return ctx, nil
}

// statuses maps the engine's sentinels to HTTP statuses, first match
// wins: the one table of the package.
var statuses = []struct {
	err    error
	status int
	code   string
}{
	{pam.ErrNoActor, http.StatusUnauthorized, "no_actor"},
	{pam.ErrSelfApproval, http.StatusForbidden, "self_approval"},
	{pam.ErrForbidden, http.StatusForbidden, "forbidden"},
	{pam.ErrNotApproved, http.StatusForbidden, "not_approved"},
	{pam.ErrNotFound, http.StatusNotFound, "not_found"},
	{pam.ErrAlreadyDecided, http.StatusConflict, "already_decided"},
	{pam.ErrWrongState, http.StatusConflict, "wrong_state"},
	{pam.ErrConflict, http.StatusConflict, "conflict"},
	{pam.ErrExists, http.StatusConflict, "exists"},
	{pam.ErrAmbiguous, http.StatusConflict, "ambiguous"},
	{pam.ErrDurationTooLong, http.StatusUnprocessableEntity, "duration_too_long"},
	{pam.ErrRejected, http.StatusUnprocessableEntity, "rejected"},
	{pam.ErrNoPolicy, http.StatusUnprocessableEntity, "no_policy"},
	{pam.ErrInvalid, http.StatusBadRequest, "invalid"},
	{pam.ErrTampered, http.StatusConflict, "tampered"},
	{pam.ErrAudit, http.StatusServiceUnavailable, "audit_unavailable"},
}

// status returns the HTTP status and problem code of err.
func status(err error) (int, string) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge, "too_large"
	}
	for _, s := range statuses {
		if errors.Is(err, s.err) {
			return s.status, s.code
		}
	}
	return http.StatusInternalServerError, "internal"
}

// Problem is the JSON body of an error answer (RFC 9457 members, plus
// code: a stable name of the engine's sentinel).
type Problem struct {
	Title  string `json:"title"`
	Status int    `json:"status"`
	Code   string `json:"code"`
	Detail string `json:"detail,omitempty"`
}

func problem(w http.ResponseWriter, st int, code, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(st)
	json.NewEncoder(w).Encode(Problem{Title: http.StatusText(st), Status: st, Code: code, Detail: detail})
}

// fail answers err as a problem. Internal errors are not detailed.
func fail(w http.ResponseWriter, err error) {
	st, code := status(err)
	detail := err.Error()
	if st == http.StatusInternalServerError {
		detail = ""
	}
	problem(w, st, code, detail)
}
