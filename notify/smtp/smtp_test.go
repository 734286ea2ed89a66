package smtp_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	netsmtp "net/smtp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
	"golang.org/x/oauth2"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/notify/smtp"
	"github.com/zerostanding/pam/store/memory"
)

// server is a real SMTP server (github.com/emersion/go-smtp) with
// STARTTLS and AUTH PLAIN, recording what it accepts.
type server struct {
	mu      sync.Mutex
	mails   []received
	refuse  bool
	srv     *gosmtp.Server
	l       net.Listener
	addr    string
	tls     *tls.Config
	rootCAs *x509.CertPool
	token   string // the access token XOAUTH2 takes
}

type received struct {
	from, to string
	msg      *mail.Message
	body     []byte
}

func newTLS(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}

// start listens on addr ("127.0.0.1:0" for any port).
func (s *server) start(t *testing.T, addr string) {
	t.Helper()
	if s.tls == nil {
		s.tls, s.rootCAs = newTLS(t)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s.addr, s.l = l.Addr().String(), l
	s.srv = gosmtp.NewServer(s)
	s.srv.Domain, s.srv.TLSConfig = "localhost", s.tls
	go s.srv.Serve(l)
	t.Cleanup(func() { s.srv.Close() })
}

// stop closes the listener itself too: Close may come before Serve has
// taken the listener.
func (s *server) stop() {
	s.l.Close()
	s.srv.Close()
}

func (s *server) NewSession(*gosmtp.Conn) (gosmtp.Session, error) { return &session{s: s}, nil }

func (s *server) received() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.mails...)
}

type session struct {
	s        *server
	authed   bool
	from, to string
}

func (x *session) AuthMechanisms() []string { return []string{sasl.Plain, "XOAUTH2"} }
func (x *session) Auth(mech string) (sasl.Server, error) {
	if mech == "XOAUTH2" {
		return &xoauth2Server{x: x}, nil
	}
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != "pam" || pass != "secret" {
			return errors.New("bad credentials")
		}
		x.authed = true
		return nil
	}), nil
}

// xoauth2Server is the server side of SASL XOAUTH2 as Exchange Online and
// Gmail speak it: the initial response "user=U\x01auth=Bearer T\x01\x01";
// a bad token gets a JSON error challenge, the client answers it empty,
// and the server refuses.
type xoauth2Server struct {
	x      *session
	failed bool
}

func (a *xoauth2Server) Next(resp []byte) ([]byte, bool, error) {
	if a.failed {
		if len(resp) != 0 {
			return nil, true, errors.New("the answer to an error challenge must be empty")
		}
		return nil, true, errors.New("5.7.3 invalid token")
	}
	if resp == nil {
		return []byte{}, false, nil // no initial response: ask for it
	}
	user, rest, _ := strings.Cut(string(resp), "\x01")
	auth, tail, _ := strings.Cut(rest, "\x01")
	a.x.s.mu.Lock()
	ok := user == "user=pam@contoso.com" && tail == "\x01" && auth == "auth=Bearer "+a.x.s.token
	a.x.s.mu.Unlock()
	if !ok {
		a.failed = true
		return []byte(`{"status":"401","schemes":"bearer","scope":"https://outlook.office.com/SMTP.Send"}`), false, nil
	}
	a.x.authed = true
	return nil, true, nil
}

func (x *session) Mail(from string, _ *gosmtp.MailOptions) error {
	if !x.authed {
		return gosmtp.ErrAuthRequired
	}
	x.from = from
	return nil
}
func (x *session) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	x.s.mu.Lock()
	defer x.s.mu.Unlock()
	if x.s.refuse {
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	x.to = to
	return nil
}
func (x *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	msg, err := mail.ReadMessage(strings.NewReader(string(raw)))
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(msg.Body)
	x.s.mu.Lock()
	x.s.mails = append(x.s.mails, received{from: x.from, to: x.to, msg: msg, body: body})
	x.s.mu.Unlock()
	return nil
}
func (x *session) Reset()        {}
func (x *session) Logout() error { return nil }

func (s *server) options() smtp.Options {
	return smtp.Options{Addr: s.addr, From: "PAM <pam@contoso.com>", Username: "pam", Password: "secret",
		TLSConfig: &tls.Config{RootCAs: s.rootCAs, ServerName: "127.0.0.1"}, BaseURL: "https://pam.contoso.com", Timeout: 2 * time.Second}
}

func note(id string) pam.Notification {
	return pam.Notification{ID: id, Type: pam.EventRequestSubmitted, Recipients: []string{"bob@contoso.com"}, Attempt: 1,
		Request: pam.Request{ID: "req_1", Requester: "alice@contoso.com", Scope: pam.TaskScope("New-MoveRequest"), Reason: "<b>leaver</b> & co", Ticket: "INC-7", Duration: 2 * time.Hour}}
}

