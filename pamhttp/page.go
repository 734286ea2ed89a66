package pamhttp

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/zerostanding/pam"
)

//go:embed assets
var assets embed.FS

// pageSize is how many requests a list of the page shows at once.
const pageSize = 50

// maxBulk bounds the requests one bulk decision takes.
const maxBulk = 100

// notices are the only texts a redirect may ask the page to show: no
// user-supplied text travels in a URL.
var notices = map[string]string{
	"submitted":  "Your request was sent to its approvers.",
	"approve":    "You approved the request.",
	"deny":       "You denied the request.",
	"cancel":     "You cancelled the request.",
	"revoke":     "You revoked the access.",
	"relinquish": "You ended your access.",
	"extend":     "You asked for more time.",
	"confirm":    "You confirmed the break-glass use.",
	"flag":       "You flagged the break-glass use.",
}

// verdicts are the actions of the decide form, with what the page calls
// them.
var verdicts = map[string]string{
	"approve": "approve", "deny": "deny", "cancel": "cancel", "revoke": "revoke",
	"relinquish": "end", "confirm": "confirm", "flag": "flag",
}

// tabs of the home page, in order.
var tabs = []struct{ ID, Label string }{
	{"waiting", "Waiting for me"},
	{"mine", "My requests"},
	{"active", "Active access"},
	{"history", "Decided by me"},
}

// view is what the page template renders.
type view struct {
	Title, Root, Actor string
	Notice, Error      string
	Bare               bool // an error page: nothing but the error
	SignIn             string

	// The home page: a tab, its filters and a page of its list.
	Tab      string
	Filter   listFilter
	States   []string
	Rows     []row
	Glass    []row // break-glass uses to review (waiting tab)
	Newer    string
	Older    string
	Admin    bool
	Policies []pam.Policy
	Results  []bulkResult

	Form *requestForm // the request form
	Req  *requestView // a request's page
}

// listFilter is what a list is narrowed by; it travels in the query.
type listFilter struct {
	Q, State, Policy, Requester string
}

// Query writes f with the tab and cursor as a link's query.
func (f listFilter) Query(tab, after string) string {
	q := url.Values{}
	q.Set("tab", tab)
	for k, v := range map[string]string{"q": f.Q, "state": f.State, "policy": f.Policy, "requester": f.Requester, "after": after} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return "?" + q.Encode()
}

// row is a request in a list, with what the list says of it.
type row struct {
	pam.Request
	When template.HTML // what is due, in words (see due)
}

type bulkResult struct {
	ID, Text string
	OK       bool
}

// requestForm is the request form with what was typed and what is wrong
// with it, by field ("" for the form as a whole).
type requestForm struct {
	PolicyID, Reason, Ticket, Hours, Start, Bind, Uses string
	Errors                                             map[string]string
}

// requestView is a request's page.
type requestView struct {
	R         pam.Request
	Policy    *pam.Policy
	Rules     []string
	Progress  pam.Progress
	Mine      bool
	Holder    bool // the requester, of a grant in force
	MayRevoke bool
	MayReview bool
	Extend    bool
	History   []pam.Request
	Comment   string // kept after an error
	Ext       struct{ Hours, Reason string }
}

