package pamhttp

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/zerostanding/pam"
)

// API is the engine as the JSON API offers it, with the Manager's method
// signatures: *pam.Manager serves it in process, *Client over HTTP, so a
// front end written against API runs either way (cmd/pamctl does).
// Errors match the engine's sentinels both ways.
type API interface {
	Policies(ctx context.Context) ([]pam.Policy, error)
	Policy(ctx context.Context, id string) (pam.Policy, error)
	CreatePolicy(ctx context.Context, p pam.Policy) (pam.Policy, error)
	UpdatePolicy(ctx context.Context, p pam.Policy) (pam.Policy, error)
	DeletePolicy(ctx context.Context, id string) error

	Submit(ctx context.Context, n pam.RequestInput) (pam.Request, error)
	Request(ctx context.Context, id string) (pam.Request, error)
	Progress(ctx context.Context, id string) (pam.Progress, error)
	Requests(ctx context.Context, f pam.RequestFilter) (rs []pam.Request, next string, err error)
	Reviewable(ctx context.Context) ([]pam.Request, error)
	ReviewableRequests(ctx context.Context, f pam.RequestFilter) (rs []pam.Request, next string, err error)
	Approve(ctx context.Context, id, comment string) (pam.Request, error)
	Deny(ctx context.Context, id, comment string) (pam.Request, error)
	Cancel(ctx context.Context, id, comment string) (pam.Request, error)
	Revoke(ctx context.Context, id, comment string) (pam.Request, error)
	Relinquish(ctx context.Context, id, comment string) (pam.Request, error)
	Extend(ctx context.Context, id string, by time.Duration, reason string) (pam.Request, error)

	BreakGlass(ctx context.Context, n pam.RequestInput) (pam.Request, error)
	ReviewBreakGlass(ctx context.Context, id string, verdict pam.ReviewState, comment string) (pam.Request, error)
	BreakGlassReviews(ctx context.Context, states ...pam.ReviewState) ([]pam.Request, error)

	Check(ctx context.Context, op pam.Op) (pam.CheckResult, error)
	IsAdmin(ctx context.Context) (bool, error)

	Catalog(ctx context.Context) (pam.Catalog, error)
	SetCatalog(ctx context.Context, cat pam.Catalog) error
	Apply(ctx context.Context, cfg pam.Config, opts pam.ApplyOptions) (pam.Plan, error)

	Audit(ctx context.Context, f pam.EventFilter) (events []pam.Event, next int64, err error)
	Verify(ctx context.Context, o pam.VerifyOptions) (pam.VerifyResult, error)
	Messages(ctx context.Context, f pam.MessageFilter) (msgs []pam.Message, next string, err error)
}

var (
	_ API = (*pam.Manager)(nil)
	_ API = (*Client)(nil)
)

// actions are the decisions on a request, by the word the API and the
// page name them with.
var actions = []struct {
	word string
	do   func(API, context.Context, string, string) (pam.Request, error)
}{
	{"approve", API.Approve},
	{"deny", API.Deny},
	{"cancel", API.Cancel},
	{"revoke", API.Revoke},
	{"relinquish", API.Relinquish},
	{"confirm", func(e API, ctx context.Context, id, comment string) (pam.Request, error) {
		return e.ReviewBreakGlass(ctx, id, pam.ReviewConfirmed, comment)
	}},
	{"flag", func(e API, ctx context.Context, id, comment string) (pam.Request, error) {
		return e.ReviewBreakGlass(ctx, id, pam.ReviewFlagged, comment)
	}},
}

func actionWords() []string {
	var out []string
	for _, a := range actions {
		out = append(out, a.word)
	}
	return out
}

// Act carries out a decision named by its word, as the API's
// /requests/{id}/{action} does: approve, deny, cancel, revoke,
// relinquish, or the review of a break-glass request, confirm or flag.
// Another word is ErrNotFound.
func Act(ctx context.Context, e API, id, action, comment string) (pam.Request, error) {
	for _, a := range actions {
		if a.word == action {
			return a.do(e, ctx, id, comment)
		}
	}
	return pam.Request{}, fmt.Errorf("%w: no action %q (%s)", pam.ErrNotFound, action, strings.Join(actionWords(), ", "))
}

