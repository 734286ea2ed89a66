package pamhttp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/zerostanding/pam"
)

// apiFunc handles one API call for an authenticated actor and returns
// the value to encode, with its status.
type apiFunc func(ctx context.Context, r *http.Request) (any, int, error)

func (h *Handler) api(f apiFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, err := h.actor(r)
		if err != nil {
			fail(w, err)
			return
		}
		v, st, err := f(ctx, r)
		if err != nil {
			fail(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(st)
		json.NewEncoder(w).Encode(v)
	}
}

// decode reads a JSON body into v, refusing unknown fields and trailing
// data.
func decode(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("%w: Content-Type must be application/json", pam.ErrInvalid)
	}
	d := json.NewDecoder(r.Body)
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		if _, ok := err.(interface{ Timeout() bool }); ok {
			return err
		}
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return fmt.Errorf("%w: body: %v", pam.ErrInvalid, err)
	}
	if d.More() {
		return fmt.Errorf("%w: body: more than one JSON value", pam.ErrInvalid)
	}
	return nil
}

func (h *Handler) routesAPI(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/me", h.api(h.me))
	mux.HandleFunc("GET /api/v1/policies", h.api(func(ctx context.Context, _ *http.Request) (any, int, error) {
		ps, err := h.m.Policies(ctx)
		return ps, http.StatusOK, err
	}))
	mux.HandleFunc("POST /api/v1/policies", h.api(func(ctx context.Context, r *http.Request) (any, int, error) {
		var p pam.Policy
		if err := decode(r, &p); err != nil {
			return nil, 0, err
		}
		p, err := h.m.CreatePolicy(ctx, p)
		return p, http.StatusCreated, err
	}))
	mux.HandleFunc("GET /api/v1/policies/{id}", h.api(func(ctx context.Context, r *http.Request) (any, int, error) {
		p, err := h.m.Policy(ctx, r.PathValue("id"))
		return p, http.StatusOK, err
	}))
	mux.HandleFunc("PUT /api/v1/policies/{id}", h.api(func(ctx context.Context, r *http.Request) (any, int, error) {
		var p pam.Policy
		if err := decode(r, &p); err != nil {
			return nil, 0, err
		}
		if p.ID != r.PathValue("id") {
			return nil, 0, fmt.Errorf("%w: the body's id %q is not the path's %q", pam.ErrInvalid, p.ID, r.PathValue("id"))
		}
		p, err := h.m.UpdatePolicy(ctx, p)
		return p, http.StatusOK, err
	}))
	mux.HandleFunc("DELETE /api/v1/policies/{id}", h.api(func(ctx context.Context, r *http.Request) (any, int, error) {
		return struct{}{}, http.StatusOK, h.m.DeletePolicy(ctx, r.PathValue("id"))
	}))
	mux.HandleFunc("GET /api/v1/requests", h.api(h.listRequests))
	mux.HandleFunc("POST /api/v1/requests", h.api(func(ctx context.Context, r *http.Request) (any, int, error) {
		var in SubmitRequest
		if err := decode(r, &in); err != nil {
			return nil, 0, err
		}
		n, err := in.newRequest()
		if err != nil {
			return nil, 0, err
		}
		req, err := h.m.Submit(ctx, n)
		return req, http.StatusCreated, err
	}))
	mux.HandleFunc("GET /api/v1/requests/{id}", h.api(func(ctx context.Context, r *http.Request) (any, int, error) {
		req, err := h.viewable(ctx, r.PathValue("id"))
		return req, http.StatusOK, err
	}))
	mux.HandleFunc("POST /api/v1/requests/{id}/{action}", h.api(func(ctx context.Context, r *http.Request) (any, int, error) {
		var in struct {
			Comment string `json:"comment"`
		}
		if r.ContentLength != 0 {
			if err := decode(r, &in); err != nil {
				return nil, 0, err
			}
		}
		req, err := h.act(ctx, r.PathValue("id"), r.PathValue("action"), in.Comment)
		return req, http.StatusOK, err
	}))
	mux.HandleFunc("GET /api/v1/reviewable", h.api(func(ctx context.Context, _ *http.Request) (any, int, error) {
		rs, err := h.m.Reviewable(ctx)
		return nonNil(rs), http.StatusOK, err
	}))
	mux.HandleFunc("POST /api/v1/check", h.api(func(ctx context.Context, r *http.Request) (any, int, error) {
		var op struct {
			Task   string         `json:"task"`
			Params map[string]any `json:"params"`
		}
		if err := decode(r, &op); err != nil {
			return nil, 0, err
		}
		res, err := h.m.Check(ctx, pam.Op{Task: op.Task, Params: op.Params})
		if err != nil {
			return nil, 0, err
		}
		return NewCheckAnswer(res), http.StatusOK, nil
	}))
	mux.HandleFunc("GET /api/v1/audit", h.api(h.audit))
	mux.HandleFunc("GET /api/v1/audit/verify", h.api(h.verify))
	mux.HandleFunc("GET /api/v1/messages", h.api(h.messages))
}