func (h *Handler) routesPage(mux *recordingMux) {
	now := func() time.Time { return h.opts.Now() }
	funcs := template.FuncMap{
		"text":     pam.DisplayText,
		"words":    words,
		"clock":    clock,
		"iso":      func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"relative": func(t time.Time) string { return relative(t, now()) },
		"upper":    upper,
		"tabs":     func() any { return tabs },
		"tablink": func(v *view, tab string) string {
			return v.Root + listFilter{}.Query(tab, "")
		},
		"join": func(s []string) string {
			out := make([]string, len(s))
			for i, x := range s {
				out[i] = pam.DisplayText(x)
			}
			return andList(out)
		},
		"due": func(r pam.Request) template.HTML { return due(&r, now()) },
		"card": func(root string, r row) any {
			return struct {
				Root string
				R    pam.Request
				When template.HTML
			}{root, r.Request, r.When}
		},
		"notice": func(k string) string { return notices[k] },
		"allows": func(r pam.Request, a string) bool { return r.Allows(pam.Action(a), now()) },
		"policyName": func(ps []pam.Policy, id string) string {
			for _, p := range ps {
				if p.ID == id && p.Name != "" {
					return p.Name
				}
			}
			return id
		},
	}
	page := template.Must(template.New("").Funcs(funcs).ParseFS(assets, "assets/page.html"))
	for _, name := range []string{"style.css", "page.js"} {
		body, err := assets.ReadFile("assets/" + name)
		if err != nil {
			panic(err) // embedded at build time
		}
		typ := "text/css; charset=utf-8"
		if strings.HasSuffix(name, ".js") {
			typ = "text/javascript; charset=utf-8"
		}
		mux.HandleFunc("GET /assets/"+name, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", typ)
			w.Header().Set("Cache-Control", "max-age=3600")
			w.Write(body)
		})
	}
	p := &pages{h: h, t: page}
	mux.HandleFunc("GET /{$}", p.home)
	mux.HandleFunc("GET /new", p.newForm)
	mux.HandleFunc("POST /requests", p.submit)
	mux.HandleFunc("POST /bulk", p.bulk)
	mux.HandleFunc("GET /requests/{id}", p.request)
	mux.HandleFunc("POST /requests/{id}/decide", p.decide)
	mux.HandleFunc("POST /requests/{id}/extend", p.extend)
}

// pages serves the approver page.
type pages struct {
	h *Handler
	t *template.Template
}

// session returns the actor's context, or answers the request itself:
// a signed-out visitor is sent to Options.SignInURL with the way back,
// or told to sign in.
func (p *pages) session(w http.ResponseWriter, r *http.Request) (context.Context, string, bool) {
	ctx, err := p.h.actor(r)
	if err == nil {
		who, _ := pam.ActorFrom(ctx)
		return ctx, who, true
	}
	if errors.Is(err, pam.ErrNoActor) && p.h.opts.SignInURL != "" {
		http.Redirect(w, r, signIn(p.h.opts.SignInURL, r), http.StatusSeeOther)
		return nil, "", false
	}
	p.fail(w, r, err)
	return nil, "", false
}

// signIn is the address of the sign-in for a visitor of r: SignInURL
// with next, the path the visitor asked for as they sent it (the host's
// prefix included), its query for a GET. Only a local path travels:
// never a scheme or a host, and never "//" at its start, which a
// browser would read as another host.
func signIn(signInURL string, r *http.Request) string {
	next := "/"
	if u, err := url.ParseRequestURI(r.RequestURI); err == nil && strings.HasPrefix(u.EscapedPath(), "/") {
		next = "/" + strings.TrimLeft(u.EscapedPath(), "/") // a backslash is escaped: %5C
		if u.RawQuery != "" && r.Method == http.MethodGet {
			next += "?" + u.RawQuery
		}
	}
	sep := "?"
	if strings.Contains(signInURL, "?") {
		sep = "&"
	}
	return signInURL + sep + "next=" + url.QueryEscape(next)
}

// fail shows err alone, as a sentence.
func (p *pages) fail(w http.ResponseWriter, r *http.Request, err error) {
	st, _ := status(err)
	_, text := sentence(err, nil)
	if errors.Is(err, pam.ErrNoActor) {
		text = "You are not signed in. Sign in through your organisation's sign-on, then come back to this page."
	}
	p.write(w, st, &view{Title: http.StatusText(st), Root: root(r), Error: text, Bare: true})
}

func (p *pages) write(w http.ResponseWriter, st int, v *view) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; form-action 'self'; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(st)
	p.t.ExecuteTemplate(w, "page", v) // the status is sent: an error here is the connection's
}

func (p *pages) home(w http.ResponseWriter, r *http.Request) {
	ctx, who, ok := p.session(w, r)
	if !ok {
		return
	}
	v, st, err := p.list(ctx, r, who)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	p.write(w, st, v)
}

