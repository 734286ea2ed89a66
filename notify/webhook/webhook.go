// Package webhook is a pam.Notifier that POSTs each notification as JSON,
// signed with HMAC-SHA256, and can format it for Slack-compatible
// incoming webhooks instead.
//
// # Verifying a delivery
//
// With a secret, every request carries
//
//	Pam-Signature: t=<Unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
//	Idempotency-Key: <the notification's ID>
//
// The receiver recomputes the HMAC over the timestamp, a dot and the raw
// body, compares in constant time, rejects timestamps outside a few
// minutes (replays), and drops IDs it has seen (delivery is at least
// once). Verify does the first three.
package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/internal/sign"
)

// SignatureHeader carries the signature (see the package documentation).
const SignatureHeader = sign.Header

// ErrBadSignature is returned by Verify.
var ErrBadSignature = sign.ErrBadSignature

// Verify checks a SignatureHeader value against body, and that its
// timestamp is within tolerance of now.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	return sign.Verify(secret, header, body, now, tolerance)
}

// Options configure a Notifier.
type Options struct {
	// Client sends the requests. Default: http.DefaultClient's transport
	// with no timeout of its own.
	Client *http.Client
	// Timeout bounds each request, within the engine's NotifyTimeout.
	// Default: 10 seconds.
	Timeout time.Duration
	// Secret, when set, signs each body.
	Secret []byte
	// StandardSecret, when set ("whsec_" and the base64 of the key),
	// also signs each body as Standard Webhooks do (webhook-id: the
	// notification's ID, the same on every retry; webhook-timestamp;
	// webhook-signature), so that receivers can use an off-the-shelf
	// verifier.
	StandardSecret string
	// Header is added to every request (an Authorization, say).
	Header http.Header
	// Format turns a notification into the body. Default: JSON (see
	// Payload). Slack formats for Slack-compatible incoming webhooks.
	Format func(pam.Notification) ([]byte, error)
	// Clock stamps signatures. Default: the wall clock.
	Clock clock.Clock
}

// Payload is the default body.
type Payload struct {
	ID        string        `json:"id"`
	Type      pam.EventType `json:"type"`
	Recipient string        `json:"recipient"`
	Attempt   int           `json:"attempt"`
	Request   pam.Request   `json:"request"`
}

// Notifier posts notifications to one URL.
// StandardSign returns the webhook-signature value of Standard Webhooks
// for message id sent at t with body, under secret ("whsec_…"); "" when
// the secret is malformed. Receivers can use it to check deliveries;
// the notifier signs with it.
func StandardSign(secret, id string, t time.Time, body []byte) string {
	key, err := sign.StandardKey(secret)
	if err != nil {
		return ""
	}
	return sign.StandardSign(key, id, t, body)
}

type Notifier struct {
	url  string
	opts Options
	key  []byte // StandardSecret's
}

var _ pam.Notifier = (*Notifier)(nil)

// New returns a Notifier posting to rawURL (http or https).
func New(rawURL string, opts *Options) (*Notifier, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: webhook URL %q: want http(s)://host/…", pam.ErrInvalid, rawURL)
	}
	n := &Notifier{url: rawURL}
	if opts != nil {
		n.opts = *opts
	}
	if n.opts.StandardSecret != "" {
		if n.key, err = sign.StandardKey(n.opts.StandardSecret); err != nil {
			return nil, fmt.Errorf("%w: Options.StandardSecret: %v", pam.ErrInvalid, err)
		}
	}
	if n.opts.Timeout < 0 {
		return nil, fmt.Errorf("%w: Options.Timeout must not be negative", pam.ErrInvalid)
	}
	if n.opts.Client == nil {
		n.opts.Client = &http.Client{}
	}
	if n.opts.Timeout == 0 {
		n.opts.Timeout = 10 * time.Second
	}
	if n.opts.Format == nil {
		n.opts.Format = func(x pam.Notification) ([]byte, error) {
			return json.Marshal(Payload{ID: x.ID, Type: x.Type, Recipient: strings.Join(x.Recipients, ","), Attempt: x.Attempt, Request: x.Request})
		}
	}
	if n.opts.Clock == nil {
		n.opts.Clock = clock.New()
	}
	return n, nil
}

// Notify implements pam.Notifier: any 2xx answer is success.
func (n *Notifier) Notify(ctx context.Context, x pam.Notification) error {
	body, err := n.opts.Format(x)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, n.opts.Timeout)
	defer cancel()
	return sign.Post(ctx, n.opts.Client, n.url, n.opts.Header, sign.Signing{Secret: n.opts.Secret, StandardKey: n.key, ID: x.ID}, n.opts.Clock.Now(), body, "Idempotency-Key", x.ID)
}

