package pamhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/zerostanding/pam"
)

// ClientOptions configure a Client. The zero value is usable.
type ClientOptions struct {
	// Token is sent as "Authorization: Bearer Token" on every call, for
	// hosts whose Authenticate takes bearer tokens. Default: none.
	Token string
	// HTTPClient makes the calls. Default: a client with a one-minute
	// timeout.
	HTTPClient *http.Client
}

// Client calls a Handler's JSON API. Its methods have the Manager's
// signatures (it implements API) and return the engine's errors: a
// problem answer is a *Problem that matches its sentinel with errors.Is.
// The server decides who is acting (from the token or whatever the host
// authenticates); an actor in the context is not sent.
type Client struct {
	base  string // the handler's root, without a trailing slash
	token string
	hc    *http.Client
}

// maxAnswer bounds the answers the Client reads.
const maxAnswer = 64 << 20

// NewClient returns a client of the handler mounted at baseURL (such as
// "https://pam.example.com/pam"; the API is below it, at /api/v1). Nil
// options are the defaults.
func NewClient(baseURL string, opts *ClientOptions) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: %q is not an http or https URL", pam.ErrInvalid, baseURL)
	}
	if opts == nil {
		opts = &ClientOptions{}
	}
	c := &Client{base: strings.TrimRight(baseURL, "/"), token: opts.Token, hc: opts.HTTPClient}
	if c.hc == nil {
		c.hc = &http.Client{Timeout: time.Minute}
	}
	return c, nil
}

// call sends one API call, with in as its JSON body unless nil, and
// decodes the answer into out unless nil.
func (c *Client) call(ctx context.Context, method, path string, q url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	u := c.base + apiPrefix + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		p := &Problem{}
		if json.Unmarshal(b, p) != nil || p.Status == 0 {
			p = &Problem{Title: http.StatusText(resp.StatusCode), Status: resp.StatusCode}
		}
		return p
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("pamhttp: %s %s: answer: %w", method, path, err)
	}
	return nil
}

func idPath(prefix, id string) string { return prefix + "/" + url.PathEscape(id) }

// Me returns who the server takes the caller to be.
func (c *Client) Me(ctx context.Context) (Me, error) {
	var me Me
	return me, c.call(ctx, "GET", "/me", nil, nil, &me)
}

// IsAdmin reports whether the caller is an admin.
func (c *Client) IsAdmin(ctx context.Context) (bool, error) {
	me, err := c.Me(ctx)
	return me.Admin, err
}

// Policies returns the live policies.
func (c *Client) Policies(ctx context.Context) ([]pam.Policy, error) {
	var ps []pam.Policy
	return ps, c.call(ctx, "GET", "/policies", nil, nil, &ps)
}

// Policy returns policy id.
func (c *Client) Policy(ctx context.Context, id string) (pam.Policy, error) {
	var p pam.Policy
	return p, c.call(ctx, "GET", idPath("/policies", id), nil, nil, &p)
}

// CreatePolicy creates p.
func (c *Client) CreatePolicy(ctx context.Context, p pam.Policy) (pam.Policy, error) {
	var out pam.Policy
	return out, c.call(ctx, "POST", "/policies", nil, p, &out)
}

// UpdatePolicy changes policy p.ID to p.
func (c *Client) UpdatePolicy(ctx context.Context, p pam.Policy) (pam.Policy, error) {
	var out pam.Policy
	return out, c.call(ctx, "PUT", idPath("/policies", p.ID), nil, p, &out)
}

// DeletePolicy deletes policy id.
func (c *Client) DeletePolicy(ctx context.Context, id string) error {
	return c.call(ctx, "DELETE", idPath("/policies", id), nil, nil, nil)
}

// Catalog returns the catalog the server decides on.
func (c *Client) Catalog(ctx context.Context) (pam.Catalog, error) {
	var cat pam.Catalog
	return cat, c.call(ctx, "GET", "/catalog", nil, nil, &cat)
}

// SetCatalog replaces the catalog.
func (c *Client) SetCatalog(ctx context.Context, cat pam.Catalog) error {
	return c.call(ctx, "PUT", "/catalog", nil, cat, nil)
}

