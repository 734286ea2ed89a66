// Package smtp is a pam.Notifier that sends each notification as an email
// (plain text and HTML, from templates the host can replace) over SMTP
// with STARTTLS and authentication.
//
// It is built on the standard library's net/smtp: the protocol a
// notifier needs (EHLO, STARTTLS, AUTH PLAIN, one message to one
// recipient) is all there and maintained with Go, so a third-party client
// would add a dependency without adding a feature. What net/smtp lacks,
// cancellation, is supplied by dialling with the context and closing the
// connection when it ends.
//
// The Message-ID of an email is derived from the notification's ID, the
// same on every attempt, so mail systems that deduplicate drop a message
// delivered twice (delivery is at least once).
package smtp

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"net/url"
	"strings"
	texttemplate "text/template"
	"time"

	"github.com/benbjohnson/clock"
	"golang.org/x/oauth2"

	"github.com/zerostanding/pam"
)

// Security says how the connection is protected.
type Security int

const (
	// StartTLS (the default) upgrades the connection with STARTTLS and
	// fails if the server does not offer it.
	StartTLS Security = iota
	// ImplicitTLS speaks TLS from the first byte (port 465).
	ImplicitTLS
	// Plaintext sends in the clear: only for a relay on the same host.
	// net/smtp then refuses to send credentials to anything but
	// localhost.
	Plaintext
)

// Options configure a Notifier. Addr and From are required.
type Options struct {
	Addr string // host:port of the submission server
	From string // the sender, "PAM <pam@example.com>" or an address
	// Username and Password, when set, authenticate with AUTH PLAIN
	// (only over TLS, or to localhost).
	Username, Password string
	// Auth, when set, authenticates instead: any net/smtp Auth, such as
	// XOAUTH2 for Exchange Online and Gmail, which retire basic
	// authentication. Not with Username.
	Auth     smtp.Auth
	Security Security
	// TLSConfig for STARTTLS or implicit TLS. Default: verify the
	// server's certificate for the host of Addr.
	TLSConfig *tls.Config
	// Hello is the name sent with EHLO. Default: "localhost".
	Hello string
	// Timeout bounds one delivery, within the engine's NotifyTimeout.
	// Default: 30 seconds.
	Timeout time.Duration
	// Address maps a recipient's identity to an email address. Default:
	// the identity itself, which must then be an address.
	Address func(identity string) (string, error)
	// BaseURL, when set, adds a link to the request's page:
	// BaseURL + "/requests/" + the request's ID.
	BaseURL string
	// Subject, Text and HTML replace the default templates. Each is
	// executed with a Data.
	Subject *texttemplate.Template
	Text    *texttemplate.Template
	HTML    *htmltemplate.Template
	// Clock dates the emails. Default: the wall clock.
	Clock clock.Clock
}

// Data is what the templates see. Its Request has passed through
// Request.ForDisplay: user text shows its invisible characters.
type Data struct {
	pam.Notification
	Recipient string
	// Title is a one-line summary: "alice requests task:New-MoveRequest".
	Title string
	// Link is the request's page, "" without Options.BaseURL.
	Link string
}

