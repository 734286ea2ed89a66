package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/auth/oidc"
	"github.com/zerostanding/pam/directory/ldap"
	"github.com/zerostanding/pam/notify/smtp"
	"github.com/zerostanding/pam/notify/teams"
	"github.com/zerostanding/pam/notify/webhook"
	"github.com/zerostanding/pam/pamhttp"
	"github.com/zerostanding/pam/sinks"
	"github.com/zerostanding/pam/store/postgres"
	"github.com/zerostanding/pam/store/sqlite"
)

// Service is a configured pamd: the store, the Manager with its
// background work, and the HTTP handler.
type Service struct {
	cfg     *Config
	log     *slog.Logger
	m       *pam.Manager
	store   io.Closer
	handler http.Handler // the API and the page, and ops unless apart
	ops     http.Handler // /livez, /readyz and /metrics
	meters  *sdkmetric.MeterProvider
	stop    context.CancelFunc // ends m.Run
	ran     chan struct{}      // closed when m.Run returned
}

// Open builds the service that cfg describes and starts the Manager's
// background work (outbox, sweeps, sinks). Close it.
func Open(ctx context.Context, cfg *Config, getenv func(string) string, log *slog.Logger) (*Service, error) {
	s := &Service{cfg: cfg, log: log}
	ok := false
	defer func() {
		if !ok && s.store != nil {
			s.store.Close()
		}
	}()
	store, err := s.openStore(ctx, getenv)
	if err != nil {
		return nil, err
	}
	static, err := pam.NewStaticDirectory(cfg.Directory.Static)
	if err != nil {
		return nil, fmt.Errorf("%w: directory: %v", errConfig, err)
	}
	var dir pam.Directory = static
	if l := cfg.Directory.LDAP; l != nil {
		pw, err := l.BindPassword.Value(getenv)
		if err != nil {
			return nil, fmt.Errorf("directory.ldap.bind_password: %w", err)
		}
		ld, err := ldap.New(ldap.Config{URL: l.URL, StartTLS: l.StartTLS, BindDN: l.BindDN, BindPassword: pw, UserBaseDN: l.UserBaseDN,
			UserAttribute: l.UserAttribute, GroupBaseDN: l.GroupBaseDN, InChain: l.InChain, CacheTTL: time.Duration(l.CacheTTL)})
		if err != nil {
			return nil, fmt.Errorf("%w: directory.ldap: %v", errConfig, err)
		}
		dir = ld
	}
	tokens, err := s.tokenAuth()
	if err != nil {
		return nil, err
	}
	var sso *oidc.Auth
	if o := cfg.Auth.OIDC; o != nil {
		if sso, err = s.openOIDC(ctx, o, getenv); err != nil {
			return nil, err
		}
		if o.GroupsClaim != "" {
			dir = sso.Directory(dir)
		}
	}
	auth := func(r *http.Request) (string, error) {
		if tokens != nil {
			if who, ok := tokens(r); ok {
				return who, nil
			}
		}
		if sso != nil {
			return sso.Authenticate(r)
		}
		return "", errors.New("not signed in: send Authorization: Bearer TOKEN")
	}
	opsMux := http.NewServeMux()
	opts := &pam.Options{AdminGroup: cfg.AdminGroup, SystemAccounts: cfg.SystemAccounts, Logger: log}
	if *cfg.Ops.Metrics {
		registry := prometheus.NewRegistry()
		exporter, err := otelprom.New(otelprom.WithRegisterer(registry))
		if err != nil {
			return nil, err
		}
		s.meters = sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
		opts.MeterProvider = s.meters
		opsMux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	}
	if opts.Notifiers, err = s.notifiers(getenv); err != nil {
		return nil, err
	}
	if opts.AuditSinks, err = s.sinks(); err != nil {
		return nil, err
	}
	if s.m, err = pam.New(store, dir, opts); err != nil {
		return nil, err
	}
	if cfg.Apply != nil {
		if err := s.apply(ctx); err != nil {
			s.m.Close(ctx)
			return nil, err
		}
	}
	popts := pamhttp.Options{Authenticate: auth}
	if sso != nil {
		popts.SignInURL = "/auth/login"
	}
	api, err := pamhttp.New(s.m, popts)
	if err != nil {
		s.m.Close(ctx)
		return nil, err
	}
	health, err := pamhttp.Health(s.m, pamhttp.HealthOptions{MaxOutboxAge: time.Duration(*cfg.Ops.MaxOutboxAge)})
	if err != nil {
		s.m.Close(ctx)
		return nil, err
	}
	opsMux.Handle("GET /livez", health)
	opsMux.Handle("GET /readyz", health)
	mux := http.NewServeMux()
	mux.Handle("/", api)
	if sso != nil {
		mux.Handle("/auth/", http.StripPrefix("/auth", sso.Handler()))
	}
	if cfg.Ops.Listen == "" {
		mux.Handle("GET /livez", opsMux)
		mux.Handle("GET /readyz", opsMux)
		mux.Handle("GET /metrics", opsMux)
	}
	s.ops, s.handler = opsMux, mux
	runCtx, stop := context.WithCancel(context.Background())
	s.stop, s.ran = stop, make(chan struct{})
	go func() { defer close(s.ran); s.m.Run(runCtx) }()
	ok = true
	return s, nil
}

