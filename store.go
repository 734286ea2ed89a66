package pam

import (
	"context"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Store persists policies, requests and the audit trail. It makes no
// decisions: the engine validates, computes each transition and hands the
// store one Tx to write atomically, with the versions it read. A store
// stores what it is given: the rules of a request's contents, such as one
// decision per approver and decisions that are only ever added, are the
// engine's, and a store checks none of them.
//
// Every method returns ctx.Err() once ctx is done, and ErrNotFound,
// ErrConflict or another error as documented. Values passed in and
// returned are copies: neither side keeps the other's slices or maps.
// store/storetest is the contract; every Store must pass it. What every
// store must do alike is written once, for store authors, in this
// package: Tx.Validate, ChainHead.Chain, DecodeDetail, Request.Due,
// Message.ClaimableAt and SortClaims.
type Store interface {
	// Commit writes tx atomically: all of it or nothing. A tx that
	// names one policy, request or message twice is refused with
	// ErrInvalid (Tx.Validate) and nothing is written. Each policy and
	// request in tx must carry a Version one higher than the stored one
	// (1 for a new one); otherwise Commit returns ErrConflict and writes
	// nothing. Likewise every request named in tx.Unchanged must still be
	// at the given version; the same version rule holds for tx.Messages.
	// Events are appended in order with consecutive
	// sequence numbers following the last committed event, each chained
	// to the one before it (Event.Chain) inside the same serialised write,
	// so the stored trail is one hash chain however many writers share
	// the store (ChainHead.Chain). tx.Open records runs as open: an ID
	// that is open already is ErrConflict. tx.Close ends open runs: an ID
	// that is not open (never opened, or closed already) is ErrNotFound,
	// and nothing is written. Requests are stored exactly as given,
	// their Decisions included, however many there are and whoever made
	// them. On success Commit sets Seq, PrevHash and Hash on tx.Events
	// and Revision on tx.Policies and tx.Catalog.
	Commit(ctx context.Context, tx *Tx) error

	// Policy returns the policy with id, deleted or not, or ErrNotFound.
	Policy(ctx context.Context, id string) (Policy, error)

	// PolicyChanges returns the current state of every policy written
	// after revision since (deleted ones included), in Revision order, and
	// the store's policy revision as of the same read.
	// The catalog is not among them (see Catalog).
	PolicyChanges(ctx context.Context, since int64) ([]Policy, int64, error)

	// PolicyRevision returns the Revision of the latest policy or catalog
	// write, 0 when there is none. Guard calls it on every covered or uncovered
	// operation to see policy changes made through other replicas, so it
	// must be cheap.
	PolicyRevision(ctx context.Context) (int64, error)

	// Request returns the request with id, or ErrNotFound.
	Request(ctx context.Context, id string) (Request, error)

	// Requests returns the requests that match f (RequestFilter.Matches),
	// ordered by ID.
	Requests(ctx context.Context, f RequestFilter) ([]Request, error)

	// Grants returns the grants of requester's requests whose recorded
	// state is Approved and whose PolicyID is in policyIDs, in any order.
	// Guard calls it for covered operations.
	Grants(ctx context.Context, requester string, policyIDs []string) ([]Grant, error)

	// Catalog returns the stored catalog; one with Version 0 when none
	// was ever written.
	Catalog(ctx context.Context) (Catalog, error)

	// Events returns the audit events that match f, in Seq order
	// (descending with f.Descending), at most f.Limit of them when it is
	// above 0. f.After and f.Before may be negative: a stored event
	// numbered below 1 is tampering, and Verify reads from
	// math.MinInt64 to find it. A stored event that does not decode
	// strictly is returned with Malformed set (DecodeDetail decodes its
	// Detail), never as an error: one bad row must not make the trail
	// unreadable.
	Events(ctx context.Context, f EventFilter) ([]Event, error)

	// OpenRuns returns up to limit (0: no limit) of the open runs whose
	// Due is at or before dueBy, by Due, then by ID. Sweep calls it.
	OpenRuns(ctx context.Context, dueBy time.Time, limit int) ([]OpenRun, error)
}

// OpenRun is a Guard run whose start is stored and whose end is not yet:
// Guard opens it in the commit of its start event (Tx.Open) and closes it
// in the commit of its end (Tx.Close). The store keeps open runs apart
// from the trail, so that finding the runs whose end was never recorded
// does not read the trail.
type OpenRun struct {
	ID        string    `json:"id"` // Event.Run of its start
	Actor     string    `json:"actor"`
	Task      string    `json:"task"`
	PolicyID  string    `json:"policy_id,omitempty"`
	RequestID string    `json:"request_id,omitempty"`
	Started   time.Time `json:"started"`
	// Due is when Sweep may take the run as ended with an unknown
	// outcome (Options.RunEndGrace after its grant ends, or after it
	// starts for a system account's run).
	Due time.Time `json:"due"`
}

// OutboxStore is an optional interface of a Store that keeps the
// notification outbox. A Manager with notifiers requires it (New fails with
// ErrInvalid otherwise); Tx.Messages are only ever written to a Store that
// implements it. Every store in this module does.
type OutboxStore interface {
	Store

	// ClaimMessages leases to owner, until until, up to limit outbox
	// messages that are MessagePending with NextAttempt and LeaseUntil at
	// or before now (Message.ClaimableAt), oldest NextAttempt first, then
	// by ID (SortClaims), adding one to each one's Version, and returns
	// them in that order with LeaseOwner and LeaseUntil set. A
	// message is leased to one claimer at a time, however many Managers
	// share the store.
	ClaimMessages(ctx context.Context, owner string, now, until time.Time, limit int) ([]Message, error)

	// Messages returns the outbox messages that match f, ordered by ID.
	Messages(ctx context.Context, f MessageFilter) ([]Message, error)
}

// TimeSource is an optional interface of a Store that supplies the time
// decisions are made at: a database server's clock, shared by every
// replica, so that replicas whose own clocks drift by minutes still decide
// expiries identically. When the Store implements it, the engine takes
// every "now" from it; Options.Clock still drives the timers (Run's sweep
// interval, the wake-up at the end of a grant), corrected by the offset
// between the two clocks.
type TimeSource interface {
	// Now returns the store's current time.
	Now(ctx context.Context) (time.Time, error)
}

// GuardReader is an optional interface of a Store over a network: it
// reads what Guard needs in one round trip rather than three. With it,
// Guard decides on the policies it holds and the revision read with the
// grants, and reloads the policies and reads again when that revision is
// not the one it decided on.
type GuardReader interface {
	// ReadGuard returns, as of one instant: the policy revision, as
	// PolicyRevision returns it; the store's time when it is a
	// TimeSource, as Now returns it (the zero time otherwise); and, when
	// policyIDs is not empty, requester's grants under them, as Grants
	// returns them.
	ReadGuard(ctx context.Context, requester string, policyIDs []string) (GuardRead, error)
}

// GuardRead is what GuardReader.ReadGuard read.
type GuardRead struct {
	PolicyRevision int64
	Now            time.Time
	Grants         []Grant
}

// ChangeNotifier is an optional interface of a Store shared by several
// Managers that can tell them at once that another writer may have ended
// a grant (or moved its end), so that fns running under it stop (or run
// on) within milliseconds rather than at the next
// Options.AuditPollInterval. Without it, Managers poll.
type ChangeNotifier interface {
	// Changes starts listening and returns a channel that receives a
	// value soon after any writer sharing the store commits a request
	// that leaves Pending or Approved (revoked, expired, denied, ...) or
	// whose grant is extended (a Tx with an EventRequestExtended), a
	// policy or the catalog. Listening has begun when Changes returns: a
	// change committed later is signalled. Values coalesce, one standing
	// for any number of changes; the receiver re-reads what it needs. The
	// channel is closed once listening stops: when ctx is done, or the
	// store lost its connection (call Changes again). Changes returns an
	// error, and no channel, when listening cannot start.
	Changes(ctx context.Context) (<-chan struct{}, error)
}

// Grant is the part of an approved request that Guard checks.
type Grant struct {
	RequestID     string    `json:"request_id"`
	Version       int64     `json:"version"` // the request's version
	PolicyID      string    `json:"policy_id"`
	Scope         Scope     `json:"scope"`
	PolicyVersion int64     `json:"policy_version"`
	ApprovedAt    time.Time `json:"approved_at"`
	ExpiresAt     time.Time `json:"expires_at"`
	// Bind, MaxUses and Uses are the request's: the parameter values the
	// grant is bound to, and the runs it allows and has had.
	Bind    map[string]any `json:"bind,omitempty"`
	MaxUses int            `json:"max_uses,omitempty"`
	Uses    int            `json:"uses,omitempty"`
	// BreakGlass: the request is break-glass (Manager.BreakGlass); runs
	// under it are marked so in the trail.
	BreakGlass bool `json:"break_glass,omitempty"`
}

// Grant returns r's grant fields. Bind is shared with r.
func (r *Request) Grant() Grant {
	return Grant{RequestID: r.ID, Version: r.Version, PolicyID: r.PolicyID, Scope: r.Scope, PolicyVersion: r.PolicyVersion, ApprovedAt: r.ApprovedAt, ExpiresAt: r.ExpiresAt,
		Bind: r.Bind, MaxUses: r.MaxUses, Uses: r.Uses, BreakGlass: r.BreakGlass != nil}
}

// Spent reports whether g allows no more runs.
func (g *Grant) Spent() bool { return g.MaxUses > 0 && g.Uses >= g.MaxUses }

// ActiveAt reports whether the grant's window is open at now.
func (g *Grant) ActiveAt(now time.Time) bool {
	return !now.Before(g.ApprovedAt) && now.Before(g.ExpiresAt)
}

// Tx is one atomic write: new versions of policies and requests together
// with the audit events that record them.
type Tx struct {
	// Catalog, when set, replaces the stored catalog. Its Version must be
	// one higher than the stored one (1 for the first), or Commit returns
	// ErrConflict; the write takes the next policy revision, before the
	// policies of the same Tx (Commit sets Catalog.Revision), so
	// PolicyRevision moves and every Manager reloads.
	Catalog  *Catalog
	Policies []Policy
	Requests []Request
	Events   []Event
	// PolicyRevision, when above 0, makes the write depend on every
	// policy and the catalog: Commit returns ErrConflict, writing nothing,
	// unless the store's policy revision (see PolicyRevision) is still
	// PolicyRevision. Guard's start event uses it, so that no run starts
	// under a grant that a policy change committed since has cut; a
	// catalog change uses it, so that it is judged against every live
	// policy.
	PolicyRevision int64
	// Unchanged lists requests the write depends on without changing
	// them: Guard's guard.allowed event commits only if the grants it
	// relied on are still as it read them, so no Guard succeeds after a
	// revocation has committed.
	Unchanged []RequestVersion
	// Open and Close record Guard runs as started and as ended (see
	// OpenRun): a run's start event commits with its Open, its end
	// event with its Close, so that a run's end is recorded once
	// however often its writer retries, and however many Managers sweep.
	Open  []OpenRun
	Close []string
	// Messages are outbox messages, new (Version 1) or settled after a
	// delivery attempt (their Version one more than the stored one, like
	// requests). A settled message's lease is cleared.
	Messages []Message
}

// RequestVersion names a request at a version.
type RequestVersion struct {
	ID      string
	Version int64
}

// RequestFilter selects requests by their recorded fields. Zero fields
// match everything.
type RequestFilter struct {
	Requester string   // canonical identity
	PolicyIDs []string // any of
	States    []State  // any of, as recorded
	// DueBy, when set, keeps requests with something due at or before
	// it (Request.Due): Pending with PendingUntil (or a reminder or
	// escalation) <= DueBy, Approved with ExpiresAt <= DueBy, and
	// break-glass requests in any state whose overdue review notice is
	// due. The sweeper uses it.
	DueBy time.Time
	// DecidedBy, when set, keeps the requests on which this canonical
	// identity recorded a decision (Request.Deciders): history for an
	// approver.
	DecidedBy string
	// Search, when set, keeps the requests where it occurs, ignoring
	// case (strings.ToLower on both sides), in the requester, the
	// ticket, the policy ID, the scope's name or the request ID. It
	// holds no control characters and at most MaxSearchBytes bytes
	// (ValidateRequestFilter).
	Search string
	// Newest lists the newest requests first (IDs descending; IDs grow
	// with their creation time). After then keeps the requests older
	// than After (ID < After), so the cursor a page returns continues
	// in the page's order either way.
	Newest bool
	After  string // the cursor: ID > After (ID < After with Newest)
	Limit  int    // 0: no limit
}

// MaxSearchBytes bounds RequestFilter.Search.
const MaxSearchBytes = 256

// ValidateRequestFilter checks the fields of f that a caller may get
// wrong: Search (no control characters, at most MaxSearchBytes, valid
// UTF-8) and a DecidedBy or Requester that is not a canonical identity.
// The Manager calls it; a store may rely on it.
func ValidateRequestFilter(f *RequestFilter) error {
	if len(f.Search) > MaxSearchBytes || !utf8.ValidString(f.Search) || strings.ContainsFunc(f.Search, unicode.IsControl) {
		return invalid("Search", "must be valid text of at most %d bytes without control characters", MaxSearchBytes)
	}
	for _, id := range []struct{ field, v string }{{"Requester", f.Requester}, {"DecidedBy", f.DecidedBy}} {
		if id.v == "" {
			continue
		}
		if c, err := CanonicalIdentity(id.v); err != nil || c != id.v {
			return invalid(id.field, "%q is not a canonical identity", id.v)
		}
	}
	return nil
}

// Before reports whether a request with ID id comes before cursor in
// f's order: the test a store applies to After ("" comes before
// everything, and nothing comes before it).
func (f *RequestFilter) Before(cursor, id string) bool {
	if cursor == "" {
		return false
	}
	if f.Newest {
		return id >= cursor
	}
	return id <= cursor
}

// Matches reports whether r passes the filter (not After or Limit).
func (f *RequestFilter) Matches(r *Request) bool {
	if f.Requester != "" && r.Requester != f.Requester {
		return false
	}
	if len(f.PolicyIDs) > 0 && !contains(f.PolicyIDs, r.PolicyID) {
		return false
	}
	if len(f.States) > 0 && !contains(f.States, r.State) {
		return false
	}
	if !f.DueBy.IsZero() {
		d := r.Due()
		if d.IsZero() || d.After(f.DueBy) {
			return false
		}
	}
	if f.DecidedBy != "" && !contains(r.Deciders(), f.DecidedBy) {
		return false
	}
	if f.Search != "" && !slices.ContainsFunc(r.searchable(), func(s string) bool {
		return strings.Contains(strings.ToLower(s), strings.ToLower(f.Search))
	}) {
		return false
	}
	return true
}

func contains[T comparable](s []T, v T) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