// list builds the home page: the tab asked for, filtered and paged.
func (p *pages) list(ctx context.Context, r *http.Request, who string) (*view, int, error) {
	q := r.URL.Query()
	v := &view{Title: "Privileged access", Root: root(r), Actor: who, Notice: notices[q.Get("done")], Tab: q.Get("tab"),
		Filter: listFilter{Q: strings.TrimSpace(q.Get("q")), State: q.Get("state"), Policy: q.Get("policy"), Requester: strings.TrimSpace(q.Get("requester"))}}
	i := slices.IndexFunc(tabs, func(t struct{ ID, Label string }) bool { return t.ID == v.Tab })
	if i < 0 {
		i, v.Tab = 0, tabs[0].ID
	}
	v.Title = tabs[i].Label
	for _, s := range []pam.State{pam.Pending, pam.Approved, pam.Denied, pam.Canceled, pam.Revoked, pam.Relinquished, pam.Expired} {
		v.States = append(v.States, string(s))
	}
	var err error
	if v.Policies, err = p.h.m.Policies(ctx); err != nil {
		return nil, 0, err
	}
	if v.Admin, err = p.h.m.IsAdmin(ctx); err != nil {
		return nil, 0, err
	}
	// One more than a page: whether there is an older page is known
	// without an empty one at the end.
	f := pam.RequestFilter{Newest: true, Limit: pageSize + 1, After: q.Get("after"), Search: v.Filter.Q}
	if v.Filter.Policy != "" {
		f.PolicyIDs = []string{v.Filter.Policy}
	}
	if v.Filter.State != "" {
		if !slices.Contains(v.States, v.Filter.State) {
			v.Error = "Choose a state from the list."
			return v, http.StatusBadRequest, nil
		}
		f.States = []pam.State{pam.State(v.Filter.State)}
	}
	var rs []pam.Request
	var next string
	switch v.Tab {
	case "waiting":
		f.States, f.Requester = nil, v.Filter.Requester
		rs, next, err = p.h.m.ReviewableRequests(ctx, f)
		if err == nil && f.After == "" {
			var glass []pam.Request
			if glass, err = p.h.m.BreakGlassReviews(ctx); err == nil {
				v.Glass = p.rows(glass)
			}
		}
	case "mine":
		f.Requester = who
		rs, next, err = p.h.m.Requests(ctx, f)
	case "active":
		f.States = []pam.State{pam.Approved}
		f.Requester = who
		if v.Admin {
			f.Requester = v.Filter.Requester // everyone's, or one person's
		}
		rs, next, err = p.h.m.Requests(ctx, f)
	case "history":
		f.DecidedBy, f.Requester = who, v.Filter.Requester
		rs, next, err = p.h.m.Requests(ctx, f)
	}
	if err != nil {
		if _, text := sentence(err, nil); errors.Is(err, pam.ErrInvalid) {
			v.Error = "The filter is not valid: " + text
			return v, http.StatusBadRequest, nil
		}
		return nil, 0, err
	}
	if len(rs) > pageSize {
		rs, next = rs[:pageSize], rs[pageSize-1].ID
	}
	v.Rows = p.rows(rs)
	if next != "" {
		v.Older = v.Filter.Query(v.Tab, next)
	}
	if f.After != "" {
		v.Newer = v.Filter.Query(v.Tab, "")
	}
	return v, http.StatusOK, nil
}

// rows says what is due for each request.
func (p *pages) rows(rs []pam.Request) []row {
	now := p.h.opts.Now()
	out := make([]row, len(rs))
	for i, r := range rs {
		out[i] = row{Request: r, When: due(&r, now)}
	}
	return out
}

