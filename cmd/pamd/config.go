package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/zerostanding/pam"
)

// errConfig marks a configuration that cannot be used: pamd exits 2.
var errConfig = errors.New("pamd: configuration")

// Config is pamd's configuration file (YAML), with the environment
// overrides that Load applies on top of it. Secrets (a DSN with a
// password, SMTP and webhook credentials, API tokens) are never written
// in the file itself: a Secret names an environment variable or a file.
type Config struct {
	// Listen is the address to serve on. Default: 127.0.0.1:8080.
	// $PAMD_LISTEN overrides it.
	Listen string `json:"listen"`
	// BaseURL is where people reach the approver page
	// ("https://pam.example.com"): the links in notifications and the
	// sign-in's return address. $PAMD_BASE_URL overrides it.
	BaseURL string      `json:"base_url"`
	Store   StoreConfig `json:"store"`
	// AdminGroup may manage policies, read the whole trail and the
	// outbox. SystemAccounts are exempt from Guard (Purview's system
	// accounts).
	AdminGroup     string          `json:"admin_group"`
	SystemAccounts []string        `json:"system_accounts"`
	Directory      DirectoryConfig `json:"directory"`
	Auth           AuthConfig      `json:"auth"`
	Notify         NotifyConfig    `json:"notify"`
	Audit          AuditConfig     `json:"audit"`
	// Apply is the catalog and the policies, in the format of
	// `pamctl apply` (pam.Config), applied at every start with
	// Manager.Apply: what the file says is what the service enforces.
	// Without it, policies are managed through the API.
	Apply *pam.Config `json:"apply"`
	// ApplyAs is the identity the trail records as applying Apply, an
	// admin (a member of AdminGroup). Required with Apply.
	ApplyAs string `json:"apply_as"`
	// Ops configures the endpoints for operators: health and metrics.
	Ops OpsConfig `json:"ops"`
	// LogLevel is the least level logged: debug, info (default), warn
	// or error. Logs are JSON on standard error.
	LogLevel string `json:"log_level"`
	// ShutdownTimeout bounds the drain on SIGTERM or SIGINT: in-flight
	// requests, then the audit sinks catching up with the trail.
	// Default: 30s.
	ShutdownTimeout Duration `json:"shutdown_timeout"`
}

// OpsConfig configures /livez and /readyz (pamhttp.Health) and the
// Prometheus /metrics of the engine's OpenTelemetry metrics. None of
// them asks for a token: probes and scrapers carry none.
type OpsConfig struct {
	// Listen, when set, serves them on their own address (a port that
	// only the platform reaches), and not on Listen. $PAMD_OPS_LISTEN
	// overrides it.
	Listen string `json:"listen"`
	// Metrics serves /metrics. Default: true.
	Metrics *bool `json:"metrics"`
	// MaxOutboxAge fails readiness while the oldest pending
	// notification is older: approvers are not hearing of requests.
	// Default: 10m; "0s" turns the check off.
	MaxOutboxAge *Duration `json:"max_outbox_age"`
}

// StoreConfig picks the store: SQLite (the default, a file) or
// PostgreSQL (several pamd replicas on one database).
type StoreConfig struct {
	// SQLite is the database file. Default: pam.db in the working
	// directory. $PAMD_SQLITE overrides it.
	SQLite string `json:"sqlite"`
	// Postgres is the DSN of the PostgreSQL database, a secret (it may
	// hold a password). $PAMD_POSTGRES_DSN overrides it.
	Postgres Secret `json:"postgres"`
	// Schema is the PostgreSQL schema. Default: the search path's.
	Schema string `json:"schema"`
}

// DirectoryConfig says who is in which group.
type DirectoryConfig struct {
	// Static lists each group's members.
	Static map[string][]string `json:"static"`
	// LDAP reads groups from Active Directory or LDAP (directory/ldap)
	// instead.
	LDAP *LDAPConfig `json:"ldap"`
}

// LDAPConfig configures directory/ldap.
type LDAPConfig struct {
	URL           string   `json:"url"`
	StartTLS      bool     `json:"start_tls"`
	BindDN        string   `json:"bind_dn"`
	BindPassword  Secret   `json:"bind_password"`
	UserBaseDN    string   `json:"user_base_dn"`
	UserAttribute string   `json:"user_attribute"`
	GroupBaseDN   string   `json:"group_base_dn"`
	InChain       bool     `json:"in_chain"`
	CacheTTL      Duration `json:"cache_ttl"`
}

// AuthConfig says who is calling. Each request is authenticated by the
// first method that recognises it; none configured refuses to start.
type AuthConfig struct {
	// TokensFile holds API bearer tokens, one "TOKEN IDENTITY" per line
	// (# comments and blank lines allowed), for pamctl and automation.
	// A file that group or others may write is refused, one they may read
	// is warned about. Tokens are kept hashed in memory and looked up by
	// hash.
	TokensFile string `json:"tokens_file"`
	// OIDC signs people in with an OpenID provider (auth/oidc): the
	// approver page's sign-in under /auth/, and bearer tokens the
	// provider issued for this service.
	OIDC *OIDCConfig `json:"oidc"`
}

