// Package oidc signs people in to pamhttp with OpenID Connect: the
// sign-on Purview's users already have (Entra ID, Okta, Google,
// Keycloak, ZITADEL…).
//
//	a, err := oidc.New(ctx, oidc.Config{
//		Issuer: "https://login.microsoftonline.com/TENANT/v2.0", ClientID: id, ClientSecret: secret,
//		RedirectURL: "https://pam.example.com/auth/callback", SessionKey: key32,
//	})
//	mux.Handle("/auth/", http.StripPrefix("/auth", a.Handler()))  // /auth/login, /auth/callback, /auth/logout
//	h, err := pamhttp.New(m, pamhttp.Options{Authenticate: a.Authenticate, SignInURL: "/auth/login"})
//
// Authenticate accepts either a bearer token (Authorization: Bearer, for
// pamctl and automation) or the session cookie the sign-in sets. A
// bearer token is a JWT verified against the provider's published keys
// (JWKS, from its discovery document): its issuer, its audience (the
// client ID, or Config.Audiences), its expiry within Config.ClockSkew,
// and an asymmetric signature (none and HMAC are refused).
//
// The sign-in is the authorization code flow with PKCE (S256), a state
// and a nonce, each fresh per sign-in and kept in a sealed, short-lived
// cookie; the ID token from the code exchange is verified as above and
// its nonce checked. The session is a sealed cookie (AES-256-GCM with
// Config.SessionKey): HTTP-only, SameSite=Lax, Secure when the redirect
// URL is https, ending at Config.SessionTTL. /login takes next, where to
// go back to after signing in: a local path only ("/pam/requests/x"),
// never a URL of another host, which is what pamhttp's SignInURL sends.
//
// Directory answers group membership from the groups claim of the
// tokens the people in question signed in with (see Directory).
package oidc

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/zerostanding/pam"
)

// ErrUnauthenticated: no valid bearer token or session. Authenticate's
// errors match it.
var ErrUnauthenticated = errors.New("oidc: not signed in")

