package pamhttp

import (
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/zerostanding/pam"
)

// The engine's filters as query strings, both ways: the handler reads
// them, the Client writes them, and the OpenAPI document lists the
// parameters named here.

// param is a path or query parameter of a route.
type param struct {
	name, in, desc string
	typ            string // "string", "integer" or "date-time"
	many           bool   // may be repeated
	enum           []string
}

func query(name, typ, desc string) param { return param{name: name, in: "query", typ: typ, desc: desc} }

func repeated(p param) param { p.many = true; return p }

var requestParams = []param{
	query("requester", "string", `whose requests: "me" (the default), "all" or an identity; others' are for admins`),
	repeated(query("state", "string", "any of these states, as of now")),
	repeated(query("policy_id", "string", "under any of these policies")),
	query("decided_by", "string", `decided by: "me" or an identity (with requester=all, an approver's history; others' are for admins)`),
	query("q", "string", "search: requester, ticket, policy ID, scope name or request ID containing this, ignoring case"),
	orderParam,
	query("after", "string", "the cursor: the next of the page before"),
	query("limit", "integer", fmt.Sprintf("at most this many (default %d, at most %d)", pam.DefaultPageSize, pam.MaxPageSize)),
}

var orderParam = param{name: "order", in: "query", typ: "string", desc: "asc (the default) for the oldest first, desc for the newest first; the cursor continues in the same order",
	enum: []string{"asc", "desc"}}

var reviewableParams = []param{
	query("requester", "string", "asked by this identity"),
	repeated(query("policy_id", "string", "under any of these policies")),
	query("q", "string", "search: requester, ticket, policy ID, scope name or request ID containing this, ignoring case"),
	orderParam,
	query("after", "string", "the cursor: the next of the page before"),
	query("limit", "integer", fmt.Sprintf("at most this many (default %d, at most %d)", pam.DefaultPageSize, pam.MaxPageSize)),
}

// reviewableFilter reads the query of GET /reviewable.
func reviewableFilter(q url.Values) (pam.RequestFilter, error) {
	f := pam.RequestFilter{Requester: q.Get("requester"), PolicyIDs: q["policy_id"], Search: q.Get("q"), After: q.Get("after")}
	var err error
	if f.Newest, err = orderDesc(q.Get("order")); err != nil {
		return f, err
	}
	f.Limit, err = intParam(q.Get("limit"))
	return f, err
}

// reviewableQuery writes f as reviewableFilter reads it.
func reviewableQuery(f pam.RequestFilter) url.Values {
	q := url.Values{}
	setString(q, "requester", f.Requester)
	for _, id := range f.PolicyIDs {
		q.Add("policy_id", id)
	}
	setString(q, "q", f.Search)
	if f.Newest {
		q.Set("order", "desc")
	}
	setString(q, "after", f.After)
	setInt(q, "limit", int64(f.Limit))
	return q
}

func orderDesc(s string) (bool, error) {
	switch s {
	case "", "asc":
		return false, nil
	case "desc":
		return true, nil
	}
	return false, fmt.Errorf("%w: order %q: want asc or desc", pam.ErrInvalid, s)
}

var reviewParams = []param{
	{name: "state", in: "query", typ: "string", many: true, desc: "reviews in any of these states (default: pending and flagged)",
		enum: []string{string(pam.ReviewPending), string(pam.ReviewConfirmed), string(pam.ReviewFlagged)}},
}

// requestFilter reads the query of GET /requests for the actor me.
func requestFilter(q url.Values, me string) (pam.RequestFilter, error) {
	f := pam.RequestFilter{Requester: me, After: q.Get("after"), PolicyIDs: q["policy_id"]}
	switch who := q.Get("requester"); who {
	case "", "me":
	case "all":
		f.Requester = ""
	default:
		f.Requester = who
	}
	switch who := q.Get("decided_by"); who {
	case "me":
		f.DecidedBy = me
	default:
		f.DecidedBy = who
	}
	f.Search = q.Get("q")
	for _, s := range q["state"] {
		f.States = append(f.States, pam.State(s))
	}
	var err error
	if f.Newest, err = orderDesc(q.Get("order")); err != nil {
		return f, err
	}
	f.Limit, err = intParam(q.Get("limit"))
	return f, err
}

// requestQuery writes f as requestFilter reads it. f.Requester "" is
// everyone's, as for the Manager.
func requestQuery(f pam.RequestFilter) (url.Values, error) {
	if !f.DueBy.IsZero() {
		return nil, fmt.Errorf("%w: RequestFilter.DueBy is not offered by the API", pam.ErrInvalid)
	}
	q := url.Values{"requester": {f.Requester}}
	if f.Requester == "" {
		q.Set("requester", "all")
	}
	for _, s := range f.States {
		q.Add("state", string(s))
	}
	for _, id := range f.PolicyIDs {
		q.Add("policy_id", id)
	}
	setString(q, "decided_by", f.DecidedBy)
	setString(q, "q", f.Search)
	if f.Newest {
		q.Set("order", "desc")
	}
	setString(q, "after", f.After)
	setInt(q, "limit", int64(f.Limit))
	return q, nil
}