// Me is the body of GET /api/v1/me.
type Me struct {
	Actor string `json:"actor"`
	Admin bool   `json:"admin"`
}

// SubmitRequest is the body of POST /api/v1/requests: a pam.RequestInput,
// or instead of its scope a task ("task":"New-MoveRequest"). Duration is
// a Go duration ("2h"), absent for the policy's default.
type SubmitRequest struct {
	Task string `json:"task,omitempty"`
	pam.RequestInput
}

// MarshalJSON writes the input's members and task.
func (s SubmitRequest) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(s.RequestInput)
	if err != nil || s.Task == "" {
		return b, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	m["task"], _ = json.Marshal(s.Task)
	return json.Marshal(m)
}

// UnmarshalJSON reads the input's members and task.
func (s *SubmitRequest) UnmarshalJSON(b []byte) error {
	var t struct {
		Task *string `json:"task"`
	}
	if err := json.Unmarshal(b, &t); err != nil {
		return err
	}
	if t.Task != nil {
		s.Task = *t.Task
	}
	return json.Unmarshal(b, &s.RequestInput)
}

func (s *SubmitRequest) input() (pam.RequestInput, error) {
	n := s.RequestInput
	if s.Task != "" {
		if n.Scope != (pam.Scope{}) {
			return n, fmt.Errorf("%w: give task or scope, not both", pam.ErrInvalid)
		}
		n.Scope = pam.TaskScope(s.Task)
	}
	return n, nil
}

// Comment is the body of POST /api/v1/requests/{id}/{action}, which may
// also be empty.
type Comment struct {
	Comment string `json:"comment,omitempty"`
}

// ExtendRequest is the body of POST /api/v1/requests/{id}/extend: how
// much longer, as a Go duration ("2h"), and why.
type ExtendRequest struct {
	By     time.Duration `json:"by"`
	Reason string        `json:"reason"`
}

// MarshalJSON writes By as a Go duration string.
func (x ExtendRequest) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		By     string `json:"by"`
		Reason string `json:"reason"`
	}{x.By.String(), x.Reason})
}

