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

// Notification tells people that a request needs them or has changed.
type Notification struct {
	// ID identifies the message in the outbox; it stays the same on every
	// attempt, so receivers can drop duplicates (delivery is at least
	// once).
	ID string `json:"id"`
	// Type is the event that caused it: EventRequestSubmitted (to the
	// approvers), EventRequestApproved, EventRequestDenied,
	// EventRequestExpired or EventRequestRevoked (to the requester).
	Type       EventType `json:"type"`
	Request    Request   `json:"request"`
	Recipients []string  `json:"recipients"` // canonical identities; one per message
	// Attempt counts deliveries of this message, from 1.
	Attempt int `json:"attempt"`
}

// Notifier delivers notifications (email, chat, webhooks). Notifications
// are written to the store's outbox in the same commit as the transition
// that causes them, and delivered from there by Run (or Deliver), each
// recipient separately, with retries: an error never undoes or delays the
// transition. Notify is called concurrently for different messages, and
// should be idempotent by Notification.ID.
type Notifier interface {
	Notify(ctx context.Context, n Notification) error
}

// NotifierFunc adapts a function to the Notifier interface.
type NotifierFunc func(ctx context.Context, n Notification) error

// Notify calls f.
func (f NotifierFunc) Notify(ctx context.Context, n Notification) error { return f(ctx, n) }