var eventParams = []param{
	query("actor", "string", "who"),
	query("task", "string", "which task"),
	repeated(query("type", "string", "any of these event types")),
	query("request_id", "string", "about this request"),
	query("policy_id", "string", "about this policy"),
	query("run", "string", "of this Guard run: its start and its end"),
	query("outcome", "string", "with this outcome"),
	query("since", "date-time", "at or after this time (RFC 3339)"),
	query("until", "date-time", "before this time (RFC 3339)"),
	query("after", "integer", "sequence numbers above this: the cursor of ascending pages"),
	query("before", "integer", "sequence numbers below this: the cursor of descending pages"),
	{name: "order", in: "query", typ: "string", desc: "desc for the newest first", enum: []string{"asc", "desc"}},
	query("limit", "integer", fmt.Sprintf("at most this many (default %d, at most %d)", pam.DefaultPageSize, pam.MaxPageSize)),
}

// eventFilter reads the query of GET /audit.
func eventFilter(q url.Values) (pam.EventFilter, error) {
	f := pam.EventFilter{Actor: q.Get("actor"), Task: q.Get("task"), RequestID: q.Get("request_id"), PolicyID: q.Get("policy_id"),
		Run: q.Get("run"), Outcome: pam.Outcome(q.Get("outcome")), Descending: q.Get("order") == "desc"}
	for _, t := range q["type"] {
		f.Types = append(f.Types, pam.EventType(t))
	}
	var err error
	if f.After, err = cursorParam(q.Get("after")); err != nil {
		return f, err
	}
	if f.Before, err = cursorParam(q.Get("before")); err != nil {
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

// eventQuery writes f as eventFilter reads it.
func eventQuery(f pam.EventFilter) url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"actor": f.Actor, "task": f.Task, "request_id": f.RequestID, "policy_id": f.PolicyID, "run": f.Run, "outcome": string(f.Outcome)} {
		setString(q, k, v)
	}
	for _, t := range f.Types {
		q.Add("type", string(t))
	}
	setTime(q, "since", f.Since)
	setTime(q, "until", f.Until)
	setInt(q, "after", f.After)
	setInt(q, "before", f.Before)
	setInt(q, "limit", int64(f.Limit))
	if f.Descending {
		q.Set("order", "desc")
	}
	return q
}

var verifyParams = []param{
	query("from", "integer", "the first sequence number to check (default 1)"),
	query("to", "integer", "the last (default: the head)"),
}

// verifyOptions reads the query of GET /audit/verify.
func verifyOptions(q url.Values) (pam.VerifyOptions, error) {
	var o pam.VerifyOptions
	var err error
	if o.From, err = int64Param(q.Get("from")); err != nil {
		return o, err
	}
	o.To, err = int64Param(q.Get("to"))
	return o, err
}

// verifyQuery writes o as verifyOptions reads it (the caller's
// checkpoints and keys go in the body of a POST instead).
func verifyQuery(o pam.VerifyOptions) url.Values {
	q := url.Values{}
	setInt(q, "from", o.From)
	setInt(q, "to", o.To)
	return q
}

var messageParams = []param{
	repeated(query("state", "string", "any of these states")),
	query("request_id", "string", "about this request"),
	query("after", "string", "the cursor: the next of the page before"),
	query("limit", "integer", fmt.Sprintf("at most this many (default %d, at most %d)", pam.DefaultPageSize, pam.MaxPageSize)),
}

// messageFilter reads the query of GET /messages.
func messageFilter(q url.Values) (pam.MessageFilter, error) {
	f := pam.MessageFilter{RequestID: q.Get("request_id"), After: q.Get("after")}
	for _, s := range q["state"] {
		f.States = append(f.States, pam.MessageState(s))
	}
	var err error
	f.Limit, err = intParam(q.Get("limit"))
	return f, err
}

// messageQuery writes f as messageFilter reads it.
func messageQuery(f pam.MessageFilter) url.Values {
	q := url.Values{}
	for _, s := range f.States {
		q.Add("state", string(s))
	}
	setString(q, "request_id", f.RequestID)
	setString(q, "after", f.After)
	setInt(q, "limit", int64(f.Limit))
	return q
}

func setString(q url.Values, k, v string) {
	if v != "" {
		q.Set(k, v)
	}
}

func setInt(q url.Values, k string, n int64) {
	if n != 0 {
		q.Set(k, strconv.FormatInt(n, 10))
	}
}

func setTime(q url.Values, k string, t time.Time) {
	if !t.IsZero() {
		q.Set(k, t.Format(time.RFC3339Nano))
	}
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

// cursorParam reads a cursor of the audit trail: a sequence number,
// negative through events stored with a number below 1 (see pam.Manager.Audit).
func cursorParam(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q is not a cursor", pam.ErrInvalid, s)
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