func TestSendsOverStartTLSWithAuth(t *testing.T) {
	s := &server{}
	s.start(t, "127.0.0.1:0")
	n, err := smtp.New(s.options())
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(context.Background(), note("msg_1")); err != nil {
		t.Fatal(err)
	}
	got := s.received()
	if len(got) != 1 || got[0].from != "pam@contoso.com" || got[0].to != "bob@contoso.com" {
		t.Fatalf("received %+v", got)
	}
	h := got[0].msg.Header
	subject, _ := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
	if subject != "[PAM] alice@contoso.com requests task:New-MoveRequest for 2h0m0s" || h.Get("Message-ID") != "<msg_1@pam>" {
		t.Errorf("headers: subject %q, message-id %q", subject, h.Get("Message-ID"))
	}
	_, params, _ := mime.ParseMediaType(h.Get("Content-Type"))
	mr := multipart.NewReader(strings.NewReader(string(got[0].body)), params["boundary"])
	parts := map[string]string{}
	for {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		b, _ := io.ReadAll(p) // multipart undoes quoted-printable
		parts[strings.Split(p.Header.Get("Content-Type"), ";")[0]] = string(b)
	}
	if text := parts["text/plain"]; !strings.Contains(text, "Reason:    <b>leaver</b> & co") || !strings.Contains(text, "Review it: https://pam.contoso.com/requests/req_1") || !strings.Contains(text, "Ticket:    INC-7") {
		t.Errorf("text part:\n%s", text)
	}
	if html := parts["text/html"]; !strings.Contains(html, "&lt;b&gt;leaver&lt;/b&gt; &amp; co") || !strings.Contains(html, `href="https://pam.contoso.com/requests/req_1"`) {
		t.Errorf("html part:\n%s", html)
	}
}