// Config configures sign-in with one OpenID provider.
type Config struct {
	// Issuer is the provider's issuer URL; its discovery document is at
	// Issuer + "/.well-known/openid-configuration".
	Issuer string
	// ClientID and ClientSecret identify this service to the provider.
	ClientID, ClientSecret string
	// RedirectURL is the absolute URL of Handler's /callback as the
	// provider redirects to it.
	RedirectURL string
	// Scopes asked at sign-in. Default: openid, profile, email.
	Scopes []string
	// UsernameClaim names the claim whose value is the person's identity
	// (canonicalised with pam.CanonicalIdentity). Default:
	// "preferred_username". A token without it is refused: there is no
	// silent fallback to another claim. Choose a claim the provider does
	// not let people change and does not reuse: Entra ID documents
	// preferred_username (the UPN) as mutable, and its "oid" or a
	// directory-synced "upn" under your control may suit better; "email"
	// is accepted only with email_verified true.
	UsernameClaim string
	// GroupsClaim names the claim listing the person's groups, for
	// Directory. Default: "groups".
	GroupsClaim string
	// Audiences a bearer token may be for. Default: ClientID.
	Audiences []string
	// ClockSkew is how far the provider's clock may be off: a token is
	// accepted up to ClockSkew after its expiry and ClockSkew before its
	// issue or not-before time. Default: 1 minute; at most 5 minutes.
	ClockSkew time.Duration
	// SessionKey seals the cookies (AES-256-GCM): 32 random bytes, the
	// same on every replica; keep it secret. Changing it signs everyone
	// out.
	SessionKey []byte
	// SessionTTL is how long a session lasts. Default: 8 hours.
	SessionTTL time.Duration
	// CookieName is the session cookie's name. Default: "pam_session".
	CookieName string
	// HTTPClient reaches the provider. Default: a client with a
	// 10-second timeout.
	HTTPClient *http.Client
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// Auth signs people in with one provider. It is safe for concurrent use.
type Auth struct {
	cfg      Config
	verifier *gooidc.IDTokenVerifier
	oauth    oauth2.Config
	aead     cipher.AEAD
	endSess  string // the provider's end_session_endpoint, if any
	secure   bool
	groups   *groupCache
}

// New discovers the provider and returns the Auth.
func New(ctx context.Context, cfg Config) (*Auth, error) {
	switch {
	case cfg.Issuer == "" || cfg.ClientID == "":
		return nil, fmt.Errorf("%w: oidc: Issuer and ClientID are required", pam.ErrInvalid)
	case len(cfg.SessionKey) != 32:
		return nil, fmt.Errorf("%w: oidc: SessionKey must be 32 bytes", pam.ErrInvalid)
	case cfg.ClockSkew < 0 || cfg.ClockSkew > 5*time.Minute:
		return nil, fmt.Errorf("%w: oidc: ClockSkew must be between 0 and 5 minutes", pam.ErrInvalid)
	case cfg.SessionTTL < 0:
		return nil, fmt.Errorf("%w: oidc: SessionTTL must not be negative", pam.ErrInvalid)
	}
	ru, err := url.Parse(cfg.RedirectURL)
	if err != nil || (ru.Scheme != "https" && ru.Scheme != "http") || ru.Host == "" {
		return nil, fmt.Errorf("%w: oidc: RedirectURL %q: want an absolute http(s) URL", pam.ErrInvalid, cfg.RedirectURL)
	}
	if cfg.ClockSkew == 0 {
		cfg.ClockSkew = time.Minute
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = 8 * time.Hour
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{gooidc.ScopeOpenID, "profile", "email"}
	}
	if cfg.UsernameClaim == "" {
		cfg.UsernameClaim = "preferred_username"
	}
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = "groups"
	}
	if len(cfg.Audiences) == 0 {
		cfg.Audiences = []string{cfg.ClientID}
	}
	if cfg.CookieName == "" {
		cfg.CookieName = "pam_session"
	}
	if cfg.HTTPClient == nil {
		// A provider that accepts and never answers must not hang the
		// key refresh for good.
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ctx = gooidc.ClientContext(ctx, cfg.HTTPClient)
	provider, err := gooidc.NewProvider(ctx, cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("oidc: discovery of %s: %w", cfg.Issuer, err)
	}
	var meta struct {
		EndSession string   `json:"end_session_endpoint"`
		Algs       []string `json:"id_token_signing_alg_values_supported"`
	}
	provider.Claims(&meta)
	block, _ := aes.NewCipher(cfg.SessionKey)
	aead, _ := cipher.NewGCM(block)
	a := &Auth{cfg: cfg, aead: aead, endSess: meta.EndSession, secure: ru.Scheme == "https", groups: &groupCache{m: map[string]groupEntry{}}}
	// The audience and the expiry are checked here (several audiences, a
	// bounded skew); the issuer and the signature by go-oidc, with the
	// provider's asymmetric algorithms only.
	a.verifier = provider.Verifier(&gooidc.Config{SkipClientIDCheck: true, SkipExpiryCheck: true, Now: cfg.Now,
		SupportedSigningAlgs: asymmetric(meta.Algs)})
	a.oauth = oauth2.Config{ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, RedirectURL: cfg.RedirectURL,
		Endpoint: provider.Endpoint(), Scopes: cfg.Scopes}
	return a, nil
}

// asymmetric keeps the signing algorithms that are not HMAC or none:
// a shared secret must never sign an identity a replica trusts.
func asymmetric(algs []string) []string {
	var out []string
	for _, a := range algs {
		if a != "none" && !strings.HasPrefix(a, "HS") {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		out = []string{gooidc.RS256}
	}
	return out
}

// identity is what a verified token says of its bearer.
type identity struct {
	User   string   `json:"u"`
	Groups []string `json:"g,omitempty"`
	// HasGroups: the token carried the groups claim (an empty list is an
	// answer; no claim, or Entra ID's group overage, is none).
	HasGroups bool      `json:"h,omitempty"`
	Exp       time.Time `json:"e"`
}

// verify checks a raw JWT (a bearer token or an ID token) and returns
// who it names. nonce, when not empty, must be the token's.
func (a *Auth) verify(ctx context.Context, raw, nonce string) (*identity, error) {
	ctx = gooidc.ClientContext(ctx, a.cfg.HTTPClient)
	tok, err := a.verifier.Verify(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	}
	now := a.cfg.Now()
	var claims struct {
		NotBefore *float64 `json:"nbf"`
	}
	tok.Claims(&claims)
	switch {
	case !slices.ContainsFunc(tok.Audience, func(aud string) bool { return slices.Contains(a.cfg.Audiences, aud) }):
		return nil, fmt.Errorf("%w: the token is for %v, not for this service", ErrUnauthenticated, tok.Audience)
	case tok.Expiry.IsZero() || now.After(tok.Expiry.Add(a.cfg.ClockSkew)):
		return nil, fmt.Errorf("%w: the token expired at %s", ErrUnauthenticated, tok.Expiry.UTC().Format(time.RFC3339))
	case tok.IssuedAt.After(now.Add(a.cfg.ClockSkew)):
		return nil, fmt.Errorf("%w: the token is issued in the future", ErrUnauthenticated)
	case claims.NotBefore != nil && time.Unix(int64(*claims.NotBefore), 0).After(now.Add(a.cfg.ClockSkew)):
		return nil, fmt.Errorf("%w: the token is not valid yet", ErrUnauthenticated)
	case nonce != "" && tok.Nonce != nonce:
		return nil, fmt.Errorf("%w: the ID token's nonce is not this sign-in's", ErrUnauthenticated)
	}
	var all map[string]any
	if err := tok.Claims(&all); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	}
	if a.cfg.UsernameClaim == "email" {
		if v, _ := all["email_verified"].(bool); !v {
			return nil, fmt.Errorf("%w: the token's email is not verified", ErrUnauthenticated)
		}
	}
	name, _ := all[a.cfg.UsernameClaim].(string)
	user, err := pam.CanonicalIdentity(name)
	if err != nil {
		return nil, fmt.Errorf("%w: the token's %s claim is not a usable identity", ErrUnauthenticated, a.cfg.UsernameClaim)
	}
	id := &identity{User: user, Exp: tok.Expiry}
	if gs, ok := all[a.cfg.GroupsClaim].([]any); ok {
		id.HasGroups = true
		for _, g := range gs {
			if s, ok := g.(string); ok {
				id.Groups = append(id.Groups, s)
			}
		}
	}
	return id, nil
}

// Authenticate is pamhttp.Options.Authenticate: the identity of a valid
// bearer token, or else of a valid session cookie. Its errors match
// ErrUnauthenticated.
func (a *Auth) Authenticate(r *http.Request) (string, error) {
	if raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		id, err := a.verify(r.Context(), strings.TrimSpace(raw), "")
		if err != nil {
			return "", err
		}
		a.groups.put(id, a.cfg.Now())
		return id.User, nil
	}
	c, err := r.Cookie(a.cfg.CookieName)
	if err != nil {
		return "", fmt.Errorf("%w: no session", ErrUnauthenticated)
	}
	var id identity
	if err := a.open(a.cfg.CookieName, c.Value, &id); err != nil {
		return "", fmt.Errorf("%w: the session cookie: %v", ErrUnauthenticated, err)
	}
	if !a.cfg.Now().Before(id.Exp) {
		return "", fmt.Errorf("%w: the session ended", ErrUnauthenticated)
	}
	a.groups.put(&id, a.cfg.Now())
	return id.User, nil
}

