// Package teams notifies through Microsoft Teams: it posts each
// notification as an Adaptive Card to a Teams Workflows webhook (the
// "Post to a channel when a webhook request is received" flow of Power
// Automate, which replaced Office 365 connectors).
//
//	n, err := teams.New(os.Getenv("TEAMS_WEBHOOK_URL"), &teams.Options{BaseURL: "https://pam.example.com"})
//	m, err := pam.New(store, dir, &pam.Options{Notifiers: []pam.NotifierConfig{{Name: "teams", Notifier: n}}})
//
// The card says who asks for what, why, for how long and under which
// ticket, the state and the window, with a "Review" button to the
// request's page on the approver page (BaseURL + "/requests/" + ID).
// User text passes through pam.DisplayText (invisible characters are
// shown) and has Markdown's characters escaped, so a reason cannot make
// a link or hide words. The webhook URL carries its own key: keep it
// secret.
package teams

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

// Options configure a Notifier.
type Options struct {
	// Client sends the requests. Default: a client without a timeout of
	// its own (Timeout bounds each).
	Client *http.Client
	// Timeout bounds each request, within the engine's NotifyTimeout.
	// Default: 10 seconds.
	Timeout time.Duration
	// BaseURL, when set, adds a "Review" button: BaseURL + "/requests/"
	// + the request's ID.
	BaseURL string
}

// Notifier posts Adaptive Cards to a Teams Workflows webhook.
type Notifier struct {
	url  string
	opts Options
}

var _ pam.Notifier = (*Notifier)(nil)

// New returns a Notifier posting to webhookURL (https).
func New(webhookURL string, opts *Options) (*Notifier, error) {
	u, err := url.Parse(webhookURL)
	if err != nil || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) || u.Host == "" {
		return nil, fmt.Errorf("%w: Teams webhook URL: want https://…", pam.ErrInvalid)
	}
	n := &Notifier{url: webhookURL}
	if opts != nil {
		n.opts = *opts
	}
	if n.opts.Timeout < 0 {
		return nil, fmt.Errorf("%w: Options.Timeout must not be negative", pam.ErrInvalid)
	}
	if n.opts.BaseURL != "" {
		if b, err := url.Parse(n.opts.BaseURL); err != nil || (b.Scheme != "https" && b.Scheme != "http") || b.Host == "" {
			return nil, fmt.Errorf("%w: Options.BaseURL %q", pam.ErrInvalid, n.opts.BaseURL)
		}
	}
	if n.opts.Client == nil {
		n.opts.Client = &http.Client{}
	}
	if n.opts.Timeout == 0 {
		n.opts.Timeout = 10 * time.Second
	}
	return n, nil
}

func isLoopback(host string) bool { return host == "localhost" || host == "127.0.0.1" || host == "::1" }