// due says in words where r stands in time, its times in <time>
// elements so that the page's script can show them in the viewer's zone.
func due(r *pam.Request, now time.Time) template.HTML {
	var s string
	switch {
	case r.State == pam.Pending:
		s = "decide by " + stamp(r.PendingUntil) + " (" + relative(r.PendingUntil, now) + ")"
	case r.State == pam.Approved && r.Scheduled(now):
		s = "opens " + stamp(r.ApprovedAt) + " (" + relative(r.ApprovedAt, now) + ") for " + words(r.ExpiresAt.Sub(r.ApprovedAt))
	case r.State == pam.Approved:
		s = "ends " + stamp(r.ExpiresAt) + " (" + relative(r.ExpiresAt, now) + ")"
		if r.ExtensionPending(now) {
			s += "; " + words(r.Extension.By) + " more asked"
		}
	case !r.ClosedAt.IsZero():
		s = template.HTMLEscapeString(string(r.State)) + " " + stamp(r.ClosedAt) + " (" + relative(r.ClosedAt, now) + ")"
	default:
		s = template.HTMLEscapeString(string(r.State))
	}
	return template.HTML(s) // words, relative and stamp write no markup of their own but stamp's
}

// stamp is t as the page writes a time: in UTC with the zone named, in a
// <time> element the page's script rewrites to the viewer's zone.
func stamp(t time.Time) string {
	return `<time datetime="` + t.UTC().Format(time.RFC3339) + `">` + template.HTMLEscapeString(clock(t)) + `</time>`
}

func (p *pages) newForm(w http.ResponseWriter, r *http.Request) {
	ctx, who, ok := p.session(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	f := &requestForm{PolicyID: q.Get("policy"), Reason: q.Get("reason"), Ticket: q.Get("ticket")}
	p.form(ctx, w, r, who, f, http.StatusOK)
}

// form shows the request form.
func (p *pages) form(ctx context.Context, w http.ResponseWriter, r *http.Request, who string, f *requestForm, st int) {
	ps, err := p.h.m.Policies(ctx)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	v := &view{Title: "Request access", Root: root(r), Actor: who, Form: f, Policies: ps}
	if msg := f.Errors[""]; msg != "" {
		v.Error = msg
	} else if len(f.Errors) > 0 {
		v.Error = "The request was not sent: see below."
	}
	p.write(w, st, v)
}

func (p *pages) submit(w http.ResponseWriter, r *http.Request) {
	ctx, who, ok := p.session(w, r)
	if !ok {
		return
	}
	f := &requestForm{PolicyID: r.PostFormValue("policy_id"), Reason: r.PostFormValue("reason"), Ticket: r.PostFormValue("ticket"),
		Hours: r.PostFormValue("hours"), Start: r.PostFormValue("start"), Bind: r.PostFormValue("bind"), Uses: r.PostFormValue("uses"),
		Errors: map[string]string{}}
	n, err := f.input(r.PostFormValue("tz"))
	var req pam.Request
	if err == nil {
		req, err = p.h.m.Submit(ctx, n)
	}
	if err != nil {
		var pol *pam.Policy
		if got, perr := p.h.m.Policy(ctx, f.PolicyID); perr == nil {
			pol = &got
		}
		field, text := sentence(err, pol)
		f.Errors[field] = text
		st, _ := status(err)
		p.form(ctx, w, r, who, f, st)
		return
	}
	seeOther(w, root(r)+"requests/"+url.PathEscape(req.ID)+"?done=submitted")
}

// input reads the form as a RequestInput. tz is the viewer's time zone
// offset in minutes east of UTC, as the page's script fills it in; the
// start is taken in it, or in UTC without it.
func (f *requestForm) input(tz string) (pam.RequestInput, error) {
	n := pam.RequestInput{PolicyID: f.PolicyID, Reason: strings.TrimSpace(f.Reason), Ticket: strings.TrimSpace(f.Ticket)}
	if f.PolicyID == "" {
		return n, &pam.ValidationError{Field: "PolicyID", Problem: "is not chosen: choose the access you need"}
	}
	if f.Hours != "" {
		d, err := formHours(f.Hours)
		if err != nil {
			return n, err
		}
		n.Duration = d
	}
	if f.Start != "" {
		loc := time.UTC
		if off, err := strconv.Atoi(tz); err == nil && off > -24*60 && off < 24*60 {
			loc = time.FixedZone("viewer", off*60)
		}
		t, err := time.ParseInLocation("2006-01-02T15:04", f.Start, loc)
		if err != nil {
			return n, &pam.ValidationError{Field: "Start", Problem: "is not a date and time such as 2026-11-02T09:30"}
		}
		n.Start = t
	}
	if f.Uses != "" {
		k, err := strconv.Atoi(f.Uses)
		if err != nil || k < 1 {
			return n, &pam.ValidationError{Field: "MaxUses", Problem: "must be a whole number of runs, 1 or more"}
		}
		n.MaxUses = k
	}
	// One NAME=VALUE per line: the grant covers only operations whose
	// parameter NAME is VALUE (a string).
	for line := range strings.Lines(f.Bind) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		name, val, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(name) == "" {
			return n, &pam.ValidationError{Field: "Bind", Problem: "needs one NAME=VALUE per line"}
		}
		if n.Bind == nil {
			n.Bind = map[string]any{}
		}
		n.Bind[strings.TrimSpace(name)] = strings.TrimSpace(val)
	}
	return n, nil
}