// Slack returns a Format for Slack-compatible incoming webhooks
// ({"text": …} in mrkdwn): who asks for what, for how long and why, and,
// when baseURL is set, a link to the request (baseURL + "/requests/" +
// ID). User text passes through pam.DisplayText (a right-to-left
// override shows as <U+202E>) and is escaped as Slack requires (&, <,
// >). The default JSON payload carries the request as recorded: it is
// for programs, which must neutralise it themselves before showing it.
func Slack(baseURL string) func(pam.Notification) ([]byte, error) {
	return func(x pam.Notification) ([]byte, error) {
		r := x.Request.ForDisplay() // for people: invisible characters shown
		var text string
		switch x.Type {
		case pam.EventRequestSubmitted:
			text = fmt.Sprintf("*%s* requests *%s* for %s: %s", esc(r.Requester), esc(r.Scope.String()), r.Duration, esc(r.Reason))
			if b := r.Bounds(); b != "" {
				text += " (" + esc(b) + ")"
			}
		case pam.EventRequestApproved:
			text = fmt.Sprintf("Your request for *%s* is approved until %s", esc(r.Scope.String()), r.ExpiresAt.UTC().Format(time.RFC1123))
			if len(r.Decisions) > 0 && r.ApprovedAt.After(r.Decisions[len(r.Decisions)-1].At) {
				text = fmt.Sprintf("Your request for *%s* is approved from %s until %s", esc(r.Scope.String()), r.ApprovedAt.UTC().Format(time.RFC1123), r.ExpiresAt.UTC().Format(time.RFC1123))
			}
		case pam.EventRequestExtensionRequested:
			if r.Extension == nil {
				return nil, fmt.Errorf("webhook: %s without an extension", x.Type)
			}
			text = fmt.Sprintf("*%s* asks to extend *%s* by %s: %s", esc(r.Requester), esc(r.Scope.String()), r.Extension.By, esc(r.Extension.Reason))
		case pam.EventRequestExtended:
			text = fmt.Sprintf("Your access to *%s* is extended until %s", esc(r.Scope.String()), r.ExpiresAt.UTC().Format(time.RFC1123))
		case pam.EventRequestExtensionDenied:
			text = fmt.Sprintf("More time on *%s* was denied: your access ends %s", esc(r.Scope.String()), r.ExpiresAt.UTC().Format(time.RFC1123))
		case pam.EventRequestDenied:
			text = fmt.Sprintf("Your request for *%s* was denied", esc(r.Scope.String()))
		case pam.EventRequestRevoked:
			text = fmt.Sprintf("Your access to *%s* was revoked", esc(r.Scope.String()))
		case pam.EventRequestRelinquished:
			text = fmt.Sprintf("You ended your access to *%s*", esc(r.Scope.String()))
		case pam.EventRequestExpired:
			text = fmt.Sprintf("Your request for *%s* has expired", esc(r.Scope.String()))
		case pam.EventRequestReminded, pam.EventRequestEscalated:
			lead := "Reminder: *%s* still waits for a decision on *%s* for %s: %s"
			if x.Type == pam.EventRequestEscalated {
				lead = "Escalated to you: *%s* requests *%s* for %s: %s"
			}
			text = fmt.Sprintf(lead, esc(r.Requester), esc(r.Scope.String()), r.Duration, esc(r.Reason))
			if b := r.Bounds(); b != "" {
				text += " (" + esc(b) + ")"
			}
		case pam.EventRequestBreakGlass, pam.EventRequestBreakGlassOverdue:
			lead := ":rotating_light: Break-glass: *%s* took *%s* for %s without approval: %s"
			if x.Type == pam.EventRequestBreakGlassOverdue {
				lead = "Review overdue: *%s* broke glass for *%s* (%s): %s"
			}
			text = fmt.Sprintf(lead, esc(r.Requester), esc(r.Scope.String()), r.Duration, esc(r.Reason))
		case pam.EventRequestBreakGlassConfirmed:
			text = fmt.Sprintf("Your break-glass use of *%s* was confirmed", esc(r.Scope.String()))
		case pam.EventRequestBreakGlassFlagged:
			text = fmt.Sprintf("Your break-glass use of *%s* was flagged", esc(r.Scope.String()))
		default:
			text = fmt.Sprintf("%s: %s", esc(string(x.Type)), esc(r.Scope.String()))
		}
		if baseURL != "" {
			text += fmt.Sprintf(" <%s|Open request %s>", strings.TrimRight(baseURL, "/")+"/requests/"+url.PathEscape(r.ID), esc(r.ID))
		}
		return json.Marshal(map[string]string{"text": text})
	}
}

// esc escapes text for Slack's mrkdwn.
func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