// The default templates.
var (
	DefaultSubject = texttemplate.Must(texttemplate.New("subject").Parse(`[PAM] {{.Title}}`))
	DefaultText    = texttemplate.Must(texttemplate.New("text").Parse(`{{.Title}}

Requester: {{.Request.Requester}}
Access:    {{.Request.Scope}}
Duration:  {{.Request.Duration}}
Reason:    {{.Request.Reason}}
{{- if .Request.Ticket}}
Ticket:    {{.Request.Ticket}}{{end}}
{{- with .Request.Bounds}}
Limits:    {{.}}{{end}}
Request:   {{.Request.ID}}
{{- if .Link}}

Review it: {{.Link}}{{end}}
`))
	DefaultHTML = htmltemplate.Must(htmltemplate.New("html").Parse(`<!doctype html>
<html><body style="font-family: sans-serif">
<p><strong>{{.Title}}</strong></p>
<table>
<tr><td>Requester</td><td>{{.Request.Requester}}</td></tr>
<tr><td>Access</td><td>{{.Request.Scope}}</td></tr>
<tr><td>Duration</td><td>{{.Request.Duration}}</td></tr>
<tr><td>Reason</td><td>{{.Request.Reason}}</td></tr>
{{- if .Request.Ticket}}<tr><td>Ticket</td><td>{{.Request.Ticket}}</td></tr>{{end}}
{{- with .Request.Bounds}}<tr><td>Limits</td><td>{{.}}</td></tr>{{end}}
<tr><td>Request</td><td>{{.Request.ID}}</td></tr>
</table>
{{- if .Link}}
<p><a href="{{.Link}}">Review the request</a></p>{{end}}
</body></html>
`))
)

// Notifier sends email.
type Notifier struct {
	opts Options
	host string
	from *mail.Address
}

var _ pam.Notifier = (*Notifier)(nil)

// New returns a Notifier. It does not connect.
func New(opts Options) (*Notifier, error) {
	host, _, err := net.SplitHostPort(opts.Addr)
	if err != nil || host == "" {
		return nil, fmt.Errorf("%w: Options.Addr %q: want host:port", pam.ErrInvalid, opts.Addr)
	}
	from, err := mail.ParseAddress(opts.From)
	if err != nil {
		return nil, fmt.Errorf("%w: Options.From: %v", pam.ErrInvalid, err)
	}
	if opts.Auth != nil && opts.Username != "" {
		return nil, fmt.Errorf("%w: Options.Auth and Options.Username: give one", pam.ErrInvalid)
	}
	if opts.Timeout < 0 || opts.Security < StartTLS || opts.Security > Plaintext {
		return nil, fmt.Errorf("%w: Options.Timeout or Options.Security", pam.ErrInvalid)
	}
	if opts.BaseURL != "" {
		if u, err := url.Parse(opts.BaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") {
			return nil, fmt.Errorf("%w: Options.BaseURL %q", pam.ErrInvalid, opts.BaseURL)
		}
	}
	if opts.TLSConfig == nil {
		opts.TLSConfig = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	if opts.Hello == "" {
		opts.Hello = "localhost"
	}
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.Address == nil {
		opts.Address = func(id string) (string, error) { return id, nil }
	}
	if opts.Subject == nil {
		opts.Subject = DefaultSubject
	}
	if opts.Text == nil {
		opts.Text = DefaultText
	}
	if opts.HTML == nil {
		opts.HTML = DefaultHTML
	}
	if opts.Clock == nil {
		opts.Clock = clock.New()
	}
	return &Notifier{opts: opts, host: host, from: from}, nil
}

// Notify implements pam.Notifier: one email to each recipient.
func (n *Notifier) Notify(ctx context.Context, x pam.Notification) error {
	var errs []error
	for _, who := range x.Recipients {
		if err := n.send(ctx, x, who); err != nil {
			errs = append(errs, fmt.Errorf("smtp: to %s: %w", who, err))
		}
	}
	return errors.Join(errs...)
}

// Compose returns the email for one recipient, headers and body, as sent.
func (n *Notifier) Compose(x pam.Notification, recipient string) (to string, msg []byte, err error) {
	addr, err := n.opts.Address(recipient)
	if err != nil {
		return "", nil, err
	}
	rcpt, err := mail.ParseAddress(addr)
	if err != nil {
		return "", nil, fmt.Errorf("recipient %q has no usable address: %w", recipient, err)
	}
	// What a person reads: user text with its invisible characters shown
	// (pam.DisplayText), as recorded otherwise.
	x.Request = x.Request.ForDisplay()
	d := Data{Notification: x, Recipient: recipient, Title: title(&x)}
	if n.opts.BaseURL != "" {
		d.Link = strings.TrimRight(n.opts.BaseURL, "/") + "/requests/" + url.PathEscape(x.Request.ID)
	}
	var subject, text, html bytes.Buffer
	if err := n.opts.Subject.Execute(&subject, d); err != nil {
		return "", nil, err
	}
	if err := n.opts.Text.Execute(&text, d); err != nil {
		return "", nil, err
	}
	if err := n.opts.HTML.Execute(&html, d); err != nil {
		return "", nil, err
	}
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	oneLine := strings.NewReplacer("\r", " ", "\n", " ")
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s@pam>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=%s\r\n\r\n",
		n.from.String(), rcpt.String(), mime.QEncoding.Encode("utf-8", oneLine.Replace(subject.String())),
		n.opts.Clock.Now().UTC().Format(time.RFC1123Z), x.ID, mw.Boundary())
	for _, part := range []struct {
		typ  string
		body []byte
	}{{"text/plain", text.Bytes()}, {"text/html", html.Bytes()}} {
		w, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {part.typ + "; charset=utf-8"}, "Content-Transfer-Encoding": {"quoted-printable"}})
		if err != nil {
			return "", nil, err
		}
		qp := quotedprintable.NewWriter(w)
		qp.Write(part.body)
		qp.Close()
	}
	mw.Close()
	return rcpt.Address, b.Bytes(), nil
}