// formHours reads a form's hours as a duration, to the minute.
func formHours(hours string) (time.Duration, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(hours), 64)
	if err != nil || f <= 0 || f > 24*365 {
		return 0, &pam.ValidationError{Field: "Duration", Problem: "must be a number of hours, such as 2 or 0.5"}
	}
	return time.Duration(f * float64(time.Hour)).Round(time.Minute), nil
}

func (p *pages) request(w http.ResponseWriter, r *http.Request) {
	ctx, who, ok := p.session(w, r)
	if !ok {
		return
	}
	p.showRequest(ctx, w, r, who, r.PathValue("id"), http.StatusOK, notices[r.URL.Query().Get("done")], "", nil)
}

// showRequest shows request id's page, with a notice or an error, and
// what the viewer typed when an action failed.
func (p *pages) showRequest(ctx context.Context, w http.ResponseWriter, r *http.Request, who, id string, st int, notice, errText string, keep func(*requestView)) {
	req, err := p.h.m.Request(ctx, id)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	now := p.h.opts.Now()
	rv := &requestView{R: req, Mine: req.Requester == who}
	if pol, err := p.h.m.Policy(ctx, req.PolicyID); err == nil {
		rv.Policy = &pol
		rv.Rules = rules(&pol)
	}
	if rv.Progress, err = p.h.m.Progress(ctx, id); err != nil {
		p.fail(w, r, err)
		return
	}
	rv.Holder = rv.Mine && req.Allows(pam.ActionRelinquish, now)
	rv.Extend = rv.Mine && req.Allows(pam.ActionExtend, now)
	rv.MayRevoke = !rv.Mine && req.Allows(pam.ActionRevoke, now)
	rv.MayReview = !rv.Mine && req.BreakGlass != nil && req.BreakGlass.State == pam.ReviewPending
	// The requester's recent requests under this policy: theirs, an
	// approver's of the policy, an admin's to read; others see none.
	if hist, _, err := p.h.m.Requests(ctx, pam.RequestFilter{Requester: req.Requester, PolicyIDs: []string{req.PolicyID}, Newest: true, Limit: 11}); err == nil {
		for _, x := range hist {
			if x.ID != req.ID && len(rv.History) < 10 {
				rv.History = append(rv.History, x)
			}
		}
	}
	if keep != nil {
		keep(rv)
	}
	title := fmt.Sprintf("%s: %s", req.Requester, req.Scope.Name)
	p.write(w, st, &view{Title: pam.DisplayText(title), Root: root(r), Actor: who, Notice: notice, Error: errText, Req: rv})
}

