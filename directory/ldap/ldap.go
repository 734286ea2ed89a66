// Package ldap is a pam.Directory over LDAP: Active Directory, OpenLDAP,
// or any server with groups whose members are listed by DN.
//
//	dir, err := ldap.New(ldap.Config{
//		URL: "ldaps://dc1.corp.example.com", BindDN: "CN=pam,OU=Service,DC=corp,DC=example,DC=com", BindPassword: pw,
//		UserBaseDN: "DC=corp,DC=example,DC=com", UserAttribute: "sAMAccountName",
//		GroupBaseDN: "DC=corp,DC=example,DC=com", InChain: true, // Active Directory
//	})
//	m, err := pam.New(store, dir, opts)
//
// A person is the one entry under UserBaseDN whose UserAttribute is
// their identity; a group the one entry under GroupBaseDN whose
// GroupAttribute is its name. Membership is nested: a member of a group
// that is a member of the group is a member. Active Directory resolves
// it in one search with its in-chain matching rule
// (LDAP_MATCHING_RULE_IN_CHAIN, 1.2.840.113556.1.4.1941) when InChain is
// set; elsewhere the groups are walked from the group down, MaxDepth
// levels at most, each group once (a cycle ends there).
//
// It fails closed: any error (the server down, a timeout, two entries for
// one identity) is an error, never "member", and is never cached. Answers
// are cached for CacheTTL, at most CacheSize of them, so a person removed
// from a group stops counting within CacheTTL. Connections are bound
// once and pooled (PoolSize); a broken one is dropped and the next call
// dials again. Each operation is bounded by Timeout and by its context.
package ldap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/zerostanding/pam"
)

// Config configures a Directory.
type Config struct {
	// URL is the server: ldaps://host[:636], or ldap://host[:389] with
	// StartTLS (or without, only on a trusted network).
	URL       string
	StartTLS  bool
	TLSConfig *tls.Config
	// BindDN and BindPassword are the service account the Directory
	// reads as. Keep the password out of configuration files.
	BindDN, BindPassword string
	// UserBaseDN is where people are; UserAttribute holds their identity
	// (default "uid"; Active Directory: "sAMAccountName" or
	// "userPrincipalName"); UserFilter narrows them (default
	// "(objectClass=*)").
	UserBaseDN, UserAttribute, UserFilter string
	// GroupBaseDN is where groups are; GroupAttribute holds their name
	// (default "cn"); GroupFilter tells groups from other entries
	// (default: groupOfNames, groupOfUniqueNames or group);
	// MemberAttribute lists their members' DNs (default "member").
	GroupBaseDN, GroupAttribute, GroupFilter, MemberAttribute string
	// InChain resolves nested membership with Active Directory's
	// in-chain matching rule.
	InChain bool
	// MaxDepth bounds the nesting walked without InChain. Default: 8.
	MaxDepth int
	// CacheTTL is how long an answer is kept. Default: 1 minute; a
	// negative value keeps none.
	CacheTTL time.Duration
	// CacheSize bounds the answers kept. Default: 10,000.
	CacheSize int
	// PoolSize is how many bound connections are kept. Default: 4.
	PoolSize int
	// DialTimeout bounds a connection's setup, Timeout each operation.
	// Defaults: 5 seconds each.
	DialTimeout, Timeout time.Duration
	// Now is the cache's clock. Default: time.Now.
	Now func() time.Time
}

// Directory is a pam.Directory over LDAP. It is safe for concurrent use.
type Directory struct {
	cfg   Config
	pool  chan *goldap.Conn
	mu    sync.Mutex
	cache map[cacheKey]cacheEntry
}

var _ pam.Directory = (*Directory)(nil)

type cacheKey struct{ kind, group, user string }

type cacheEntry struct {
	member  bool
	members []string
	exp     time.Time
}

