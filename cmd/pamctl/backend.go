package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/pamhttp"
)

// backend is what the commands need, served by a pamhttp server or by a
// Manager over a database opened directly.
type backend interface {
	Policies(ctx context.Context) ([]pam.Policy, error)
	Policy(ctx context.Context, id string) (pam.Policy, error)
	CreatePolicy(ctx context.Context, p pam.Policy) (pam.Policy, error)
	UpdatePolicy(ctx context.Context, p pam.Policy) (pam.Policy, error)
	DeletePolicy(ctx context.Context, id string) error
	Submit(ctx context.Context, s pamhttp.SubmitRequest) (pam.Request, error)
	Requests(ctx context.Context, requester string, states []string) ([]pam.Request, error)
	Request(ctx context.Context, id string) (pam.Request, error)
	Act(ctx context.Context, id, action, comment string) (pam.Request, error)
	Check(ctx context.Context, task string, params map[string]any) (pamhttp.CheckAnswer, error)
	Audit(ctx context.Context, q url.Values) ([]pam.Event, error)
	Verify(ctx context.Context) (pamhttp.VerifyAnswer, error)
	Close() error
}

// remote talks to a pamhttp handler.
type remote struct {
	base, token string
	client      *http.Client
}

// apiError is a problem answer from the server.
type apiError struct{ p pamhttp.Problem }

func (e *apiError) Error() string {
	if e.p.Detail != "" {
		return e.p.Detail
	}
	return e.p.Title
}

func (c *remote) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.base, "/")+"/api/v1"+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var p pamhttp.Problem
		if json.Unmarshal(b, &p) != nil || p.Code == "" {
			p = pamhttp.Problem{Status: resp.StatusCode, Title: resp.Status, Code: "http"}
		}
		return &apiError{p}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

func (c *remote) Policies(ctx context.Context) (ps []pam.Policy, err error) {
	return ps, c.call(ctx, "GET", "/policies", nil, &ps)
}
func (c *remote) Policy(ctx context.Context, id string) (p pam.Policy, err error) {
	return p, c.call(ctx, "GET", "/policies/"+url.PathEscape(id), nil, &p)
}
func (c *remote) CreatePolicy(ctx context.Context, p pam.Policy) (out pam.Policy, err error) {
	return out, c.call(ctx, "POST", "/policies", p, &out)
}
func (c *remote) UpdatePolicy(ctx context.Context, p pam.Policy) (out pam.Policy, err error) {
	return out, c.call(ctx, "PUT", "/policies/"+url.PathEscape(p.ID), p, &out)
}
func (c *remote) DeletePolicy(ctx context.Context, id string) error {
	return c.call(ctx, "DELETE", "/policies/"+url.PathEscape(id), nil, nil)
}
func (c *remote) Submit(ctx context.Context, s pamhttp.SubmitRequest) (r pam.Request, err error) {
	return r, c.call(ctx, "POST", "/requests", s, &r)
}
func (c *remote) Requests(ctx context.Context, requester string, states []string) ([]pam.Request, error) {
	q := url.Values{"requester": {requester}, "state": states}
	var all []pam.Request
	for {
		var page struct {
			Items []pam.Request `json:"items"`
			Next  string        `json:"next"`
		}
		if err := c.call(ctx, "GET", "/requests?"+q.Encode(), nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Items...)
		if page.Next == "" {
			return all, nil
		}
		q.Set("after", page.Next)
	}
}
func (c *remote) Request(ctx context.Context, id string) (r pam.Request, err error) {
	return r, c.call(ctx, "GET", "/requests/"+url.PathEscape(id), nil, &r)
}
func (c *remote) Act(ctx context.Context, id, action, comment string) (r pam.Request, err error) {
	return r, c.call(ctx, "POST", "/requests/"+url.PathEscape(id)+"/"+action, map[string]string{"comment": comment}, &r)
}
func (c *remote) Check(ctx context.Context, task string, params map[string]any) (a pamhttp.CheckAnswer, err error) {
	return a, c.call(ctx, "POST", "/check", map[string]any{"task": task, "params": params}, &a)
}
func (c *remote) Audit(ctx context.Context, q url.Values) ([]pam.Event, error) {
	var page struct {
		Items []pam.Event `json:"items"`
	}
	return page.Items, c.call(ctx, "GET", "/audit?"+q.Encode(), nil, &page)
}
func (c *remote) Verify(ctx context.Context) (a pamhttp.VerifyAnswer, err error) {
	return a, c.call(ctx, "GET", "/audit/verify", nil, &a)
}
func (c *remote) Close() error { return nil }