// flow is a sign-in in progress, kept in the flow cookie.
type flow struct {
	State, Nonce, Verifier, Next string
	Exp                          time.Time
}

const flowTTL = 10 * time.Minute

func (a *Auth) flowCookie() string { return a.cfg.CookieName + "_flow" }

// Handler serves GET /login, GET /callback and POST /logout; mount it
// where RedirectURL's path says /callback is. Sign-out ends the session
// in the browser (the cookie is self-contained: a copy taken before
// stays valid until SessionTTL; keep SessionTTL short where that
// matters) and at the provider when it has an end_session_endpoint.
func (a *Auth) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", a.login)
	mux.HandleFunc("GET /callback", a.callback)
	mux.HandleFunc("POST /logout", a.logout)
	// Signing out changes state: a POST, refused across origins.
	return http.NewCrossOriginProtection().Handler(mux)
}

func (a *Auth) login(w http.ResponseWriter, r *http.Request) {
	f := flow{State: random(), Nonce: random(), Verifier: oauth2.GenerateVerifier(), Next: LocalPath(r.URL.Query().Get("next")),
		Exp: a.cfg.Now().Add(flowTTL)}
	if err := a.setCookie(w, a.flowCookie(), f, f.Exp); err != nil {
		http.Error(w, "cannot start the sign-in", http.StatusInternalServerError)
		return
	}
	http.Redirect(w, r, a.oauth.AuthCodeURL(f.State, gooidc.Nonce(f.Nonce), oauth2.S256ChallengeOption(f.Verifier)), http.StatusFound)
}