// OIDCConfig configures auth/oidc.
type OIDCConfig struct {
	Issuer       string `json:"issuer"`
	ClientID     string `json:"client_id"`
	ClientSecret Secret `json:"client_secret"`
	// RedirectURL defaults to BaseURL + "/auth/callback".
	RedirectURL string `json:"redirect_url"`
	// SessionKey is the base64 of 32 random bytes, the same on every
	// replica (openssl rand -base64 32).
	SessionKey    Secret   `json:"session_key"`
	Scopes        []string `json:"scopes"`
	UsernameClaim string   `json:"username_claim"`
	// GroupsClaim, when set, makes the claim the directory of the person
	// signed in; directory.static answers for everyone else.
	GroupsClaim string   `json:"groups_claim"`
	SessionTTL  Duration `json:"session_ttl"`
}

// NotifyConfig configures where notifications go. Each configured
// notifier gets every notification through the outbox.
type NotifyConfig struct {
	SMTP    *SMTPConfig    `json:"smtp"`
	Webhook *WebhookConfig `json:"webhook"`
	// Teams posts Adaptive Cards to a Teams Workflows webhook; its URL
	// is a secret (it carries the flow's key).
	Teams *struct {
		URL Secret `json:"url"`
	} `json:"teams"`
}

// SMTPConfig sends email. See notify/smtp.
type SMTPConfig struct {
	Addr     string `json:"addr"`
	From     string `json:"from"`
	Username string `json:"username"`
	Password Secret `json:"password"`
	// OAuth2 authenticates with XOAUTH2 instead of a password (Exchange
	// Online, Gmail): a client-credentials grant at TokenURL. Username
	// is then the mailbox.
	OAuth2 *OAuth2Config `json:"oauth2"`
	// Security: "starttls" (default), "tls" or "none" (localhost only).
	Security string `json:"security"`
	// Domain maps identities to addresses: IDENTITY@Domain. Without it
	// identities must be addresses.
	Domain string `json:"domain"`
}

// OAuth2Config is an OAuth 2.0 client-credentials grant
// (golang.org/x/oauth2/clientcredentials): for Exchange Online, TokenURL
// https://login.microsoftonline.com/TENANT/oauth2/v2.0/token and scope
// https://outlook.office365.com/.default.
type OAuth2Config struct {
	TokenURL     string   `json:"token_url"`
	ClientID     string   `json:"client_id"`
	ClientSecret Secret   `json:"client_secret"`
	Scopes       []string `json:"scopes"`
}

// WebhookConfig posts JSON (or Slack-format) messages. See
// notify/webhook.
type WebhookConfig struct {
	URL    Secret `json:"url"` // a secret: chat webhook URLs carry their key
	Secret Secret `json:"secret"`
	// StandardSecret also signs as Standard Webhooks do ("whsec_…").
	StandardSecret Secret `json:"standard_secret"`
	// Format: "json" (default) or "slack".
	Format string `json:"format"`
}

// AuditConfig adds audit sinks beside the store's trail.
type AuditConfig struct {
	// File appends the trail to JSON Lines files (sinks.File); Required
	// makes Guard fail closed while it cannot be written.
	File *struct {
		Path     string `json:"path"`
		Required bool   `json:"required"`
	} `json:"file"`
	// Log writes every event to pamd's log.
	Log bool `json:"log"`
}

// Secret is a value read from the environment (Env) or a file (File,
// trailing newline trimmed), never written in the configuration.
type Secret struct {
	Env  string `json:"env"`
	File string `json:"file"`
}

// UnmarshalJSON refuses a secret written inline.
func (s *Secret) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		return fmt.Errorf("a secret is never written in the configuration: give {env: NAME} or {file: PATH}")
	}
	type plain Secret
	return strictJSON(b, (*plain)(s))
}

// IsSet reports whether the secret names a source.
func (s Secret) IsSet() bool { return s.Env != "" || s.File != "" }

// Value reads the secret. An unset variable, an empty one or an
// unreadable file is an error: a secret that was asked for is never
// silently empty.
func (s Secret) Value(getenv func(string) string) (string, error) {
	switch {
	case s.Env != "" && s.File != "":
		return "", fmt.Errorf("%w: a secret names both env %s and file %s", errConfig, s.Env, s.File)
	case s.Env != "":
		v := getenv(s.Env)
		if v == "" {
			return "", fmt.Errorf("%w: the environment variable %s is not set", errConfig, s.Env)
		}
		return v, nil
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			return "", fmt.Errorf("%w: secret file: %v", errConfig, err)
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			return "", fmt.Errorf("%w: the secret file %s is empty", errConfig, s.File)
		}
		return v, nil
	}
	return "", nil
}

