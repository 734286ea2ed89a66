package oidc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/zerostanding/pam"
)

// ErrUnknownUser: the groups claim of this person has not been seen in
// a valid token or session in this process, or no longer counts.
var ErrUnknownUser = errors.New("oidc: no current groups claim for this person")

// groupCache holds the groups claim of each person's latest verified
// token or session, until it expires.
type groupCache struct {
	mu sync.Mutex
	m  map[string]groupEntry
}

type groupEntry struct {
	groups []string
	exp    time.Time
}

// maxGroupEntries bounds the people whose claims are kept: past it, the
// expired entries go first, and then the others (the map's order is
// random); who is dropped is looked up in the fallback on their next
// check, or signs in again.
const maxGroupEntries = 100_000

func (c *groupCache) put(id *identity, now time.Time) {
	if !id.HasGroups {
		return // no answer to keep: the fallback answers for them
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxGroupEntries {
		for user, e := range c.m {
			if !now.Before(e.exp) || len(c.m) >= maxGroupEntries {
				delete(c.m, user)
			}
		}
	}
	c.m[id.User] = groupEntry{groups: slices.Clone(id.Groups), exp: id.Exp}
}

func (c *groupCache) get(user string, a *Auth) ([]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[user]
	if !ok || !a.cfg.Now().Before(e.exp) {
		delete(c.m, user)
		return nil, false
	}
	return e.groups, true
}

// Directory returns a pam.Directory answering from the groups claim.
//
// IsMember(group, user) answers from the groups claim of the token or
// session user last authenticated with in this process, while that
// token or session is valid: the person acting in the request being
// served, which is who the engine asks about when they approve, deny,
// revoke or administer. Membership is as fresh as the token: a person
// removed from a group at the provider keeps it until their token or
// session ends (Config.SessionTTL bounds a session). For anyone else
// (no current claim here, or a token without the groups claim, as when
// Entra ID has too many groups to list), IsMember asks fallback, and without one
// answers ErrUnknownUser, never "member".
//
// Members(group) cannot be answered from claims (only the people who
// signed in are known): it asks fallback (a directory of the same
// groups, such as LDAP), and without one returns ErrUnknownUser, which
// the engine reports when it notifies approvers.
func (a *Auth) Directory(fallback pam.Directory) pam.Directory {
	return &directory{a: a, fallback: fallback}
}

type directory struct {
	a        *Auth
	fallback pam.Directory
}

func (d *directory) IsMember(ctx context.Context, group, user string) (bool, error) {
	if groups, ok := d.a.groups.get(user, d.a); ok {
		return slices.Contains(groups, group), nil
	}
	if d.fallback != nil {
		return d.fallback.IsMember(ctx, group, user)
	}
	return false, fmt.Errorf("%w: %s", ErrUnknownUser, user)
}

func (d *directory) Members(ctx context.Context, group string) ([]string, error) {
	if d.fallback != nil {
		return d.fallback.Members(ctx, group)
	}
	return nil, fmt.Errorf("%w: the members of %s are known only to a fallback directory", ErrUnknownUser, group)
}
