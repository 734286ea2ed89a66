package pam

import (
	"context"
	"sort"
	"sync"

	"github.com/zerostanding/pam/internal/ident"
)

// Directory answers group membership: who is an admin, who may approve.
// The engine asks at decision time, every time, so removing someone from a
// group takes effect on their next action.
type Directory interface {
	// IsMember reports whether user, a canonical identity (see
	// CanonicalIdentity), belongs to group. Implementations must compare
	// identities in canonical form.
	IsMember(ctx context.Context, group, user string) (bool, error)
	// Members returns the canonical identities of group's members, for
	// notifications. An unknown group has no members.
	Members(ctx context.Context, group string) ([]string, error)
}

// CanonicalIdentity returns the form in which the engine compares and
// records identities: PRECIS UsernameCaseMapped (RFC 8265), so "Alice",
// "alice" and full-width "ａｌｉｃｅ" are one person. Invalid identities
// (empty, spaces, control characters, over 256 bytes) return an error
// matching ErrInvalid.
func CanonicalIdentity(id string) (string, error) {
	c, err := ident.Canonical(id)
	if err != nil {
		return "", &ValidationError{Field: "identity", Problem: err.Error()}
	}
	return c, nil
}

// StaticDirectory is a Directory held in memory, for hosts whose groups
// come from configuration. It is safe for concurrent use; SetMembers
// changes a group at run time.
type StaticDirectory struct {
	mu     sync.RWMutex
	groups map[string]map[string]bool
}

var _ Directory = (*StaticDirectory)(nil)

// NewStaticDirectory returns a directory with the given groups (group name
// → member identities, in any spelling).
func NewStaticDirectory(groups map[string][]string) (*StaticDirectory, error) {
	d := &StaticDirectory{groups: map[string]map[string]bool{}}
	for g, members := range groups {
		if err := d.SetMembers(g, members...); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// SetMembers replaces the members of group.
func (d *StaticDirectory) SetMembers(group string, members ...string) error {
	if err := checkName("group", group); err != nil {
		return err
	}
	set := make(map[string]bool, len(members))
	for _, m := range members {
		c, err := CanonicalIdentity(m)
		if err != nil {
			return err
		}
		set[c] = true
	}
	d.mu.Lock()
	d.groups[group] = set
	d.mu.Unlock()
	return nil
}

// IsMember implements Directory.
func (d *StaticDirectory) IsMember(ctx context.Context, group, user string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	c, err := CanonicalIdentity(user)
	if err != nil {
		return false, err
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.groups[group][c], nil
}

// Members implements Directory.
func (d *StaticDirectory) Members(ctx context.Context, group string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d.mu.RLock()
	out := make([]string, 0, len(d.groups[group]))
	for m := range d.groups[group] {
		out = append(out, m)
	}
	d.mu.RUnlock()
	sort.Strings(out)
	return out, nil
}