// SubmitRequest is the body of POST /api/v1/requests. Give Task (or a
// Scope) or a PolicyID; Duration is a Go duration ("2h"), empty for the
// policy's default.
type SubmitRequest struct {
	Task     string    `json:"task,omitempty"`
	Scope    pam.Scope `json:"scope,omitzero"`
	PolicyID string    `json:"policy_id,omitempty"`
	Reason   string    `json:"reason"`
	Duration string    `json:"duration,omitempty"`
	Ticket   string    `json:"ticket,omitempty"`
}

func (s *SubmitRequest) newRequest() (pam.RequestInput, error) {
	n := pam.RequestInput{Scope: s.Scope, PolicyID: s.PolicyID, Reason: s.Reason, Ticket: s.Ticket}
	if s.Task != "" {
		if s.Scope != (pam.Scope{}) {
			return n, fmt.Errorf("%w: give task or scope, not both", pam.ErrInvalid)
		}
		n.Scope = pam.TaskScope(s.Task)
	}
	if s.Duration != "" {
		d, err := time.ParseDuration(s.Duration)
		if err != nil || d <= 0 {
			return n, fmt.Errorf("%w: duration %q: want a positive Go duration such as 2h", pam.ErrInvalid, s.Duration)
		}
		n.Duration = d
	}
	return n, nil
}

// CheckAnswer is the body of POST /api/v1/check.
type CheckAnswer struct {
	Allowed  bool              `json:"allowed"`
	Outcome  string            `json:"outcome"`
	Task     string            `json:"task"`
	At       time.Time         `json:"at"`
	Deadline time.Time         `json:"deadline,omitzero"`
	Policies []pam.PolicyCheck `json:"policies"`
	Error    string            `json:"error,omitempty"`
}

// NewCheckAnswer is the answer for res.
func NewCheckAnswer(res pam.CheckResult) CheckAnswer {
	a := CheckAnswer{Allowed: res.Allowed, Outcome: string(res.Outcome), Task: res.Task, At: res.At, Deadline: res.Deadline, Policies: res.Policies}
	if res.Err != nil {
		a.Error = res.Err.Error()
	}
	return a
}

func (h *Handler) me(ctx context.Context, _ *http.Request) (any, int, error) {
	who, _ := pam.ActorFrom(ctx)
	admin, err := h.m.IsAdmin(ctx)
	return map[string]any{"actor": who, "admin": admin}, http.StatusOK, err
}

// viewable returns request id if the actor may see it, and ErrNotFound
// otherwise: whether it exists is not told to others.
func (h *Handler) viewable(ctx context.Context, id string) (pam.Request, error) {
	req, err := h.m.Request(ctx, id)
	if err != nil {
		return req, err
	}
	ok, err := h.m.MayView(ctx, req)
	if err != nil {
		return pam.Request{}, err
	}
	if !ok {
		return pam.Request{}, fmt.Errorf("%w: request %q", pam.ErrNotFound, id)
	}
	return req, nil
}

func (h *Handler) act(ctx context.Context, id, action, comment string) (pam.Request, error) {
	if _, err := h.viewable(ctx, id); err != nil {
		return pam.Request{}, err
	}
	return Act(ctx, h.m, id, action, comment)
}

// Act carries out a decision named by its word, as the API's
// /requests/{id}/{action} does: approve, deny, cancel or revoke. Another
// word is ErrNotFound.
func Act(ctx context.Context, m *pam.Manager, id, action, comment string) (pam.Request, error) {
	switch action {
	case "approve":
		return m.Approve(ctx, id, comment)
	case "deny":
		return m.Deny(ctx, id, comment)
	case "cancel":
		return m.Cancel(ctx, id, comment)
	case "revoke":
		return m.Revoke(ctx, id, comment)
	}
	return pam.Request{}, fmt.Errorf("%w: no action %q (approve, deny, cancel, revoke)", pam.ErrNotFound, action)
}

// requireAdmin answers ErrForbidden to non-admins: the trail, the
// outbox and everyone's requests are for admins.
func (h *Handler) requireAdmin(ctx context.Context) error {
	ok, err := h.m.IsAdmin(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: admins only", pam.ErrForbidden)
	}
	return nil
}