// ServeHTTP serves the API under /api/v1/ and the approver page under /.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Manager is the service's Manager.
func (s *Service) Manager() *pam.Manager { return s.m }

// Close stops the background work, waits within ctx for the audit
// sinks to hold the trail up to its head, and closes the store.
func (s *Service) Close(ctx context.Context) error {
	s.stop()
	<-s.ran
	err := s.m.Close(ctx)
	if s.meters != nil {
		err = errors.Join(err, s.meters.Shutdown(ctx))
	}
	return errors.Join(err, s.store.Close())
}

func (s *Service) openStore(ctx context.Context, getenv func(string) string) (pam.Store, error) {
	if s.cfg.Store.Postgres.IsSet() {
		dsn, err := s.cfg.Store.Postgres.Value(getenv)
		if err != nil {
			return nil, err
		}
		st, err := postgres.Open(ctx, dsn, &postgres.Options{Schema: s.cfg.Store.Schema})
		if err != nil {
			return nil, err
		}
		s.store = st
		return st, nil
	}
	st, err := sqlite.Open(ctx, s.cfg.Store.SQLite)
	if err != nil {
		return nil, err
	}
	s.store = st
	return st, nil
}

func (s *Service) apply(ctx context.Context) error {
	plan, err := s.m.Apply(pam.WithActor(ctx, s.cfg.ApplyAs), *s.cfg.Apply, pam.ApplyOptions{})
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	for _, c := range plan.Policies {
		s.log.Info("policy applied", "action", c.Action, "policy", c.PolicyID, "changed", strings.Join(c.Changed, ","), "active_grants_cut", c.ActiveGrants)
	}
	return nil
}