func title(x *pam.Notification) string {
	r := &x.Request
	switch x.Type {
	case pam.EventRequestSubmitted:
		return fmt.Sprintf("%s requests %s for %s", r.Requester, r.Scope, r.Duration)
	case pam.EventRequestApproved:
		if len(r.Decisions) > 0 && r.ApprovedAt.After(r.Decisions[len(r.Decisions)-1].At) {
			return fmt.Sprintf("Your request for %s is approved from %s until %s", r.Scope, r.ApprovedAt.UTC().Format("2006-01-02 15:04 MST"), r.ExpiresAt.UTC().Format("2006-01-02 15:04 MST"))
		}
		return fmt.Sprintf("Your request for %s is approved until %s", r.Scope, r.ExpiresAt.UTC().Format("2006-01-02 15:04 MST"))
	case pam.EventRequestExtensionRequested:
		if r.Extension != nil {
			return fmt.Sprintf("%s asks to extend %s by %s", r.Requester, r.Scope, r.Extension.By)
		}
	case pam.EventRequestExtended:
		return fmt.Sprintf("Your access to %s is extended until %s", r.Scope, r.ExpiresAt.UTC().Format("2006-01-02 15:04 MST"))
	case pam.EventRequestExtensionDenied:
		return fmt.Sprintf("More time on %s was denied: your access ends %s", r.Scope, r.ExpiresAt.UTC().Format("2006-01-02 15:04 MST"))
	case pam.EventRequestDenied:
		return fmt.Sprintf("Your request for %s was denied", r.Scope)
	case pam.EventRequestRevoked:
		return fmt.Sprintf("Your access to %s was revoked", r.Scope)
	case pam.EventRequestRelinquished:
		return fmt.Sprintf("You ended your access to %s", r.Scope)
	case pam.EventRequestExpired:
		return fmt.Sprintf("Your request for %s has expired", r.Scope)
	case pam.EventRequestReminded:
		return fmt.Sprintf("Reminder: %s still waits for a decision on %s for %s", r.Requester, r.Scope, r.Duration)
	case pam.EventRequestEscalated:
		return fmt.Sprintf("Escalated to you: %s requests %s for %s", r.Requester, r.Scope, r.Duration)
	case pam.EventRequestBreakGlass:
		return fmt.Sprintf("Break-glass: %s took %s for %s without approval; review it", r.Requester, r.Scope, r.Duration)
	case pam.EventRequestBreakGlassOverdue:
		return fmt.Sprintf("Overdue: review %s's break-glass use of %s", r.Requester, r.Scope)
	case pam.EventRequestBreakGlassConfirmed:
		return fmt.Sprintf("Your break-glass use of %s was confirmed", r.Scope)
	case pam.EventRequestBreakGlassFlagged:
		return fmt.Sprintf("Your break-glass use of %s was flagged", r.Scope)
	}
	return fmt.Sprintf("%s: %s", x.Type, r.Scope)
}