// Apply makes the catalog and the policies what cfg says, or with
// opts.DryRun only plans it, and returns the plan.
func (c *Client) Apply(ctx context.Context, cfg pam.Config, opts pam.ApplyOptions) (pam.Plan, error) {
	var p pam.Plan
	return p, c.call(ctx, "POST", "/apply", nil, ApplyRequest{Config: &cfg, DryRun: opts.DryRun}, &p)
}

// Submit asks for access.
func (c *Client) Submit(ctx context.Context, n pam.RequestInput) (pam.Request, error) {
	var r pam.Request
	return r, c.call(ctx, "POST", "/requests", nil, SubmitRequest{RequestInput: n}, &r)
}

// Request returns request id.
func (c *Client) Request(ctx context.Context, id string) (pam.Request, error) {
	var r pam.Request
	return r, c.call(ctx, "GET", idPath("/requests", id), nil, nil, &r)
}

// Progress reports where request id stands for the caller.
func (c *Client) Progress(ctx context.Context, id string) (pam.Progress, error) {
	var p pam.Progress
	return p, c.call(ctx, "GET", idPath("/requests", id)+"/progress", nil, nil, &p)
}

// Requests lists requests matching f, one page at a time, as the
// Manager does: f.Requester "" is everyone's. DueBy is not offered.
func (c *Client) Requests(ctx context.Context, f pam.RequestFilter) ([]pam.Request, string, error) {
	q, err := requestQuery(f)
	if err != nil {
		return nil, "", err
	}
	var p Page[pam.Request, string]
	err = c.call(ctx, "GET", "/requests", q, nil, &p)
	return p.Items, p.Next, err
}

// Reviewable returns every request waiting for the caller, in the
// Manager's order (pam.SortReviewable), reading every page.
func (c *Client) Reviewable(ctx context.Context) ([]pam.Request, error) {
	var out []pam.Request
	f := pam.RequestFilter{Limit: pam.MaxPageSize}
	for {
		rs, next, err := c.ReviewableRequests(ctx, f)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
		if next == "" {
			break
		}
		f.After = next
	}
	pam.SortReviewable(out)
	return out, nil
}

// ReviewableRequests returns one page of the requests waiting for the
// caller, as the Manager does.
func (c *Client) ReviewableRequests(ctx context.Context, f pam.RequestFilter) ([]pam.Request, string, error) {
	if len(f.States) > 0 || !f.DueBy.IsZero() || f.DecidedBy != "" {
		return nil, "", fmt.Errorf("%w: States, DueBy and DecidedBy do not apply to what waits for review", pam.ErrInvalid)
	}
	var p Page[pam.Request, string]
	err := c.call(ctx, "GET", "/reviewable", reviewableQuery(f), nil, &p)
	return p.Items, p.Next, err
}

// BreakGlass activates emergency access at once, without approval (see
// pam.Manager.BreakGlass).
func (c *Client) BreakGlass(ctx context.Context, n pam.RequestInput) (pam.Request, error) {
	var r pam.Request
	return r, c.call(ctx, "POST", "/breakglass", nil, SubmitRequest{RequestInput: n}, &r)
}

// ReviewBreakGlass confirms or flags break-glass request id.
func (c *Client) ReviewBreakGlass(ctx context.Context, id string, verdict pam.ReviewState, comment string) (pam.Request, error) {
	switch verdict {
	case pam.ReviewConfirmed:
		return c.act(ctx, id, "confirm", comment)
	case pam.ReviewFlagged:
		return c.act(ctx, id, "flag", comment)
	}
	return pam.Request{}, fmt.Errorf("%w: verdict must be %q or %q, got %q", pam.ErrInvalid, pam.ReviewConfirmed, pam.ReviewFlagged, verdict)
}

