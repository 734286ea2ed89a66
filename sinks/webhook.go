package sinks

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/internal/sign"
)

// SignatureHeader carries a webhook body's signature:
//
//	Pam-Signature: t=<Unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
//
// A receiver recomputes the HMAC over the timestamp, a dot and the raw
// body, compares it in constant time, and rejects a timestamp older than
// its tolerance (a few minutes) to refuse replays; VerifySignature does
// all three.
const SignatureHeader = sign.Header

// Sign returns the SignatureHeader value for body sent at t.
func Sign(secret []byte, t time.Time, body []byte) string { return sign.Sign(secret, t, body) }

// ErrBadSignature is returned by VerifySignature.
var ErrBadSignature = sign.ErrBadSignature

// VerifySignature checks a SignatureHeader value against body, and that
// its timestamp is within tolerance of now.
func VerifySignature(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	return sign.Verify(secret, header, body, now, tolerance)
}

// WebhookOptions configure a Webhook.
type WebhookOptions struct {
	// Client sends the requests. Default: a client without a timeout of
	// its own (the engine's AuditTimeout bounds each write).
	Client *http.Client
	// Secret, when set, signs each body (SignatureHeader).
	Secret []byte
	// StandardSecret, when set ("whsec_" and the base64 of the key),
	// also signs each body as Standard Webhooks do (webhook-id,
	// webhook-timestamp, webhook-signature), so that receivers can use
	// an off-the-shelf verifier. A batch's webhook-id is
	// "pam-events-FIRST-LAST", its events' sequence numbers: a retried
	// batch keeps its ID.
	StandardSecret string
	// Header is added to every request (an Authorization, say).
	Header http.Header
	// Clock stamps signatures. Default: the wall clock.
	Clock clock.Clock
}

// Webhook is an AuditSink that POSTs each batch as JSON,
// {"events": [...]}, with Content-Type application/json. Any 2xx answer
// is success; anything else, or no answer before the write's deadline,
// is a failure the engine retries — with the same or overlapping events,
// so receivers should drop events whose seq they have.
type Webhook struct {
	url  string
	opts WebhookOptions
	key  []byte // StandardSecret's
}

var _ pam.AuditSink = (*Webhook)(nil)

// NewWebhook returns a sink posting to rawURL (http or https).
func NewWebhook(rawURL string, opts *WebhookOptions) (*Webhook, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: webhook URL %q: want http(s)://host/…", pam.ErrInvalid, rawURL)
	}
	w := &Webhook{url: rawURL}
	if opts != nil {
		w.opts = *opts
	}
	if w.opts.StandardSecret != "" {
		if w.key, err = sign.StandardKey(w.opts.StandardSecret); err != nil {
			return nil, fmt.Errorf("%w: WebhookOptions.StandardSecret: %v", pam.ErrInvalid, err)
		}
	}
	if w.opts.Client == nil {
		w.opts.Client = &http.Client{}
	}
	if w.opts.Clock == nil {
		w.opts.Clock = clock.New()
	}
	return w, nil
}

// Write implements pam.AuditSink.
func (w *Webhook) Write(ctx context.Context, events []pam.Event) error {
	body, err := json.Marshal(struct {
		Events []pam.Event `json:"events"`
	}{events})
	if err != nil {
		return err
	}
	var id string
	if len(events) > 0 {
		id = fmt.Sprintf("pam-events-%d-%d", events[0].Seq, events[len(events)-1].Seq)
	}
	return sign.Post(ctx, w.opts.Client, w.url, w.opts.Header, sign.Signing{Secret: w.opts.Secret, StandardKey: w.key, ID: id}, w.opts.Clock.Now(), body)
}