func (n *Notifier) send(ctx context.Context, x pam.Notification, recipient string) error {
	to, msg, err := n.Compose(x, recipient)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, n.opts.Timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", n.opts.Addr)
	if err != nil {
		return err
	}
	if n.opts.Security == ImplicitTLS {
		conn = tls.Client(conn, n.opts.TLSConfig)
	}
	// net/smtp has no contexts: closing the connection when ctx ends
	// stands in, with a deadline a little later as a backstop.
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl.Add(time.Second))
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c, err := smtp.NewClient(conn, n.host)
	if err != nil {
		conn.Close()
		return ctxErr(ctx, err)
	}
	defer c.Close()
	if err := c.Hello(n.opts.Hello); err != nil {
		return ctxErr(ctx, err)
	}
	if n.opts.Security == StartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return errors.New("the server does not offer STARTTLS")
		}
		if err := c.StartTLS(n.opts.TLSConfig); err != nil {
			return ctxErr(ctx, err)
		}
	}
	auth := n.opts.Auth
	if n.opts.Username != "" {
		auth = smtp.PlainAuth("", n.opts.Username, n.opts.Password, n.host)
	}
	if auth != nil {
		if err := c.Auth(auth); err != nil {
			return ctxErr(ctx, fmt.Errorf("authentication: %w", err))
		}
	}
	if err := c.Mail(n.from.Address); err != nil {
		return ctxErr(ctx, err)
	}
	if err := c.Rcpt(to); err != nil {
		return ctxErr(ctx, err)
	}
	w, err := c.Data()
	if err != nil {
		return ctxErr(ctx, err)
	}
	if _, err := w.Write(msg); err != nil {
		return ctxErr(ctx, err)
	}
	if err := w.Close(); err != nil {
		return ctxErr(ctx, err)
	}
	return ctxErr(ctx, c.Quit())
}

// ctxErr prefers the context's error: a closed connection is its symptom.
func ctxErr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return err
}

// XOAUTH2 returns an Auth for SASL XOAUTH2 (Google's and Microsoft's
// OAuth 2.0 mechanism for SMTP): user is the mailbox's address, tokens
// gives an access token for each connection (an oauth2.TokenSource
// refreshes it when it expires; wrap it in oauth2.ReuseTokenSource to
// reuse one until then). Like AUTH PLAIN, it sends the token only over
// TLS or to localhost. A refused token fails the send with the server's
// answer; the next send asks tokens again.
func XOAUTH2(user string, tokens oauth2.TokenSource) smtp.Auth {
	return &xoauth2{user: user, tokens: tokens}
}

type xoauth2 struct {
	user   string
	tokens oauth2.TokenSource
}

func (a *xoauth2) Start(server *smtp.ServerInfo) (string, []byte, error) {
	if !server.TLS && server.Name != "localhost" && server.Name != "127.0.0.1" && server.Name != "::1" {
		return "", nil, errors.New("XOAUTH2 sends a token: only over TLS, or to localhost")
	}
	tok, err := a.tokens.Token()
	if err != nil {
		return "", nil, fmt.Errorf("XOAUTH2: the token source: %w", err)
	}
	if tok.AccessToken == "" {
		return "", nil, errors.New("XOAUTH2: the token source gave no access token")
	}
	return "XOAUTH2", []byte("user=" + a.user + "\x01auth=Bearer " + tok.AccessToken + "\x01\x01"), nil
}

// Next answers the server's challenge, which in XOAUTH2 only ever
// carries an error (JSON): the protocol wants an empty answer, after
// which the server refuses with its final status.
func (a *xoauth2) Next(_ []byte, more bool) ([]byte, error) {
	if more {
		return []byte{}, nil
	}
	return nil, nil
}
