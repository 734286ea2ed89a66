package pamhttp

import (
	"context"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/zerostanding/pam"
)

//go:embed assets
var assets embed.FS

// notices are the only texts a redirect may ask the page to show: no
// user-supplied text travels in a URL.
var notices = map[string]string{
	"submitted":  "Your request was sent to its approvers.",
	"approve":    "You approved the request.",
	"deny":       "You denied the request.",
	"cancel":     "You cancelled the request.",
	"relinquish": "You ended your access.",
	"extend":     "You asked for more time.",
	"confirm":    "You confirmed the break-glass use.",
	"flag":       "You flagged the break-glass use.",
}

// view is what the page template renders.
type view struct {
	Title, Root, Actor string
	Notice, Error      string
	Waiting, Mine      []pam.Request
	Glass              []pam.Request // break-glass activations to review, and flagged
	Policies           []pam.Policy
	Request            *pam.Request
	Bare               bool // an error page: no lists, no form
}

func (h *Handler) routesPage(mux *recordingMux) {
	funcs := template.FuncMap{
		"age": func(t time.Time) string { return short(h.opts.Now().Sub(t)) },
		"reviewDue": func(v *pam.BreakGlassReview) string {
			if d := v.DueAt.Sub(h.opts.Now()); d > 0 {
				return "due in " + short(d)
			}
			return "overdue by " + short(h.opts.Now().Sub(v.DueAt))
		},
		"remaining": func(r pam.Request) string {
			now := h.opts.Now()
			switch r.State {
			case pam.Pending:
				return "waits for approval, " + short(r.PendingUntil.Sub(now)) + " left"
			case pam.Approved:
				if r.Scheduled(now) {
					return "approved, opens in " + short(r.ApprovedAt.Sub(now)) + " for " + short(r.ExpiresAt.Sub(r.ApprovedAt))
				}
				left := "active, " + short(r.ExpiresAt.Sub(now)) + " left"
				if r.ExtensionPending(now) {
					left += ", " + short(r.Extension.By) + " more asked"
				}
				return left
			}
			return string(r.State)
		},
		// extending: an active grant whose extension waits for a decision.
		"extending": func(r pam.Request) bool { return r.ExtensionPending(h.opts.Now()) },
		// extendable: the holder may ask for more time now.
		"extendable": func(r pam.Request) bool { return r.Allows(pam.ActionExtend, h.opts.Now()) },
		"utc":        func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 MST") },
	}
	page := template.Must(template.New("").Funcs(funcs).ParseFS(assets, "assets/page.html"))
	css, err := assets.ReadFile("assets/style.css")
	if err != nil {
		panic(err) // embedded at build time
	}
	mux.HandleFunc("GET /assets/style.css", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Write(css)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		h.render(w, r, page, http.StatusOK, "")
	})
	mux.HandleFunc("GET /requests/{id}", func(w http.ResponseWriter, r *http.Request) {
		ctx, err := h.actor(r)
		if err != nil {
			h.pageError(w, r, page, err)
			return
		}
		req, err := h.m.Request(ctx, r.PathValue("id"))
		if err != nil {
			h.pageError(w, r, page, err)
			return
		}
		who, _ := pam.ActorFrom(ctx)
		h.write(w, page, http.StatusOK, &view{Title: "Request " + req.ID, Root: root(r), Actor: who, Request: &req})
	})
	mux.HandleFunc("POST /requests", func(w http.ResponseWriter, r *http.Request) {
		ctx, err := h.actor(r)
		if err == nil {
			err = h.submitForm(ctx, r)
		}
		if err != nil {
			st, _ := status(err)
			h.render(w, r, page, st, err.Error())
			return
		}
		seeOther(w, root(r)+"?done=submitted")
	})
	mux.HandleFunc("POST /requests/{id}/extend", func(w http.ResponseWriter, r *http.Request) {
		ctx, err := h.actor(r)
		if err == nil {
			var by time.Duration
			if by, err = formHours(r.PostFormValue("hours")); err == nil {
				_, err = h.m.Extend(ctx, r.PathValue("id"), by, r.PostFormValue("reason"))
			}
		}
		if err != nil {
			st, _ := status(err)
			h.render(w, r, page, st, err.Error())
			return
		}
		seeOther(w, root(r)+"?done=extend")
	})
	mux.HandleFunc("POST /requests/{id}/decide", func(w http.ResponseWriter, r *http.Request) {
		ctx, err := h.actor(r)
		verdict := r.PostFormValue("verdict")
		if err == nil {
			if _, ok := notices[verdict]; !ok || verdict == "submitted" || verdict == "extend" {
				err = fmt.Errorf("%w: no action %q", pam.ErrInvalid, verdict)
			} else {
				_, err = Act(ctx, h.m, r.PathValue("id"), verdict, r.PostFormValue("comment"))
			}
		}
		if err != nil {
			st, _ := status(err)
			h.render(w, r, page, st, err.Error())
			return
		}
		seeOther(w, root(r)+"?done="+verdict)
	})
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