// listRequests lists the actor's own requests; admins may ask for
// everyone's (?requester=all) or someone's (?requester=NAME).
func (h *Handler) listRequests(ctx context.Context, r *http.Request) (any, int, error) {
	q := r.URL.Query()
	me, _ := pam.ActorFrom(ctx)
	f := pam.RequestFilter{Requester: me, After: q.Get("after")}
	if who := q.Get("requester"); who != "" && who != "me" {
		if err := h.requireAdmin(ctx); err != nil {
			return nil, 0, err
		}
		f.Requester = who
		if who == "all" {
			f.Requester = ""
		}
	}
	for _, s := range q["state"] {
		f.States = append(f.States, pam.State(s))
	}
	var err error
	if f.Limit, err = intParam(q.Get("limit")); err != nil {
		return nil, 0, err
	}
	rs, next, err := h.m.Requests(ctx, f)
	p := Page[pam.Request]{Items: nonNil(rs)}
	if next != "" {
		p.Next = next
	}
	return p, http.StatusOK, err
}

// Page is a page of a list and the cursor of the next ("" or 0 at the
// end).
type Page[T any] struct {
	Items []T `json:"items"`
	Next  any `json:"next,omitempty"`
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func intParam(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: %q is not a count", pam.ErrInvalid, s)
	}
	return n, nil
}

func int64Param(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: %q is not a sequence number", pam.ErrInvalid, s)
	}
	return n, nil
}

func timeParam(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return t, fmt.Errorf("%w: %q is not an RFC 3339 time", pam.ErrInvalid, s)
	}
	return t, nil
}

func (h *Handler) audit(ctx context.Context, r *http.Request) (any, int, error) {
	if err := h.requireAdmin(ctx); err != nil {
		return nil, 0, err
	}
	f, err := EventFilterFromQuery(r.URL.Query())
	if err != nil {
		return nil, 0, err
	}
	events, next, err := h.m.Audit(ctx, f)
	p := Page[pam.Event]{Items: nonNil(events)}
	if next != 0 {
		p.Next = next
	}
	return p, http.StatusOK, err
}

// EventFilterFromQuery reads the query of GET /api/v1/audit: actor,
// task, type (repeated), request_id, policy_id, outcome, since and until
// (RFC 3339), after and before (sequence numbers), limit, and
// order=desc.
func EventFilterFromQuery(q url.Values) (pam.EventFilter, error) {
	f := pam.EventFilter{Actor: q.Get("actor"), Task: q.Get("task"), RequestID: q.Get("request_id"), PolicyID: q.Get("policy_id"),
		Outcome: pam.Outcome(q.Get("outcome")), Descending: q.Get("order") == "desc"}
	for _, t := range q["type"] {
		f.Types = append(f.Types, pam.EventType(t))
	}
	var err error
	if f.After, err = int64Param(q.Get("after")); err != nil {
		return f, err
	}
	if f.Before, err = int64Param(q.Get("before")); err != nil {
		return f, err
	}
	if f.Limit, err = intParam(q.Get("limit")); err != nil {
		return f, err
	}
	if f.Since, err = timeParam(q.Get("since")); err != nil {
		return f, err
	}
	if f.Until, err = timeParam(q.Get("until")); err != nil {
		return f, err
	}
	return f, nil
}

// VerifyAnswer is the body of GET /api/v1/audit/verify: the range
// checked, and the first failure if any.
type VerifyAnswer struct {
	OK      bool             `json:"ok"`
	Result  pam.VerifyResult `json:"result"`
	Failure *pam.TamperError `json:"failure,omitempty"`
}

func (h *Handler) verify(ctx context.Context, r *http.Request) (any, int, error) {
	if err := h.requireAdmin(ctx); err != nil {
		return nil, 0, err
	}
	q := r.URL.Query()
	var o pam.VerifyOptions
	var err error
	if o.From, err = int64Param(q.Get("from")); err != nil {
		return nil, 0, err
	}
	if o.To, err = int64Param(q.Get("to")); err != nil {
		return nil, 0, err
	}
	res, err := h.m.Verify(ctx, o)
	var te *pam.TamperError
	if errors.As(err, &te) {
		return VerifyAnswer{Result: res, Failure: te}, http.StatusOK, nil
	}
	return VerifyAnswer{OK: err == nil, Result: res}, http.StatusOK, err
}

func (h *Handler) messages(ctx context.Context, r *http.Request) (any, int, error) {
	if err := h.requireAdmin(ctx); err != nil {
		return nil, 0, err
	}
	q := r.URL.Query()
	f := pam.MessageFilter{RequestID: q.Get("request_id"), After: q.Get("after")}
	for _, s := range q["state"] {
		f.States = append(f.States, pam.MessageState(s))
	}
	var err error
	if f.Limit, err = intParam(q.Get("limit")); err != nil {
		return nil, 0, err
	}
	msgs, next, err := h.m.Messages(ctx, f)
	p := Page[pam.Message]{Items: nonNil(msgs)}
	if next != "" {
		p.Next = next
	}
	return p, http.StatusOK, err
}