func TestServerThatRefusesHangsOrLacksTLS(t *testing.T) {
	s := &server{refuse: true}
	s.start(t, "127.0.0.1:0")
	n, _ := smtp.New(s.options())
	if err := n.Notify(context.Background(), note("msg_1")); err == nil || !strings.Contains(err.Error(), "550") {
		t.Errorf("a refusing server: %v", err)
	}

	// A server that accepts the connection and never speaks.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	opts := s.options()
	opts.Addr, opts.Timeout = l.Addr().String(), 300*time.Millisecond
	n, _ = smtp.New(opts)
	start := time.Now()
	if err := n.Notify(context.Background(), note("msg_1")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a hanging server: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the timeout did not cut the hanging server off: %v", d)
	}

	plain := &server{}
	plain.start(t, "127.0.0.1:0")
	plain.srv.TLSConfig = nil
	opts = plain.options()
	n, _ = smtp.New(opts)
	if err := n.Notify(context.Background(), note("msg_1")); err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Errorf("a server without STARTTLS: %v", err)
	}
	bad := s.options()
	bad.Address = func(string) (string, error) { return "not an address", nil }
	n, _ = smtp.New(bad)
	if err := n.Notify(context.Background(), note("msg_1")); err == nil {
		t.Error("a recipient without an address was sent")
	}
	for name, o := range map[string]smtp.Options{"no port": {Addr: "mail", From: "a@b"}, "bad from": {Addr: "mail:25", From: "nobody"}, "bad base": {Addr: "mail:25", From: "a@b", BaseURL: "ftp://x"}} {
		if _, err := smtp.New(o); !errors.Is(err, pam.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestMailArrivesAfterAnOutage: the server is down when requests are
// made, comes up, goes down again in the middle, and comes back; the
// outbox retries until every approver has every email, once each.
func TestMailArrivesAfterAnOutage(t *testing.T) {
	s := &server{}
	s.start(t, "127.0.0.1:0")
	addr := s.addr
	s.stop() // down from the start
	n, err := smtp.New(s.options())
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewMock()
	clk.Set(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC))
	dir, _ := pam.NewStaticDirectory(map[string][]string{"admins": {"admin@contoso.com"}, "approvers": {"bob@contoso.com", "carol@contoso.com"}})
	m, err := pam.New(memory.New(), dir, &pam.Options{Clock: clk, AdminGroup: "admins", OnError: func(error) {},
		Notifiers: []pam.NotifierConfig{{Name: "mail", Notifier: n, MaxAttempts: 20, MinBackoff: time.Minute, MaxBackoff: 10 * time.Minute}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := pam.WithActor(context.Background(), "admin@contoso.com")
	if _, err := m.CreatePolicy(ctx, pam.Policy{ID: "p", Scope: pam.TaskScope("t"), Approval: pam.Manual, ApproverGroups: []pam.ApproverGroup{{Group: "approvers"}}}); err != nil {
		t.Fatal(err)
	}
	submit := func(n int) {
		for i := range n {
			if _, err := m.Submit(pam.WithActor(context.Background(), "user"+string(rune('a'+i))+"@contoso.com"), pam.RequestInput{Scope: pam.TaskScope("t"), Reason: "r"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	deliver := func() {
		for {
			k, err := m.Deliver(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if k == 0 {
				return
			}
		}
	}
	submit(5)
	for range 3 { // an outage of three retry rounds
		deliver()
		clk.Add(10 * time.Minute)
	}
	if got := len(s.received()); got != 0 {
		t.Fatalf("%d mails while the server was down", got)
	}
	s.start(t, addr)
	deliver()
	if got := len(s.received()); got != 10 {
		t.Fatalf("%d mails after the server came up, want 10", got)
	}
	// A restart in the middle: down again for new requests, then up.
	submit(3)
	s.stop()
	deliver()
	clk.Add(10 * time.Minute)
	s.start(t, addr)
	deliver()
	got := s.received()
	ids := map[string]int{}
	for _, r := range got {
		ids[r.msg.Header.Get("Message-ID")]++
	}
	if len(got) != 16 || len(ids) != 16 {
		t.Errorf("%d mails, %d distinct, want 16 of each", len(got), len(ids))
	}
	failed, _, err := m.Messages(pam.WithActor(context.Background(), "admin@contoso.com"), pam.MessageFilter{States: []pam.MessageState{pam.MessagePending, pam.MessageFailed}})
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != 0 {
		t.Errorf("%d messages not delivered", len(failed))
	}
	t.Logf("%d mails delivered through two outages, %d distinct Message-IDs", len(got), len(ids))
}

// TestInvisibleCharactersShown: a right-to-left override or a zero-width
// space in user text shows as its code point in the subject and both
// bodies, so the approver reads what was recorded.
func TestInvisibleCharactersShown(t *testing.T) {
	n, err := smtp.New(smtp.Options{Addr: "localhost:25", From: "pam@contoso.com", Security: smtp.Plaintext, BaseURL: "https://pam.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	x := note("msg_1")
	x.Request.Reason = "rotate key \u202egnp.exe"
	x.Request.Requester = "ali\u200bce@contoso.com"
	x.Request.Ticket = "INC\u20667"
	_, msg, err := n.Compose(x, "bob@contoso.com")
	if err != nil {
		t.Fatal(err)
	}
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	subject, _ := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
	if !strings.Contains(subject, "ali<U+200B>ce@contoso.com") {
		t.Errorf("subject %q", subject)
	}
	_, params, _ := mime.ParseMediaType(m.Header.Get("Content-Type"))
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		body, _ := io.ReadAll(quotedprintable.NewReader(p))
		for _, want := range []string{"rotate key <U+202E>gnp.exe", "INC<U+2066>7"} {
			if p.Header.Get("Content-Type") == "text/html; charset=utf-8" {
				want = strings.NewReplacer("<", "&lt;", ">", "&gt;", "+", "&#43;").Replace(want)
			}
			if !strings.Contains(string(body), want) {
				t.Errorf("%s part lacks %q:\n%s", p.Header.Get("Content-Type"), want, body)
			}
		}
		if bytes.ContainsAny(body, "\u202e\u200b\u2066") {
			t.Errorf("%s part keeps an invisible character", p.Header.Get("Content-Type"))
		}
	}
}

// tokenSource hands out "token-1", "token-2", … one per call.
type tokenSource struct {
	mu sync.Mutex
	n  int
}

func (s *tokenSource) Token() (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	return &oauth2.Token{AccessToken: fmt.Sprintf("token-%d", s.n), Expiry: time.Now().Add(time.Hour)}, nil
}

// TestXOAUTH2: mail sent with an OAuth 2.0 access token over STARTTLS; a
// refused token fails the send with the server's answer, and the next
// send asks the token source again.
func TestXOAUTH2(t *testing.T) {
	s := &server{token: "token-2"}
	s.start(t, "127.0.0.1:0")
	tokens := &tokenSource{}
	opts := s.options()
	opts.Username, opts.Password = "", ""
	opts.Auth = smtp.XOAUTH2("pam@contoso.com", tokens)
	n, err := smtp.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	err = n.Notify(context.Background(), note("msg_1"))
	if err == nil || !strings.Contains(err.Error(), "invalid token") {
		t.Fatalf("with a refused token: %v", err)
	}
	if len(s.received()) != 0 {
		t.Fatal("mail accepted with a refused token")
	}
	if err := n.Notify(context.Background(), note("msg_1")); err != nil {
		t.Fatalf("with the next token: %v", err)
	}
	if got := s.received(); len(got) != 1 || got[0].to != "bob@contoso.com" || tokens.n != 2 {
		t.Errorf("received %d mails after %d tokens", len(got), tokens.n)
	}
	// Never in the clear to another host; never with Username as well.
	if _, _, err := opts.Auth.Start(&netsmtp.ServerInfo{Name: "mail.example.com", Auth: []string{"XOAUTH2"}}); err == nil {
		t.Error("XOAUTH2 would send a token in the clear")
	}
	if _, err := smtp.New(smtp.Options{Addr: "mail.example.com:587", From: "pam@contoso.com", Username: "u", Auth: opts.Auth}); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("Auth and Username: %v", err)
	}
}