// New returns a Directory. It does not connect until asked.
func New(cfg Config) (*Directory, error) {
	if cfg.URL == "" || cfg.UserBaseDN == "" || cfg.GroupBaseDN == "" {
		return nil, fmt.Errorf("%w: ldap: URL, UserBaseDN and GroupBaseDN are required", pam.ErrInvalid)
	}
	if !strings.HasPrefix(cfg.URL, "ldap://") && !strings.HasPrefix(cfg.URL, "ldaps://") {
		return nil, fmt.Errorf("%w: ldap: URL %q: want ldap:// or ldaps://", pam.ErrInvalid, cfg.URL)
	}
	if cfg.MaxDepth < 0 || cfg.CacheSize < 0 || cfg.PoolSize < 0 || cfg.DialTimeout < 0 || cfg.Timeout < 0 {
		return nil, fmt.Errorf("%w: ldap: negative limits", pam.ErrInvalid)
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&cfg.UserAttribute, "uid")
	def(&cfg.UserFilter, "(objectClass=*)")
	def(&cfg.GroupAttribute, "cn")
	def(&cfg.GroupFilter, "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=group))")
	def(&cfg.MemberAttribute, "member")
	if cfg.MaxDepth == 0 {
		cfg.MaxDepth = 8
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = time.Minute
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = 10_000
	}
	if cfg.PoolSize == 0 {
		cfg.PoolSize = 4
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Directory{cfg: cfg, pool: make(chan *goldap.Conn, cfg.PoolSize), cache: map[cacheKey]cacheEntry{}}, nil
}

// Close closes the pooled connections.
func (d *Directory) Close() error {
	for {
		select {
		case c := <-d.pool:
			c.Close()
		default:
			return nil
		}
	}
}

// IsMember implements pam.Directory.
func (d *Directory) IsMember(ctx context.Context, group, user string) (bool, error) {
	k := cacheKey{"member", group, user}
	if e, ok := d.cached(k); ok {
		return e.member, nil
	}
	var member bool
	err := d.with(ctx, func(c *goldap.Conn) error {
		userDN, err := d.find(c, d.cfg.UserBaseDN, d.cfg.UserFilter, d.cfg.UserAttribute, user)
		if err != nil || userDN == "" {
			return err
		}
		groupDN, err := d.find(c, d.cfg.GroupBaseDN, d.cfg.GroupFilter, d.cfg.GroupAttribute, group)
		if err != nil || groupDN == "" {
			return err
		}
		if d.cfg.InChain {
			res, err := c.Search(goldap.NewSearchRequest(userDN, goldap.ScopeBaseObject, goldap.NeverDerefAliases, 1, d.seconds(), false,
				"(memberOf:1.2.840.113556.1.4.1941:="+goldap.EscapeFilter(groupDN)+")", []string{"1.1"}, nil))
			if err != nil {
				return err
			}
			member = len(res.Entries) == 1
			return nil
		}
		member, err = d.walk(c, groupDN, func(dn string) bool { return strings.EqualFold(dn, userDN) }, nil)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("ldap: is %s in %s: %w", user, group, err)
	}
	d.store(k, cacheEntry{member: member})
	return member, nil
}

// Members implements pam.Directory: the identities of the group's
// people, nested groups included.
func (d *Directory) Members(ctx context.Context, group string) ([]string, error) {
	k := cacheKey{"members", group, ""}
	if e, ok := d.cached(k); ok {
		return append([]string(nil), e.members...), nil
	}
	var out []string
	err := d.with(ctx, func(c *goldap.Conn) error {
		groupDN, err := d.find(c, d.cfg.GroupBaseDN, d.cfg.GroupFilter, d.cfg.GroupAttribute, group)
		if err != nil || groupDN == "" {
			return err
		}
		var people []string
		if _, err := d.walk(c, groupDN, nil, &people); err != nil {
			return err
		}
		for _, dn := range people {
			res, err := c.Search(goldap.NewSearchRequest(dn, goldap.ScopeBaseObject, goldap.NeverDerefAliases, 1, d.seconds(), false,
				d.cfg.UserFilter, []string{d.cfg.UserAttribute}, nil))
			if err != nil {
				if goldap.IsErrorWithCode(err, goldap.LDAPResultNoSuchObject) {
					continue // a dangling member
				}
				return err
			}
			if len(res.Entries) == 1 {
				if id, err := pam.CanonicalIdentity(res.Entries[0].GetAttributeValue(d.cfg.UserAttribute)); err == nil {
					out = append(out, id)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ldap: members of %s: %w", group, err)
	}
	d.store(k, cacheEntry{members: out})
	return append([]string(nil), out...), nil
}

// find returns the DN of the one entry under base matching filter whose
// attr is value, "" when there is none. Two or more is an error: an
// identity must name one person.
func (d *Directory) find(c *goldap.Conn, base, filter, attr, value string) (string, error) {
	res, err := c.Search(goldap.NewSearchRequest(base, goldap.ScopeWholeSubtree, goldap.NeverDerefAliases, 2, d.seconds(), false,
		"(&"+filter+"("+attr+"="+goldap.EscapeFilter(value)+"))", []string{"1.1"}, nil))
	if err != nil {
		return "", err
	}
	switch len(res.Entries) {
	case 0:
		return "", nil
	case 1:
		return res.Entries[0].DN, nil
	}
	return "", fmt.Errorf("%d entries have %s=%s", len(res.Entries), attr, value)
}

// walk visits the members of groupDN and of the groups among them, each
// group once, MaxDepth levels down. It stops with true when match says
// so; people, when not nil, collects the members that are not groups.
func (d *Directory) walk(c *goldap.Conn, groupDN string, match func(string) bool, people *[]string) (bool, error) {
	seen := map[string]bool{strings.ToLower(groupDN): true}
	level := []string{groupDN}
	for depth := 0; len(level) > 0 && depth < d.cfg.MaxDepth; depth++ {
		var next []string
		for _, g := range level {
			res, err := c.Search(goldap.NewSearchRequest(g, goldap.ScopeBaseObject, goldap.NeverDerefAliases, 1, d.seconds(), false,
				d.cfg.GroupFilter, []string{d.cfg.MemberAttribute}, nil))
			if err != nil {
				if goldap.IsErrorWithCode(err, goldap.LDAPResultNoSuchObject) {
					continue // a member that no longer exists
				}
				return false, err
			}
			if len(res.Entries) == 0 {
				continue // not a group: a person
			}
			for _, m := range res.Entries[0].GetAttributeValues(d.cfg.MemberAttribute) {
				if match != nil && match(m) {
					return true, nil
				}
				if key := strings.ToLower(m); !seen[key] {
					seen[key] = true
					next = append(next, m)
				}
			}
		}
		if people != nil {
			// The members of this level that are not groups are people.
			for _, m := range next {
				isGroup, err := d.isGroup(c, m)
				if err != nil {
					return false, err
				}
				if !isGroup {
					*people = append(*people, m)
				}
			}
		}
		level = next
	}
	return false, nil
}

func (d *Directory) isGroup(c *goldap.Conn, dn string) (bool, error) {
	res, err := c.Search(goldap.NewSearchRequest(dn, goldap.ScopeBaseObject, goldap.NeverDerefAliases, 1, d.seconds(), false,
		d.cfg.GroupFilter, []string{"1.1"}, nil))
	if err != nil {
		if goldap.IsErrorWithCode(err, goldap.LDAPResultNoSuchObject) {
			return false, nil
		}
		return false, err
	}
	return len(res.Entries) == 1, nil
}

func (d *Directory) seconds() int { return int((d.cfg.Timeout + time.Second - 1) / time.Second) }

// with runs f on a pooled connection, bounded by ctx and Timeout. A
// connection that failed is closed, not pooled again.
func (d *Directory) with(ctx context.Context, f func(*goldap.Conn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c, err := d.conn(ctx)
	if err != nil {
		return err
	}
	timeout := d.cfg.Timeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = time.Until(dl)
	}
	c.SetTimeout(timeout)
	stop := context.AfterFunc(ctx, func() { c.Close() })
	err = f(c)
	if !stop() || ctx.Err() != nil {
		c.Close() // closed already when stop came late; harmless twice
		return errors.Join(ctx.Err(), err)
	}
	var le *goldap.Error
	if err != nil && (!errors.As(err, &le) || le.ResultCode == goldap.ErrorNetwork || le.ResultCode == goldap.LDAPResultTimeout) {
		c.Close()
		return err
	}
	select {
	case d.pool <- c:
	default:
		c.Close()
	}
	return err
}

// conn returns a pooled connection that is still open, or a new bound one.
func (d *Directory) conn(ctx context.Context) (*goldap.Conn, error) {
	for {
		select {
		case c := <-d.pool:
			if !c.IsClosing() {
				return c, nil
			}
		default:
			dialer := &net.Dialer{Timeout: d.cfg.DialTimeout}
			if dl, ok := ctx.Deadline(); ok {
				dialer.Deadline = dl
			}
			opts := []goldap.DialOpt{goldap.DialWithDialer(dialer), goldap.DialWithTLSConfig(d.tlsConfig())}
			c, err := goldap.DialURL(d.cfg.URL, opts...)
			if err != nil {
				return nil, err
			}
			c.SetTimeout(d.cfg.DialTimeout)
			if d.cfg.StartTLS {
				tc := d.tlsConfig()
				if err := c.StartTLS(tc); err != nil {
					c.Close()
					return nil, err
				}
			}
			if d.cfg.BindDN != "" {
				if err := c.Bind(d.cfg.BindDN, d.cfg.BindPassword); err != nil {
					c.Close()
					return nil, fmt.Errorf("bind as %s: %w", d.cfg.BindDN, err)
				}
			}
			return c, nil
		}
	}
}

func (d *Directory) cached(k cacheKey) (cacheEntry, bool) {
	if d.cfg.CacheTTL < 0 {
		return cacheEntry{}, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.cache[k]
	if ok && !d.cfg.Now().Before(e.exp) {
		delete(d.cache, k)
		return cacheEntry{}, false
	}
	return e, ok
}

func (d *Directory) store(k cacheKey, e cacheEntry) {
	if d.cfg.CacheTTL < 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.cfg.Now()
	if len(d.cache) >= d.cfg.CacheSize {
		// Full: drop the expired answers, and then, if need be, a tenth of
		// the rest (the map's order is random).
		for k, e := range d.cache {
			if !now.Before(e.exp) {
				delete(d.cache, k)
			}
		}
		for k := range d.cache {
			if len(d.cache) < d.cfg.CacheSize*9/10 {
				break
			}
			delete(d.cache, k)
		}
	}
	e.exp = now.Add(d.cfg.CacheTTL)
	d.cache[k] = e
}

// CacheLen is how many answers are cached: for tests and metrics.
func (d *Directory) CacheLen() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.cache)
}

// tlsConfig is Config.TLSConfig, or a default, with the server's name
// from the URL when it names none: StartTLS verifies the certificate
// against it.
func (d *Directory) tlsConfig() *tls.Config {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if d.cfg.TLSConfig != nil {
		tc = d.cfg.TLSConfig.Clone()
	}
	if tc.ServerName == "" {
		if u, err := url.Parse(d.cfg.URL); err == nil {
			tc.ServerName = u.Hostname()
		}
	}
	return tc
}