func (a *Auth) callback(w http.ResponseWriter, r *http.Request) {
	fail := func(st int, msg string) {
		http.Error(w, "sign-in failed: "+msg, st)
	}
	c, err := r.Cookie(a.flowCookie())
	if err != nil {
		fail(http.StatusBadRequest, "no sign-in was started in this browser")
		return
	}
	// The flow is used once, whatever happens next.
	a.clearCookie(w, a.flowCookie())
	var f flow
	if err := a.open(a.flowCookie(), c.Value, &f); err != nil || !a.cfg.Now().Before(f.Exp) {
		fail(http.StatusBadRequest, "the sign-in expired; start again")
		return
	}
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		fail(http.StatusUnauthorized, "the provider said "+strings.ToValidUTF8(e, "?"))
		return
	}
	if q.Get("state") == "" || q.Get("state") != f.State {
		fail(http.StatusBadRequest, "the state does not match this sign-in")
		return
	}
	ctx := gooidc.ClientContext(r.Context(), a.cfg.HTTPClient)
	tok, err := a.oauth.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(f.Verifier))
	if err != nil {
		fail(http.StatusUnauthorized, "the code was not accepted")
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		fail(http.StatusUnauthorized, "the provider sent no ID token")
		return
	}
	id, err := a.verify(r.Context(), raw, f.Nonce)
	if err != nil {
		fail(http.StatusUnauthorized, "the ID token was not accepted")
		return
	}
	// The session lasts SessionTTL, not the ID token's few minutes.
	id.Exp = a.cfg.Now().Add(a.cfg.SessionTTL)
	if err := a.setCookie(w, a.cfg.CookieName, id, id.Exp); err != nil {
		fail(http.StatusInternalServerError, "cannot keep the session")
		return
	}
	a.groups.put(id, a.cfg.Now())
	next := f.Next
	if next == "" {
		next = "/"
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// logout ends the session here, and at the provider when it says where
// (its end_session_endpoint).
func (a *Auth) logout(w http.ResponseWriter, r *http.Request) {
	a.clearCookie(w, a.cfg.CookieName)
	if a.endSess != "" {
		u, err := url.Parse(a.endSess)
		if err == nil {
			q := u.Query()
			q.Set("client_id", a.cfg.ClientID)
			u.RawQuery = q.Encode()
			http.Redirect(w, r, u.String(), http.StatusSeeOther)
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("Signed out.\n"))
}

// LocalPath returns next when it is a path on this host, and "" for
// anything else: a URL with a scheme or a host, "//host", a backslash
// that a browser reads as a slash, control characters.
func LocalPath(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n\t") {
		return ""
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return ""
	}
	return next
}

func random() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// seal encrypts v as a cookie value bound to its name.
func (a *Auth) seal(name string, v any) (string, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, a.aead.NonceSize())
	rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(a.aead.Seal(nonce, nonce, plain, []byte(name))), nil
}

func (a *Auth) open(name, value string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(b) < a.aead.NonceSize() {
		return errors.New("malformed")
	}
	plain, err := a.aead.Open(nil, b[:a.aead.NonceSize()], b[a.aead.NonceSize():], []byte(name))
	if err != nil {
		return errors.New("not sealed with this service's key")
	}
	return json.Unmarshal(plain, v)
}

func (a *Auth) setCookie(w http.ResponseWriter, name string, v any, exp time.Time) error {
	val, err := a.seal(name, v)
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: name, Value: val, Path: "/", Expires: exp, MaxAge: int(exp.Sub(a.cfg.Now()).Seconds()),
		HttpOnly: true, Secure: a.secure, SameSite: http.SameSiteLaxMode})
	return nil
}

func (a *Auth) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Path: "/", MaxAge: -1, HttpOnly: true, Secure: a.secure, SameSite: http.SameSiteLaxMode})
}