// local drives a Manager over a database opened directly: whoever can
// open the database is trusted to say who they are (--as).
type local struct {
	m     *pam.Manager
	close func() error
}

func (l *local) Policies(ctx context.Context) ([]pam.Policy, error) { return l.m.Policies(ctx) }
func (l *local) Policy(ctx context.Context, id string) (pam.Policy, error) {
	return l.m.Policy(ctx, id)
}
func (l *local) CreatePolicy(ctx context.Context, p pam.Policy) (pam.Policy, error) {
	return l.m.CreatePolicy(ctx, p)
}
func (l *local) UpdatePolicy(ctx context.Context, p pam.Policy) (pam.Policy, error) {
	return l.m.UpdatePolicy(ctx, p)
}
func (l *local) DeletePolicy(ctx context.Context, id string) error { return l.m.DeletePolicy(ctx, id) }
func (l *local) Submit(ctx context.Context, s pamhttp.SubmitRequest) (pam.Request, error) {
	n := s.RequestInput
	if s.Task != "" {
		n.Scope = pam.TaskScope(s.Task)
	}
	return l.m.Submit(ctx, n)
}
func (l *local) Requests(ctx context.Context, requester string, states []string) ([]pam.Request, error) {
	me, _ := pam.ActorFrom(ctx)
	f := pam.RequestFilter{Requester: me, Limit: pam.MaxPageSize}
	switch requester {
	case "", "me":
	case "all":
		f.Requester = ""
	default:
		f.Requester = requester
	}
	if f.Requester != me {
		if ok, err := l.m.IsAdmin(ctx); err != nil || !ok {
			return nil, errors.Join(err, fmt.Errorf("%w: only admins list others' requests", pam.ErrForbidden))
		}
	}
	for _, s := range states {
		f.States = append(f.States, pam.State(s))
	}
	var all []pam.Request
	for {
		page, next, err := l.m.Requests(ctx, f)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if next == "" {
			return all, nil
		}
		f.After = next
	}
}
func (l *local) Request(ctx context.Context, id string) (pam.Request, error) {
	return l.m.Request(ctx, id)
}
func (l *local) Act(ctx context.Context, id, action, comment string) (pam.Request, error) {
	return pamhttp.Act(ctx, l.m, id, action, comment)
}
func (l *local) Check(ctx context.Context, task string, params map[string]any) (pamhttp.CheckAnswer, error) {
	res, err := l.m.Check(ctx, pam.Op{Task: task, Params: params})
	if err != nil {
		return pamhttp.CheckAnswer{}, err
	}
	return pamhttp.NewCheckAnswer(res), nil
}
func (l *local) Audit(ctx context.Context, q url.Values) ([]pam.Event, error) {
	f, err := pamhttp.EventFilterFromQuery(q)
	if err != nil {
		return nil, err
	}
	events, _, err := l.m.Audit(ctx, f)
	return events, err
}
func (l *local) Verify(ctx context.Context) (pamhttp.VerifyAnswer, error) {
	res, err := l.m.Verify(ctx, pam.VerifyOptions{})
	var te *pam.TamperError
	if errors.As(err, &te) {
		return pamhttp.VerifyAnswer{Result: res, Failure: te}, nil
	}
	return pamhttp.VerifyAnswer{OK: err == nil, Result: res}, err
}
func (l *local) Close() error { return l.close() }