// Duration is a time.Duration written as a Go duration ("30s").
type Duration time.Duration

// UnmarshalJSON reads "30s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is written as a string such as \"30s\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("%q is not a duration such as \"30s\"", s)
	}
	*d = Duration(v)
	return nil
}

func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// Load reads the configuration at path, applies the environment
// overrides and the defaults, and checks it. Unknown keys are errors.
func Load(path string, getenv func(string) string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errConfig, err)
	}
	var c Config
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errConfig, path, err)
	}
	for env, field := range map[string]*string{
		"PAMD_LISTEN": &c.Listen, "PAMD_BASE_URL": &c.BaseURL, "PAMD_SQLITE": &c.Store.SQLite, "PAMD_OPS_LISTEN": &c.Ops.Listen,
	} {
		if v := getenv(env); v != "" {
			*field = v
		}
	}
	if getenv("PAMD_POSTGRES_DSN") != "" {
		c.Store.Postgres = Secret{Env: "PAMD_POSTGRES_DSN"}
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = Duration(30 * time.Second)
	}
	if c.Ops.Metrics == nil {
		yes := true
		c.Ops.Metrics = &yes
	}
	if c.Ops.MaxOutboxAge == nil {
		d := Duration(10 * time.Minute)
		c.Ops.MaxOutboxAge = &d
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errConfig, path, err)
	}
	return &c, nil
}

func (c *Config) check() error {
	if c.Store.SQLite != "" && c.Store.Postgres.IsSet() {
		return errors.New("store: give sqlite or postgres, not both")
	}
	if c.Store.SQLite == "" && !c.Store.Postgres.IsSet() {
		c.Store.SQLite = "pam.db"
	}
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("base_url %q: want an absolute http(s) URL", c.BaseURL)
		}
		c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	}
	if c.Auth.TokensFile == "" && c.Auth.OIDC == nil {
		return errors.New("auth: no way to tell who is calling: set auth.tokens_file or auth.oidc")
	}
	if o := c.Auth.OIDC; o != nil {
		if o.Issuer == "" || o.ClientID == "" || !o.SessionKey.IsSet() {
			return errors.New("auth.oidc: issuer, client_id and session_key are required")
		}
		if o.RedirectURL == "" {
			if c.BaseURL == "" {
				return errors.New("auth.oidc: set redirect_url, or base_url for its default")
			}
			o.RedirectURL = c.BaseURL + "/auth/callback"
		}
	}
	if l := c.Directory.LDAP; l != nil {
		if len(c.Directory.Static) > 0 {
			return errors.New("directory: give static or ldap, not both")
		}
		if l.URL == "" || l.UserBaseDN == "" || l.GroupBaseDN == "" {
			return errors.New("directory.ldap: url, user_base_dn and group_base_dn are required")
		}
	} else if len(c.Directory.Static) == 0 {
		return errors.New("directory: no groups: set directory.static or directory.ldap")
	}
	if c.AdminGroup != "" && c.Directory.LDAP == nil {
		if _, ok := c.Directory.Static[c.AdminGroup]; !ok {
			return fmt.Errorf("admin_group %q is not a group of the directory", c.AdminGroup)
		}
	}
	if c.Apply != nil && c.ApplyAs == "" {
		return errors.New("apply_as: name the admin the trail records as applying the policies")
	}
	if s := c.Notify.SMTP; s != nil {
		switch {
		case s.Addr == "" || s.From == "":
			return errors.New("notify.smtp: addr and from are required")
		case s.OAuth2 != nil && s.Password.IsSet():
			return errors.New("notify.smtp: give password or oauth2, not both")
		case s.OAuth2 != nil && (s.Username == "" || s.OAuth2.TokenURL == "" || s.OAuth2.ClientID == "" || !s.OAuth2.ClientSecret.IsSet()):
			return errors.New("notify.smtp.oauth2: username (the mailbox), token_url, client_id and client_secret are required")
		}
	}
	if w := c.Notify.Webhook; w != nil {
		if !w.URL.IsSet() {
			return errors.New("notify.webhook: url is required ({env: NAME} or {file: PATH})")
		}
		if w.Format != "" && w.Format != "json" && w.Format != "slack" {
			return fmt.Errorf("notify.webhook.format %q: want json or slack", w.Format)
		}
	}
	if _, ok := logLevels[c.LogLevel]; !ok {
		return fmt.Errorf("log_level %q: want debug, info, warn or error", c.LogLevel)
	}
	if tm := c.Notify.Teams; tm != nil && !tm.URL.IsSet() {
		return errors.New("notify.teams: url is required ({env: NAME} or {file: PATH})")
	}
	if f := c.Audit.File; f != nil && f.Path == "" {
		return errors.New("audit.file: path is required")
	}
	return nil
}

var logLevels = map[string]slog.Level{"": slog.LevelInfo, "debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}