func (p *pages) decide(w http.ResponseWriter, r *http.Request) {
	ctx, who, ok := p.session(w, r)
	if !ok {
		return
	}
	id, verdict, comment := r.PathValue("id"), r.PostFormValue("verdict"), r.PostFormValue("comment")
	err := p.act(ctx, id, verdict, comment)
	if err != nil {
		st, _ := status(err)
		_, text := sentence(err, nil)
		p.showRequest(ctx, w, r, who, id, st, "", text, func(v *requestView) { v.Comment = comment })
		return
	}
	seeOther(w, root(r)+"requests/"+url.PathEscape(id)+"?done="+verdict)
}

// act carries out one verdict of the decide form.
func (p *pages) act(ctx context.Context, id, verdict, comment string) error {
	if _, ok := verdicts[verdict]; !ok {
		return &pam.ValidationError{Field: "verdict", Problem: "is not one the page offers"}
	}
	_, err := Act(ctx, p.h.m, id, verdict, comment)
	return err
}

func (p *pages) extend(w http.ResponseWriter, r *http.Request) {
	ctx, who, ok := p.session(w, r)
	if !ok {
		return
	}
	id, hours, reason := r.PathValue("id"), r.PostFormValue("hours"), r.PostFormValue("reason")
	by, err := formHours(hours)
	if err == nil {
		_, err = p.h.m.Extend(ctx, id, by, reason)
	}
	if err != nil {
		st, _ := status(err)
		_, text := sentence(err, nil)
		p.showRequest(ctx, w, r, who, id, st, "", text, func(v *requestView) { v.Ext.Hours, v.Ext.Reason = hours, reason })
		return
	}
	seeOther(w, root(r)+"requests/"+url.PathEscape(id)+"?done=extend")
}

// bulk approves or denies the selected requests with one comment, and
// says for each what happened.
func (p *pages) bulk(w http.ResponseWriter, r *http.Request) {
	ctx, who, ok := p.session(w, r)
	if !ok {
		return
	}
	if err := r.ParseForm(); err != nil {
		p.fail(w, r, fmt.Errorf("%w: %v", pam.ErrInvalid, err))
		return
	}
	ids, verdict, comment := r.PostForm["id"], r.PostFormValue("verdict"), r.PostFormValue("comment")
	v, _, err := p.list(ctx, r, who)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	switch {
	case verdict != "approve" && verdict != "deny":
		v.Error = "Choose Approve or Deny."
	case len(ids) == 0:
		v.Error = "Select the requests to decide first."
	case len(ids) > maxBulk:
		v.Error = fmt.Sprintf("Select at most %d requests at once.", maxBulk)
	}
	if v.Error != "" {
		p.write(w, http.StatusBadRequest, v)
		return
	}
	failed := 0
	for _, id := range ids {
		res := bulkResult{ID: id, OK: true, Text: notices[verdict]}
		if err := p.act(ctx, id, verdict, comment); err != nil {
			_, res.Text = sentence(err, nil)
			res.OK = false
			failed++
		}
		v.Results = append(v.Results, res)
	}
	// The list as it now stands, with the results above it.
	if v2, _, err := p.list(ctx, r, who); err == nil {
		v2.Results = v.Results
		v = v2
	}
	verb := map[string]string{"approve": "approved", "deny": "denied"}[verdict]
	switch {
	case failed == 0:
		v.Notice = fmt.Sprintf("You %s %s.", verb, plural(len(ids), "request"))
	default:
		v.Error = fmt.Sprintf("%s of %s could not be %s: see below.", upper(plural(failed, "request")), strconv.Itoa(len(ids)), verb)
	}
	p.write(w, http.StatusOK, v)
}

// root is the relative path from r's URL to the page's root, so the
// handler works under any prefix.
func root(r *http.Request) string {
	depth := strings.Count(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if depth == 0 {
		return "./"
	}
	return strings.Repeat("../", depth)
}

// seeOther redirects a form post to a relative location.
func seeOther(w http.ResponseWriter, location string) {
	w.Header().Set("Location", location)
	w.WriteHeader(http.StatusSeeOther)
}
