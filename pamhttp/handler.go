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
	// MaxConfigBytes caps the bodies that carry a whole catalog or config
	// (PUT /api/v1/catalog, POST /api/v1/apply): thousands of policies
	// are megabytes. Default: 16 MiB, and never less than MaxBodyBytes.
	MaxConfigBytes int64
	// TrustedOrigins may make cross-origin state-changing calls
	// ("https://admin.example.com"). Default: none.
	TrustedOrigins []string
	// Now is the time the page shows ages and remaining times against.
	// Default: time.Now.
	Now func() time.Time
	// SignInURL, when set, is where the page sends a visitor whom
	// Authenticate does not know (ErrNoActor), with the query parameter
	// next: the page's path, with its query for a GET, relative to the
	// host and as the visitor sent it (r.RequestURI, so a prefix the
	// host strips, such as "/pam", is included): "/pam/requests/req_x".
	// The sign-in redirects there once the visitor is signed in. next is
	// always a path starting with a single "/", never an absolute URL; a
	// sign-in must still accept only local paths before redirecting to
	// it. SignInURL may carry a query of its own; next is added to it.
	// Without SignInURL the page says in a sentence how to sign in. The
	// API answers 401 either way.
	SignInURL string
}

// Handler serves the API under /api/v1/ and the page under /.
type Handler struct {
	m       *pam.Manager
	opts    Options
	h       http.Handler
	openapi []byte   // the OpenAPI document, built from the route table
	routes  []string // every pattern the mux serves, in order
}

// New returns the handler for m.
func New(m *pam.Manager, opts Options) (*Handler, error) {
	if m == nil || opts.Authenticate == nil {
		return nil, fmt.Errorf("%w: pamhttp needs a Manager and Options.Authenticate", pam.ErrInvalid)
	}
	if opts.MaxBodyBytes < 0 || opts.MaxConfigBytes < 0 {
		return nil, fmt.Errorf("%w: Options.MaxBodyBytes and MaxConfigBytes must not be negative", pam.ErrInvalid)
	}
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = 64 << 10
	}
	if opts.MaxConfigBytes == 0 {
		opts.MaxConfigBytes = 16 << 20
	}
	opts.MaxConfigBytes = max(opts.MaxConfigBytes, opts.MaxBodyBytes)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &Handler{m: m, opts: opts}
	mux := &recordingMux{ServeMux: http.NewServeMux(), maxBody: opts.MaxBodyBytes}
	if err := h.routesAPI(mux); err != nil {
		return nil, err
	}
	h.routesPage(mux)
	h.routes = mux.patterns
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

// recordingMux is a ServeMux that remembers its patterns, so a test can
// hold every route served against the OpenAPI document, and caps the
// body of every request it routes: at maxBody unless the route says.
type recordingMux struct {
	*http.ServeMux
	patterns []string
	maxBody  int64
}

func (m *recordingMux) HandleFunc(pattern string, f func(http.ResponseWriter, *http.Request)) {
	m.handle(pattern, m.maxBody, http.HandlerFunc(f))
}

func (m *recordingMux) Handle(pattern string, h http.Handler) {
	m.handle(pattern, m.maxBody, h)
}

// handle serves pattern with h, its request bodies capped at maxBody.
func (m *recordingMux) handle(pattern string, maxBody int64, h http.Handler) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		h.ServeHTTP(w, r)
	})
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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

// statuses maps the engine's sentinels to HTTP statuses and problem
// codes, and back: the one table of the package. The handler answers an
// error with the first row whose sentinel it matches; the Client turns a
// problem back into the sentinel of the first row with its code. The
// last rows name codes the handler answers without a sentinel (a
// cross-origin refusal, an oversized body), so that the Client maps them
// too.
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
	{pam.ErrLimit, http.StatusTooManyRequests, "limit"},
	{pam.ErrAmbiguous, http.StatusConflict, "ambiguous"},
	{pam.ErrDurationTooLong, http.StatusUnprocessableEntity, "duration_too_long"},
	{pam.ErrRejected, http.StatusUnprocessableEntity, "rejected"},
	{pam.ErrNoPolicy, http.StatusUnprocessableEntity, "no_policy"},
	{pam.ErrInvalid, http.StatusBadRequest, "invalid"},
	{pam.ErrTampered, http.StatusConflict, "tampered"},
	{pam.ErrAudit, http.StatusServiceUnavailable, "audit_unavailable"},

	{pam.ErrForbidden, http.StatusForbidden, "cross_origin"},
	{pam.ErrInvalid, http.StatusRequestEntityTooLarge, "too_large"},
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

// sentinel returns the engine's sentinel for a problem code, nil for a
// code it does not know.
func sentinel(code string) error {
	for _, s := range statuses {
		if s.code == code {
			return s.err
		}
	}
	return nil
}

// Problem is the JSON body of an error answer (RFC 9457 members, plus
// code: a stable name of the engine's sentinel). As an error, which the
// Client returns, it unwraps to that sentinel, so errors.Is(err,
// pam.ErrForbidden) holds across HTTP as it does in process.
type Problem struct {
	Title  string `json:"title"`
	Status int    `json:"status"`
	Code   string `json:"code"`
	Detail string `json:"detail,omitempty"`
}

func (p *Problem) Error() string {
	if p.Detail != "" {
		return p.Detail
	}
	return fmt.Sprintf("%d %s", p.Status, p.Title)
}

// Unwrap returns the sentinel of p.Code, nil for an unknown code.
func (p *Problem) Unwrap() error { return sentinel(p.Code) }

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