// BreakGlassReviews lists the break-glass activations whose review is in
// one of states (none: pending and flagged).
func (c *Client) BreakGlassReviews(ctx context.Context, states ...pam.ReviewState) ([]pam.Request, error) {
	q := url.Values{}
	for _, st := range states {
		q.Add("state", string(st))
	}
	var rs []pam.Request
	return rs, c.call(ctx, "GET", "/breakglass/reviews", q, nil, &rs)
}

func (c *Client) act(ctx context.Context, id, action, comment string) (pam.Request, error) {
	var r pam.Request
	return r, c.call(ctx, "POST", idPath("/requests", id)+"/"+action, nil, Comment{Comment: comment}, &r)
}

// Approve approves request id.
func (c *Client) Approve(ctx context.Context, id, comment string) (pam.Request, error) {
	return c.act(ctx, id, "approve", comment)
}

// Deny denies request id.
func (c *Client) Deny(ctx context.Context, id, comment string) (pam.Request, error) {
	return c.act(ctx, id, "deny", comment)
}

// Cancel withdraws the caller's pending request id.
func (c *Client) Cancel(ctx context.Context, id, comment string) (pam.Request, error) {
	return c.act(ctx, id, "cancel", comment)
}

// Revoke ends approved request id's access now.
func (c *Client) Revoke(ctx context.Context, id, comment string) (pam.Request, error) {
	return c.act(ctx, id, "revoke", comment)
}

// Relinquish ends the caller's own approved grant, request id, now.
func (c *Client) Relinquish(ctx context.Context, id, comment string) (pam.Request, error) {
	return c.act(ctx, id, "relinquish", comment)
}

// Extend asks for the caller's active grant, request id, to end by
// later.
func (c *Client) Extend(ctx context.Context, id string, by time.Duration, reason string) (pam.Request, error) {
	var r pam.Request
	return r, c.call(ctx, "POST", idPath("/requests", id)+"/extend", nil, ExtendRequest{By: by, Reason: reason}, &r)
}

// Check returns what Guard would decide for the caller and op. Its Err,
// when not allowed, is a *Problem matching the engine's sentinel.
func (c *Client) Check(ctx context.Context, op pam.Op) (pam.CheckResult, error) {
	var a CheckAnswer
	if err := c.call(ctx, "POST", "/check", nil, op, &a); err != nil {
		return pam.CheckResult{}, err
	}
	return a.Result(), nil
}

// Audit searches the audit trail, one page at a time.
func (c *Client) Audit(ctx context.Context, f pam.EventFilter) ([]pam.Event, int64, error) {
	var p Page[pam.Event, int64]
	err := c.call(ctx, "GET", "/audit", eventQuery(f), nil, &p)
	return p.Items, p.Next, err
}

// Verify checks the audit trail's hash chain from o.From to o.To on the
// server. A trail that does not verify returns a *pam.TamperError, as
// the Manager does. Checkpoints and public keys are not sent (ErrInvalid):
// check those with pam.Verify where the store can be read.
func (c *Client) Verify(ctx context.Context, o pam.VerifyOptions) (pam.VerifyResult, error) {
	var a VerifyAnswer
	if o.Checkpoints != nil || len(o.PublicKeys) > 0 {
		// The caller's own checkpoints: POST them.
		v := VerifyRequest{From: o.From, To: o.To, Checkpoints: o.Checkpoints}
		for _, k := range o.PublicKeys {
			v.PublicKeys = append(v.PublicKeys, []byte(k))
		}
		if err := c.call(ctx, "POST", "/audit/verify", nil, &v, &a); err != nil {
			return pam.VerifyResult{}, err
		}
	} else {
		if err := c.call(ctx, "GET", "/audit/verify", verifyQuery(o), nil, &a); err != nil {
			return pam.VerifyResult{}, err
		}
	}
	if a.Failure != nil {
		return a.Result, a.Failure
	}
	return a.Result, nil
}

// Messages lists the notification outbox, one page at a time.
func (c *Client) Messages(ctx context.Context, f pam.MessageFilter) ([]pam.Message, string, error) {
	var p Page[pam.Message, string]
	err := c.call(ctx, "GET", "/messages", messageQuery(f), nil, &p)
	return p.Items, p.Next, err
}