func (h *Handler) submitForm(ctx context.Context, r *http.Request) error {
	n := pam.RequestInput{PolicyID: r.PostFormValue("policy_id"), Reason: r.PostFormValue("reason"), Ticket: r.PostFormValue("ticket")}
	if hours := r.PostFormValue("hours"); hours != "" {
		d, err := formHours(hours)
		if err != nil {
			return err
		}
		n.Duration = d
	}
	if start := r.PostFormValue("start"); start != "" {
		// A datetime-local field: the browser's wall time, taken as UTC.
		t, err := time.Parse("2006-01-02T15:04", start)
		if err != nil {
			return fmt.Errorf("%w: start %q: want a date and time such as 2026-11-02T09:30 (UTC)", pam.ErrInvalid, start)
		}
		n.Start = t
	}
	if uses := r.PostFormValue("uses"); uses != "" {
		k, err := strconv.Atoi(uses)
		if err != nil || k < 1 {
			return fmt.Errorf("%w: runs %q", pam.ErrInvalid, uses)
		}
		n.MaxUses = k
	}
	// One NAME=VALUE per line: the grant covers only operations whose
	// parameter NAME is VALUE (a string).
	for line := range strings.Lines(r.PostFormValue("bind")) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		name, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(name) == "" {
			return fmt.Errorf("%w: %q is not NAME=VALUE", pam.ErrInvalid, line)
		}
		if n.Bind == nil {
			n.Bind = map[string]any{}
		}
		n.Bind[strings.TrimSpace(name)] = strings.TrimSpace(v)
	}
	_, err := h.m.Submit(ctx, n)
	return err
}

// formHours reads a form's hours as a duration, to the minute.
func formHours(hours string) (time.Duration, error) {
	f, err := strconv.ParseFloat(hours, 64)
	if err != nil || f <= 0 || f > 24*365 {
		return 0, fmt.Errorf("%w: hours %q", pam.ErrInvalid, hours)
	}
	return time.Duration(f * float64(time.Hour)).Round(time.Minute), nil
}

// render shows the home page, with an error when there is one.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, page *template.Template, st int, errText string) {
	ctx, err := h.actor(r)
	if err != nil {
		h.pageError(w, r, page, err)
		return
	}
	who, _ := pam.ActorFrom(ctx)
	v := &view{Title: "Privileged access", Root: root(r), Actor: who, Error: errText, Notice: notices[r.URL.Query().Get("done")]}
	if v.Waiting, err = h.m.Reviewable(ctx); err == nil {
		v.Glass, err = h.m.BreakGlassReviews(ctx)
	}
	if err == nil {
		var mine []pam.Request
		mine, _, err = h.m.Requests(ctx, pam.RequestFilter{Requester: who, Limit: pam.MaxPageSize})
		// Newest first.
		for i := len(mine) - 1; i >= 0; i-- {
			v.Mine = append(v.Mine, mine[i])
		}
	}
	if err == nil {
		v.Policies, err = h.m.Policies(ctx)
	}
	if err != nil {
		h.pageError(w, r, page, err)
		return
	}
	h.write(w, page, st, v)
}

func (h *Handler) pageError(w http.ResponseWriter, r *http.Request, page *template.Template, err error) {
	st, _ := status(err)
	msg := err.Error()
	if st == http.StatusInternalServerError {
		msg = "Something went wrong."
	}
	h.write(w, page, st, &view{Title: http.StatusText(st), Root: root(r), Error: msg, Bare: true})
}

func (h *Handler) write(w http.ResponseWriter, page *template.Template, st int, v *view) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; form-action 'self'; frame-ancestors 'none'")
	w.WriteHeader(st)
	page.ExecuteTemplate(w, "page", v)
}

// short writes a duration for people: "3h 5m", "4m", "12s".
func short(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d >= time.Hour:
		return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
	case d >= time.Minute:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	}
	return fmt.Sprintf("%ds", int(d.Seconds()))
}