// UnmarshalJSON reads By as a Go duration string, or integer
// nanoseconds, as every duration of the API.
func (x *ExtendRequest) UnmarshalJSON(b []byte) error {
	var v struct {
		By     json.RawMessage `json:"by"`
		Reason string          `json:"reason"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	ext := pam.Extension{}
	if len(v.By) > 0 {
		if err := json.Unmarshal([]byte(`{"by":`+string(v.By)+`}`), &ext); err != nil {
			return err
		}
	}
	x.By, x.Reason = ext.By, v.Reason
	return nil
}

// CheckAnswer is the body of POST /api/v1/check: the CheckResult, with
// its error as text and as a problem code.
type CheckAnswer struct {
	pam.CheckResult
	Error     string `json:"error,omitempty"`
	ErrorCode string `json:"error_code,omitempty"`
}

// NewCheckAnswer is the answer for res.
func NewCheckAnswer(res pam.CheckResult) CheckAnswer {
	a := CheckAnswer{CheckResult: res}
	if a.Policies == nil {
		a.Policies = []pam.PolicyCheck{}
	}
	if res.Err != nil {
		a.Error = res.Err.Error()
		_, a.ErrorCode = status(res.Err)
	}
	return a
}

// Result returns the CheckResult, its Err a *Problem that matches the
// engine's sentinel.
func (a *CheckAnswer) Result() pam.CheckResult {
	res := a.CheckResult
	if a.Error != "" || a.ErrorCode != "" {
		st := http.StatusInternalServerError
		for _, s := range statuses {
			if s.code == a.ErrorCode {
				st = s.status
				break
			}
		}
		res.Err = &Problem{Title: http.StatusText(st), Status: st, Code: a.ErrorCode, Detail: a.Error}
	}
	return res
}

// VerifyRequest is the body of POST /api/v1/audit/verify: what the caller
// keeps outside the store. Public keys are base64 in JSON.
type VerifyRequest struct {
	From        int64            `json:"from,omitempty"`
	To          int64            `json:"to,omitempty"`
	Checkpoints []pam.Checkpoint `json:"checkpoints"`
	PublicKeys  [][]byte         `json:"public_keys,omitempty"`
}

// VerifyAnswer is the body of GET /api/v1/audit/verify: the range
// checked, and the first failure if any.
type VerifyAnswer struct {
	OK      bool             `json:"ok"`
	Result  pam.VerifyResult `json:"result"`
	Failure *pam.TamperError `json:"failure,omitempty"`
}

// NewVerifyAnswer is the answer for Verify's res and err: a failed
// verification is an answer, any other error is returned.
func NewVerifyAnswer(res pam.VerifyResult, err error) (VerifyAnswer, error) {
	var te *pam.TamperError
	if errors.As(err, &te) {
		return VerifyAnswer{Result: res, Failure: te}, nil
	}
	return VerifyAnswer{OK: err == nil, Result: res}, err
}

// ApplyRequest is the body of POST /api/v1/apply: the catalog and the
// policies as they should be, and whether only to plan. Config is
// required: an absent config is refused rather than read as "no
// policies", which would delete them all.
type ApplyRequest struct {
	Config *pam.Config `json:"config"`
	DryRun bool        `json:"dry_run,omitempty"`
}

// Page is a page of a list and the cursor of the next (absent at the
// end): an ID for requests and messages, a sequence number for events.
type Page[T, C any] struct {
	Items []T `json:"items"`
	Next  C   `json:"next,omitempty"`
}

func page[T, C any](items []T, next C) Page[T, C] {
	return Page[T, C]{Items: nonNil(items), Next: next}
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// route is one call of the API: how it is served, and how the OpenAPI
// document describes it. The table below is the one list of both.
type route struct {
	method, path string // path below /api/v1, in ServeMux syntax
	id, summary  string // operationId and summary
	desc         string
	params       []param
	body         reflect.Type // nil: none
	optionalBody bool
	status       int          // of success
	answer       reflect.Type // of success
	public       bool         // served without authentication
	config       bool         // the body is a whole catalog or config: capped by MaxConfigBytes
	serve        func(ctx context.Context, r *http.Request, body any) (any, error)
}

// call documents and serves a route that takes no body.
func call[A any](method, path, id, summary, desc string, params []param, f func(ctx context.Context, r *http.Request) (A, error)) route {
	return route{method: method, path: path, id: id, summary: summary, desc: desc, params: params, status: http.StatusOK,
		answer: reflect.TypeFor[A](), serve: func(ctx context.Context, r *http.Request, _ any) (any, error) { return f(ctx, r) }}
}

// send documents and serves a route that takes a JSON body of type B.
func send[B, A any](method, path, id, summary, desc string, status int, f func(ctx context.Context, r *http.Request, body *B) (A, error)) route {
	return route{method: method, path: path, id: id, summary: summary, desc: desc, status: status, body: reflect.TypeFor[B](),
		answer: reflect.TypeFor[A](), serve: func(ctx context.Context, r *http.Request, body any) (any, error) { return f(ctx, r, body.(*B)) }}
}

// apiRoutes lists the API.
func (h *Handler) apiRoutes() []route {
	m := h.m
	open := call("GET", "/openapi.json", "openapi", "This document", "OpenAPI 3.1, built from the handler's route table.", nil,
		func(context.Context, *http.Request) (json.RawMessage, error) { return h.openapi, nil })
	open.public = true
	act := send("POST", "/requests/{id}/{action}", "actOnRequest", "Approve, deny, cancel, revoke, relinquish or review a request",
		"Approve-/Deny-ElevatedAccessRequest, cancel a pending request of one's own, revoke an approved one (Revoke-ElevatedAccessAuthorization), "+
			"or relinquish one's own approved grant: end it early as its holder (beyond Purview; the request becomes relinquished, and work running under it is canceled as on revocation). "+
			"confirm and flag review a break-glass request afterwards (approvers and admins, never its activator; beyond Purview): a flag on a grant still active revokes it. "+
			"Those who may not see the request get 404.",
		http.StatusOK, func(ctx context.Context, r *http.Request, c *Comment) (pam.Request, error) {
			return Act(ctx, m, r.PathValue("id"), r.PathValue("action"), c.Comment)
		})
	act.optionalBody = true
	act.params = []param{{name: "action", in: "path", typ: "string", desc: "what to do", enum: actionWords()}}
	extend := send("POST", "/requests/{id}/extend", "extendRequest", "Ask for a longer window",
		"The holder of an active grant asks for it to end by later (beyond Purview). The extension is decided as the request was: "+
			"approve and deny on the request decide it while it is pending (at once under an Auto policy or an auto-approval rule), "+
			"and the grant runs to its current end meanwhile. Granted, the window ends by later, for running work too. "+
			"Refused: not the holder (forbidden), a grant not active or with an extension pending (wrong_state), "+
			"a window longer in all than the policy's max_extended_duration (duration_too_long).",
		http.StatusOK, func(ctx context.Context, r *http.Request, x *ExtendRequest) (pam.Request, error) {
			return m.Extend(ctx, r.PathValue("id"), x.By, x.Reason)
		})
	setCatalog := send("PUT", "/catalog", "setCatalog", "Replace the catalog",
		"Admins only. Refused (invalid) when it would remove or empty a role or role group that a live policy is scoped to; "+
			"every policy whose tasks change has the grants approved under its old meaning cut.", http.StatusOK,
		func(ctx context.Context, _ *http.Request, c *pam.Catalog) (struct{}, error) {
			return struct{}{}, m.SetCatalog(ctx, *c)
		})
	setCatalog.config = true
	verifyWith := send("POST", "/audit/verify", "verifyAuditWith", "Verify the audit trail against the caller's checkpoints",
		"Admins only. As GET /audit/verify, with the checkpoints (and the Ed25519 public keys that must have signed them) given in the body "+
			"instead of those the server's checkpoint sinks keep: a trail rewritten and re-hashed to its head answers checkpoint_mismatch, "+
			"one cut short answers truncated.", http.StatusOK,
		func(ctx context.Context, _ *http.Request, v *VerifyRequest) (VerifyAnswer, error) {
			o := pam.VerifyOptions{From: v.From, To: v.To, Checkpoints: v.Checkpoints}
			if o.Checkpoints == nil {
				o.Checkpoints = []pam.Checkpoint{}
			}
			for i, k := range v.PublicKeys {
				if len(k) != ed25519.PublicKeySize {
					return VerifyAnswer{}, fmt.Errorf("%w: public_keys[%d] is not an Ed25519 public key", pam.ErrInvalid, i)
				}
				o.PublicKeys = append(o.PublicKeys, ed25519.PublicKey(k))
			}
			return NewVerifyAnswer(m.Verify(ctx, o))
		})
	verifyWith.config = true
	apply := send("POST", "/apply", "apply", "Apply policies as code",
		"Admins only. Makes the catalog (when given) and the policies what config says, in one commit, and answers the plan carried out: "+
			"policies created, updated (the fields changed, whether and how many active grants it cuts) and deleted (every live policy config does not name), "+
			"and the catalog change. With dry_run it only plans. Applying the same config again plans nothing and writes nothing. "+
			"A name a deleted policy had, or two policies with one scope and condition that same_scope does not name, is refused (exists).", http.StatusOK,
		func(ctx context.Context, _ *http.Request, a *ApplyRequest) (pam.Plan, error) {
			if a.Config == nil {
				return pam.Plan{}, fmt.Errorf("%w: the body has no config (to delete every policy, send an empty one)", pam.ErrInvalid)
			}
			return m.Apply(ctx, *a.Config, pam.ApplyOptions{DryRun: a.DryRun})
		})
	apply.config = true
	return []route{
		open,
		call("GET", "/me", "me", "Who is signed in", "The actor the host authenticated, and whether they are an admin.", nil,
			func(ctx context.Context, _ *http.Request) (Me, error) {
				who, _ := pam.ActorFrom(ctx)
				admin, err := m.IsAdmin(ctx)
				return Me{Actor: who, Admin: admin}, err
			}),
		call("GET", "/policies", "listPolicies", "List the live policies", "Get-ElevatedAccessApprovalPolicy.", nil,
			func(ctx context.Context, _ *http.Request) ([]pam.Policy, error) {
				ps, err := m.Policies(ctx)
				return nonNil(ps), err
			}),
		send("POST", "/policies", "createPolicy", "Create a policy", "New-ElevatedAccessApprovalPolicy. Admins only.", http.StatusCreated,
			func(ctx context.Context, _ *http.Request, p *pam.Policy) (pam.Policy, error) {
				return m.CreatePolicy(ctx, *p)
			}),
		call("GET", "/policies/{id}", "getPolicy", "Get a policy", "", nil,
			func(ctx context.Context, r *http.Request) (pam.Policy, error) {
				return m.Policy(ctx, r.PathValue("id"))
			}),
		send("PUT", "/policies/{id}", "updatePolicy", "Change a policy",
			"Set-ElevatedAccessApprovalPolicy. Admins only. The body is the whole policy at the version it was read at; its id must be the path's.", http.StatusOK,
			func(ctx context.Context, r *http.Request, p *pam.Policy) (pam.Policy, error) {
				if p.ID != r.PathValue("id") {
					return pam.Policy{}, fmt.Errorf("%w: the body's id %q is not the path's %q", pam.ErrInvalid, p.ID, r.PathValue("id"))
				}
				return m.UpdatePolicy(ctx, *p)
			}),
		call("DELETE", "/policies/{id}", "deletePolicy", "Delete a policy", "Remove-ElevatedAccessApprovalPolicy. Admins only.", nil,
			func(ctx context.Context, r *http.Request) (struct{}, error) {
				return struct{}{}, m.DeletePolicy(ctx, r.PathValue("id"))
			}),
		call("GET", "/catalog", "getCatalog", "Get the catalog",
			"The roles (role → tasks), role groups (role group → roles), task parameter declarations and data that policies and conditions read.", nil,
			func(ctx context.Context, _ *http.Request) (pam.Catalog, error) {
				return m.Catalog(ctx)
			}),
		setCatalog,
		apply,
		call("GET", "/requests", "listRequests", "List requests", "Get-ElevatedAccessRequest: one's own, or with requester=all everyone's (admins).", requestParams,
			func(ctx context.Context, r *http.Request) (Page[pam.Request, string], error) {
				me, _ := pam.ActorFrom(ctx)
				f, err := requestFilter(r.URL.Query(), me)
				if err != nil {
					return Page[pam.Request, string]{}, err
				}
				rs, next, err := m.Requests(ctx, f)
				return page(rs, next), err
			}),
		send("POST", "/requests", "submitRequest", "Request access",
			"New-ElevatedAccessRequest. With start, the window opens at that time or at the approval, whichever is later (beyond Purview); "+
				"a start beyond the policy's max_start_delay is invalid.", http.StatusCreated,
			func(ctx context.Context, _ *http.Request, s *SubmitRequest) (pam.Request, error) {
				n, err := s.input()
				if err != nil {
					return pam.Request{}, err
				}
				return m.Submit(ctx, n)
			}),
		call("GET", "/requests/{id}", "getRequest", "Get a request", "With its decisions. Those who may not see it get 404.", nil,
			func(ctx context.Context, r *http.Request) (pam.Request, error) {
				return m.Request(ctx, r.PathValue("id"))
			}),
		call("GET", "/requests/{id}/progress", "getProgress", "Where a request waiting for approval stands",
			"The approvals that count per approver group, what is missing (M of N), and whether the caller may decide it. Those who may not see the request get 404.", nil,
			func(ctx context.Context, r *http.Request) (pam.Progress, error) {
				return m.Progress(ctx, r.PathValue("id"))
			}),
		extend,
		act,
		send("POST", "/breakglass", "breakGlass", "Break glass",
			"Emergency access at once, without approval, under a policy whose break_glass group one is in (beyond Purview, which keeps standing emergency accounts): "+
				"for at most the policy's break-glass duration, a limited number of times per period (beyond it: 429, limit). "+
				"The approvers and the alert group are notified, every run is marked break_glass in the trail, and an approver reviews it afterwards.", http.StatusCreated,
			func(ctx context.Context, _ *http.Request, s *SubmitRequest) (pam.Request, error) {
				n, err := s.input()
				if err != nil {
					return pam.Request{}, err
				}
				return m.BreakGlass(ctx, n)
			}),
		call("GET", "/breakglass/reviews", "listBreakGlassReviews", "Break-glass activations to review",
			"Those whose review is in one of the states given (default: pending and flagged), oldest first: all of them for admins, "+
				"those under policies whose approver group one is in for others. Review them with POST /requests/{id}/confirm or /flag.", reviewParams,
			func(ctx context.Context, r *http.Request) ([]pam.Request, error) {
				var states []pam.ReviewState
				for _, st := range r.URL.Query()["state"] {
					states = append(states, pam.ReviewState(st))
				}
				rs, err := m.BreakGlassReviews(ctx, states...)
				return nonNil(rs), err
			}),
		call("GET", "/reviewable", "listReviewable", "Requests waiting for me",
			"Pending, or active with an extension pending, not one's own, not yet decided by one, under a policy whose approver group one is in, or escalated to one; "+
				"a page at a time, by ID (order=desc: the newest first).", reviewableParams,
			func(ctx context.Context, r *http.Request) (Page[pam.Request, string], error) {
				f, err := reviewableFilter(r.URL.Query())
				if err != nil {
					return Page[pam.Request, string]{}, err
				}
				rs, next, err := m.ReviewableRequests(ctx, f)
				return page(rs, next), err
			}),
		send("POST", "/check", "check", "What-if", "Would Guard let me run this operation now, and why. Runs nothing.", http.StatusOK,
			func(ctx context.Context, _ *http.Request, op *pam.Op) (CheckAnswer, error) {
				res, err := m.Check(ctx, *op)
				return NewCheckAnswer(res), err
			}),
		call("GET", "/audit", "searchAudit", "Search the audit trail", "Admins search the whole trail; others the events they caused (actor set to themselves) or of a request they may see (request_id).", eventParams,
			func(ctx context.Context, r *http.Request) (Page[pam.Event, int64], error) {
				f, err := eventFilter(r.URL.Query())
				if err != nil {
					return Page[pam.Event, int64]{}, err
				}
				events, next, err := m.Audit(ctx, f)
				return page(events, next), err
			}),
		call("GET", "/audit/verify", "verifyAudit", "Verify the audit trail's hash chain", "Admins only. A trail that does not verify is an answer (ok false, with the failure), not an error.", verifyParams,
			func(ctx context.Context, r *http.Request) (VerifyAnswer, error) {
				o, err := verifyOptions(r.URL.Query())
				if err != nil {
					return VerifyAnswer{}, err
				}
				return NewVerifyAnswer(m.Verify(ctx, o))
			}),
		verifyWith,
		call("GET", "/messages", "listMessages", "List the notification outbox", "Admins only. Failed messages are the ones to look at.", messageParams,
			func(ctx context.Context, r *http.Request) (Page[pam.Message, string], error) {
				f, err := messageFilter(r.URL.Query())
				if err != nil {
					return Page[pam.Message, string]{}, err
				}
				msgs, next, err := m.Messages(ctx, f)
				return page(msgs, next), err
			}),
	}
}

// apiPrefix is where the API is mounted in the handler.
const apiPrefix = "/api/v1"

func (h *Handler) routesAPI(mux *recordingMux) error {
	routes := h.apiRoutes()
	doc, err := openAPI(routes)
	if err != nil {
		return err
	}
	h.openapi = doc
	for _, rt := range routes {
		limit := h.opts.MaxBodyBytes
		if rt.config {
			limit = h.opts.MaxConfigBytes
		}
		mux.handle(rt.method+" "+apiPrefix+rt.path, limit, h.serveAPI(rt))
	}
	return nil
}

// serveAPI authenticates the caller (unless the route is public), reads
// the body, and answers the route's value or the error as a problem.
func (h *Handler) serveAPI(rt route) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if !rt.public {
			var err error
			if ctx, err = h.actor(r); err != nil {
				fail(w, err)
				return
			}
		}
		var body any
		if rt.body != nil {
			body = reflect.New(rt.body).Interface()
			if !rt.optionalBody || r.ContentLength != 0 {
				if err := decode(r, body); err != nil {
					fail(w, err)
					return
				}
			}
		}
		v, err := rt.serve(ctx, r, body)
		if err != nil {
			fail(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(rt.status)
		json.NewEncoder(w).Encode(v)
	}
}

// decode reads one JSON value from r's body into v, refusing members v
// has no field for.
func decode(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("%w: Content-Type must be application/json", pam.ErrInvalid)
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if _, ok := err.(interface{ Timeout() bool }); ok || errors.As(err, &mbe) {
			return err
		}
		return fmt.Errorf("%w: body: %v", pam.ErrInvalid, err)
	}
	if err := unmarshal(b, v); err != nil {
		if errors.Is(err, pam.ErrInvalid) {
			return err
		}
		return fmt.Errorf("%w: body: %w", pam.ErrInvalid, err)
	}
	return nil
}

// Unmarshal reads one JSON value from b into v as the API reads request
// bodies: a member v has no field for is refused, wherever it is (the
// error names where), as is anything after the value. Every error
// matches pam.ErrInvalid. Front ends that read the API's types from
// files (pamctl's policy files) use it to be as strict as the server.
func Unmarshal(b []byte, v any) error {
	if err := unmarshal(b, v); err != nil {
		if errors.Is(err, pam.ErrInvalid) {
			return err
		}
		return fmt.Errorf("%w: %w", pam.ErrInvalid, err)
	}
	return nil
}

func unmarshal(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	var raw json.RawMessage
	if err := d.Decode(&raw); err != nil {
		return err
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("more than one JSON value")
	}
	if err := knownMembers(raw, reflect.TypeOf(v), ""); err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}

// knownMembers returns an error naming the first member of an object in
// b that t has no field for, and where it is (at is the path to b), as
// json.Decoder.DisallowUnknownFields does for types without their own
// UnmarshalJSON (pam.Policy has one). What is not an object of a struct
// is left to json.Unmarshal to judge.
func knownMembers(b []byte, t reflect.Type, at string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		if t == timeType {
			return nil
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(b, &obj) != nil {
			return nil
		}
		fields := jsonFields(t)
		for _, k := range slices.Sorted(maps.Keys(obj)) {
			f, ok := fieldNamed(fields, k)
			if !ok {
				if at == "" {
					return fmt.Errorf("json: unknown field %q", k)
				}
				return fmt.Errorf("json: unknown field %q in %s", k, at)
			}
			if err := knownMembers(obj[k], f.typ, member(at, f.name)); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return nil
		}
		var items []json.RawMessage
		if json.Unmarshal(b, &items) != nil {
			return nil
		}
		for i, it := range items {
			if err := knownMembers(it, t.Elem(), fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
	case reflect.Map:
		var m map[string]json.RawMessage
		if json.Unmarshal(b, &m) != nil {
			return nil
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if err := knownMembers(m[k], t.Elem(), member(at, k)); err != nil {
				return err
			}
		}
	}
	return nil
}

// member is the path of member name of the value at path at: a.b, or
// a["b c"] for a name that is not a plain word.
func member(at, name string) string {
	plain := name != ""
	for _, r := range name {
		if !(r == '_' || r == '-' || '0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') {
			plain = false
			break
		}
	}
	switch {
	case !plain:
		return fmt.Sprintf("%s[%q]", at, name)
	case at == "":
		return name
	}
	return at + "." + name
}

// jsonField is a struct field as encoding/json names it.
type jsonField struct {
	name      string
	typ       reflect.Type
	omitempty bool
}

// jsonFields lists t's fields as encoding/json sees them: exported, not
// "-", embedded structs without a name flattened into their container.
func jsonFields(t reflect.Type) []jsonField {
	var out []jsonField
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" && opts == "" {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if f.Anonymous && name == "" && ft.Kind() == reflect.Struct {
			out = append(out, jsonFields(ft)...)
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, jsonField{name: name, typ: f.Type, omitempty: strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero")})
	}
	return out
}

func fieldNamed(fields []jsonField, name string) (jsonField, bool) {
	for _, f := range fields {
		if f.name == name {
			return f, true
		}
	}
	for _, f := range fields {
		if strings.EqualFold(f.name, name) {
			return f, true
		}
	}
	return jsonField{}, false
}