func (s *Service) notifiers(getenv func(string) string) ([]pam.NotifierConfig, error) {
	var out []pam.NotifierConfig
	if c := s.cfg.Notify.SMTP; c != nil {
		pass, err := c.Password.Value(getenv)
		if err != nil {
			return nil, fmt.Errorf("notify.smtp.password: %w", err)
		}
		o := smtp.Options{Addr: c.Addr, From: c.From, Username: c.Username, Password: pass, BaseURL: s.cfg.BaseURL}
		if a := c.OAuth2; a != nil {
			secret, err := a.ClientSecret.Value(getenv)
			if err != nil {
				return nil, fmt.Errorf("notify.smtp.oauth2.client_secret: %w", err)
			}
			cc := clientcredentials.Config{ClientID: a.ClientID, ClientSecret: secret, TokenURL: a.TokenURL, Scopes: a.Scopes}
			o.Auth = smtp.XOAUTH2(c.Username, oauth2.ReuseTokenSource(nil, cc.TokenSource(context.Background())))
			o.Username = ""
		}
		switch c.Security {
		case "", "starttls":
		case "tls":
			o.Security = smtp.ImplicitTLS
		case "none":
			o.Security = smtp.Plaintext
		default:
			return nil, fmt.Errorf("%w: notify.smtp.security %q: want starttls, tls or none", errConfig, c.Security)
		}
		if d := c.Domain; d != "" {
			o.Address = func(id string) (string, error) { return id + "@" + d, nil }
		}
		n, err := smtp.New(o)
		if err != nil {
			return nil, fmt.Errorf("%w: notify.smtp: %v", errConfig, err)
		}
		out = append(out, pam.NotifierConfig{Name: "smtp", Notifier: n})
	}
	if c := s.cfg.Notify.Webhook; c != nil {
		u, err := c.URL.Value(getenv)
		if err != nil {
			return nil, fmt.Errorf("notify.webhook.url: %w", err)
		}
		secret, err := c.Secret.Value(getenv)
		if err != nil {
			return nil, fmt.Errorf("notify.webhook.secret: %w", err)
		}
		o := &webhook.Options{}
		if secret != "" {
			o.Secret = []byte(secret)
		}
		if o.StandardSecret, err = c.StandardSecret.Value(getenv); err != nil {
			return nil, fmt.Errorf("notify.webhook.standard_secret: %w", err)
		}
		if c.Format == "slack" {
			o.Format = webhook.Slack(s.cfg.BaseURL)
		}
		n, err := webhook.New(u, o)
		if err != nil {
			return nil, fmt.Errorf("%w: notify.webhook: %v", errConfig, err)
		}
		out = append(out, pam.NotifierConfig{Name: "webhook", Notifier: n})
	}
	if c := s.cfg.Notify.Teams; c != nil {
		u, err := c.URL.Value(getenv)
		if err != nil {
			return nil, fmt.Errorf("notify.teams.url: %w", err)
		}
		n, err := teams.New(u, &teams.Options{BaseURL: s.cfg.BaseURL})
		if err != nil {
			return nil, fmt.Errorf("%w: notify.teams: %v", errConfig, err)
		}
		out = append(out, pam.NotifierConfig{Name: "teams", Notifier: n})
	}
	return out, nil
}

func (s *Service) sinks() ([]pam.SinkConfig, error) {
	var out []pam.SinkConfig
	if f := s.cfg.Audit.File; f != nil {
		sink, err := sinks.OpenFile(f.Path, nil)
		if err != nil {
			return nil, fmt.Errorf("audit.file: %w", err)
		}
		out = append(out, pam.SinkConfig{Name: "file", Sink: sink, Required: f.Required})
	}
	if s.cfg.Audit.Log {
		out = append(out, pam.SinkConfig{Name: "log", Sink: sinks.NewSlog(s.log.Handler())})
	}
	return out, nil
}

// tokenAuth returns the lookup of the tokens file's bearer tokens, nil
// without a tokens file.
func (s *Service) tokenAuth() (func(*http.Request) (string, bool), error) {
	if s.cfg.Auth.TokensFile == "" {
		return nil, nil
	}
	tokens, err := loadTokens(s.cfg.Auth.TokensFile, s.log)
	if err != nil {
		return nil, err
	}
	return func(r *http.Request) (string, bool) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			return "", false
		}
		who, ok := tokens[sha256.Sum256([]byte(tok))]
		return who, ok
	}, nil
}