// Notify implements pam.Notifier: one post per notification, to the
// channel the flow posts in (Recipients name the people concerned in the
// card). Any 2xx answer is success (Workflows answers 202).
func (n *Notifier) Notify(ctx context.Context, x pam.Notification) error {
	body, err := json.Marshal(Message(x, n.opts.BaseURL))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, n.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.opts.Client.Do(req)
	if err != nil {
		return redact(err, n.url)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("teams: the webhook answered %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// redact keeps the webhook's URL, which holds its key, out of errors.
func redact(err error, u string) error {
	return fmt.Errorf("teams: %s", strings.ReplaceAll(err.Error(), u, "the webhook URL"))
}

// Message is the body posted: a message with one Adaptive Card
// attachment, as Teams Workflows webhooks take it.
func Message(x pam.Notification, baseURL string) map[string]any {
	return map[string]any{
		"type": "message",
		"attachments": []any{map[string]any{
			"contentType": "application/vnd.microsoft.card.adaptive",
			"contentUrl":  nil,
			"content":     Card(x, baseURL),
		}},
	}
}

// Card returns the Adaptive Card (version 1.4, which Teams renders) of
// a notification.
func Card(x pam.Notification, baseURL string) map[string]any {
	r := x.Request.ForDisplay()
	facts := []map[string]string{
		{"title": "Requester", "value": md(r.Requester)},
		{"title": "Access", "value": md(r.Scope.String())},
		{"title": "Reason", "value": md(r.Reason)},
	}
	if r.Ticket != "" {
		facts = append(facts, map[string]string{"title": "Ticket", "value": md(r.Ticket)})
	}
	if b := r.Bounds(); b != "" {
		facts = append(facts, map[string]string{"title": "Only for", "value": md(b)})
	}
	facts = append(facts, map[string]string{"title": "Duration", "value": md(r.Duration.String())})
	facts = append(facts, map[string]string{"title": "State", "value": md(string(r.State))})
	switch {
	case r.State == pam.Pending:
		facts = append(facts, map[string]string{"title": "Decide by", "value": when(r.PendingUntil)})
	case !r.ExpiresAt.IsZero():
		facts = append(facts, map[string]string{"title": "Window", "value": when(r.ApprovedAt) + " to " + when(r.ExpiresAt)})
	}
	if r.Extension != nil && x.Type == pam.EventRequestExtensionRequested {
		facts = append(facts, map[string]string{"title": "More time", "value": md(r.Extension.By.String() + ": " + r.Extension.Reason)})
	}
	card := map[string]any{
		"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
		"type":    "AdaptiveCard",
		"version": "1.4",
		"body": []any{
			map[string]any{"type": "TextBlock", "text": md(title(x.Type, &r)), "weight": "Bolder", "size": "Medium", "wrap": true},
			map[string]any{"type": "FactSet", "facts": facts},
			map[string]any{"type": "TextBlock", "text": md("Request " + r.ID), "isSubtle": true, "size": "Small", "wrap": true},
		},
	}
	if baseURL != "" {
		card["actions"] = []any{map[string]any{"type": "Action.OpenUrl", "title": "Review",
			"url": strings.TrimRight(baseURL, "/") + "/requests/" + url.PathEscape(r.ID)}}
	}
	return card
}

// title is the card's headline.
func title(t pam.EventType, r *pam.Request) string {
	switch t {
	case pam.EventRequestSubmitted:
		return fmt.Sprintf("%s requests %s", r.Requester, r.Scope)
	case pam.EventRequestApproved:
		return fmt.Sprintf("Approved: %s for %s", r.Scope, r.Requester)
	case pam.EventRequestDenied:
		return fmt.Sprintf("Denied: %s for %s", r.Scope, r.Requester)
	case pam.EventRequestRevoked:
		return fmt.Sprintf("Revoked: %s of %s", r.Scope, r.Requester)
	case pam.EventRequestExpired:
		return fmt.Sprintf("Expired: %s for %s", r.Scope, r.Requester)
	case pam.EventRequestRelinquished:
		return fmt.Sprintf("%s ended their access to %s", r.Requester, r.Scope)
	case pam.EventRequestExtensionRequested:
		return fmt.Sprintf("%s asks for more time on %s", r.Requester, r.Scope)
	case pam.EventRequestExtended:
		return fmt.Sprintf("Extended: %s for %s", r.Scope, r.Requester)
	case pam.EventRequestExtensionDenied:
		return fmt.Sprintf("More time denied: %s for %s", r.Scope, r.Requester)
	case pam.EventRequestReminded:
		return fmt.Sprintf("Reminder: %s still waits for a decision on %s", r.Requester, r.Scope)
	case pam.EventRequestEscalated:
		return fmt.Sprintf("Escalated to you: %s requests %s", r.Requester, r.Scope)
	case pam.EventRequestBreakGlass:
		return fmt.Sprintf("Break-glass: %s took %s without approval; review it", r.Requester, r.Scope)
	case pam.EventRequestBreakGlassOverdue:
		return fmt.Sprintf("Overdue: review %s's break-glass use of %s", r.Requester, r.Scope)
	case pam.EventRequestBreakGlassConfirmed:
		return fmt.Sprintf("Break-glass confirmed: %s by %s", r.Scope, r.Requester)
	case pam.EventRequestBreakGlassFlagged:
		return fmt.Sprintf("Break-glass flagged: %s by %s", r.Scope, r.Requester)
	}
	return fmt.Sprintf("%s: %s", t, r.Scope)
}

func when(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

// md escapes the characters Teams' Markdown gives a meaning to, so user
// text reads as written: no links, emphasis, headings, lists or code.
var md = strings.NewReplacer(
	`\`, `\\`, "*", `\*`, "_", `\_`, "[", `\[`, "]", `\]`, "(", `\(`, ")", `\)`,
	"`", "\\`", "#", `\#`, "~", `\~`, ">", `\>`, "|", `\|`, "<", `\<`,
).Replace