func (s *Service) openOIDC(ctx context.Context, o *OIDCConfig, getenv func(string) string) (*oidc.Auth, error) {
	secret, err := o.ClientSecret.Value(getenv)
	if err != nil {
		return nil, fmt.Errorf("auth.oidc.client_secret: %w", err)
	}
	key64, err := o.SessionKey.Value(getenv)
	if err != nil {
		return nil, fmt.Errorf("auth.oidc.session_key: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(key64)
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("%w: auth.oidc.session_key: want the base64 of 32 random bytes", errConfig)
	}
	a, err := oidc.New(ctx, oidc.Config{Issuer: o.Issuer, ClientID: o.ClientID, ClientSecret: secret, RedirectURL: o.RedirectURL,
		Scopes: o.Scopes, UsernameClaim: o.UsernameClaim, GroupsClaim: o.GroupsClaim, SessionKey: key, SessionTTL: time.Duration(o.SessionTTL)})
	if err != nil {
		return nil, fmt.Errorf("auth.oidc: %w", err)
	}
	return a, nil
}

// loadTokens reads a tokens file: "TOKEN IDENTITY" per line. It refuses
// a file that group or others may write, a token shorter than 16
// characters, an identity that is not valid, and a token given twice;
// it warns when group or others may read the file.
func loadTokens(path string, log *slog.Logger) (map[[32]byte]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: auth.tokens_file: %v", errConfig, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: auth.tokens_file: %v", errConfig, err)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("%w: auth.tokens_file %s may be written by others (mode %v), who could add an identity: chmod 600 it", errConfig, path, fi.Mode().Perm())
	}
	if fi.Mode().Perm()&0o044 != 0 {
		log.Warn("auth.tokens_file may be read by others: chmod 600 it", "path", path, "mode", fi.Mode().Perm().String())
	}
	out := map[[32]byte]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return nil, fmt.Errorf("%w: auth.tokens_file line %d: want TOKEN IDENTITY", errConfig, n)
		}
		if len(fields[0]) < 16 {
			return nil, fmt.Errorf("%w: auth.tokens_file line %d: a token of at least 16 characters", errConfig, n)
		}
		who, err := pam.CanonicalIdentity(fields[1])
		if err != nil {
			return nil, fmt.Errorf("%w: auth.tokens_file line %d: %v", errConfig, n, err)
		}
		h := sha256.Sum256([]byte(fields[0]))
		if _, dup := out[h]; dup {
			return nil, fmt.Errorf("%w: auth.tokens_file line %d: a token given twice", errConfig, n)
		}
		out[h] = who
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: auth.tokens_file: %v", errConfig, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: auth.tokens_file %s holds no token", errConfig, path)
	}
	return out, nil
}

// Serve serves the service on l until ctx ends (SIGTERM, SIGINT), then
// drains: it stops accepting, lets in-flight requests finish, and
// closes the service so that every audit sink holds the whole trail,
// all within cfg.ShutdownTimeout.
func Serve(ctx context.Context, l, ops net.Listener, s *Service, log *slog.Logger) error {
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	servers := []*http.Server{{Handler: s, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute, ErrorLog: errLog}}
	listeners := []net.Listener{l}
	if ops != nil {
		servers = append(servers, &http.Server{Handler: s.ops, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute, ErrorLog: errLog})
		listeners = append(listeners, ops)
	}
	served := make(chan error, len(servers))
	for i, srv := range servers {
		go func() { served <- srv.Serve(listeners[i]) }()
	}
	var serveErr error
	select {
	case serveErr = <-served:
	case <-ctx.Done():
	}
	log.Info("draining", "timeout", time.Duration(s.cfg.ShutdownTimeout).String())
	dctx, cancel := context.WithTimeout(context.Background(), time.Duration(s.cfg.ShutdownTimeout))
	defer cancel()
	var shutErr error
	for _, srv := range servers {
		shutErr = errors.Join(shutErr, srv.Shutdown(dctx))
	}
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	if shutErr != nil {
		log.Error("draining: requests still running when shutdown_timeout ended; the trail may end before their events", "error", shutErr)
	}
	// Closing has a deadline of its own: a slow drain of requests must
	// not leave the audit sinks no time to catch up.
	cctx, ccancel := context.WithTimeout(context.Background(), time.Duration(s.cfg.ShutdownTimeout))
	defer ccancel()
	closeErr := s.Close(cctx)
	if err := errors.Join(serveErr, shutErr, closeErr); err != nil {
		return err
	}
	log.Info("stopped: the audit sinks hold the trail")
	return nil
}
