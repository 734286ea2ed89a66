package pam

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"
)

// Defaults of a BreakGlass's zero fields.
const (
	DefaultBreakGlassDuration = time.Hour      // the longest break-glass window unless set
	DefaultBreakGlassPeriod   = 24 * time.Hour // Limit activations per this
	DefaultReviewWithin       = 24 * time.Hour // the post-hoc review is due this long after activation
	// MaxBreakGlassLimit is the most activations a BreakGlass may allow
	// per Period.
	MaxBreakGlassLimit = 100
)

// BreakGlass lets the members of Group act under a policy at once, in an
// emergency, without approval (Manager.BreakGlass): the grant is short,
// the policy's approver groups and AlertGroup are told at once, every
// run under it is marked in the trail, and an approver must review it
// afterwards (Manager.ReviewBreakGlass). Purview has no such thing: it
// keeps standing emergency accounts instead.
type BreakGlass struct {
	// Group is the directory group whose members may break glass.
	Group string `json:"group"`
	// AlertGroup, when set, is told of every activation besides the
	// policy's approver groups (a security team, say).
	AlertGroup string `json:"alert_group,omitempty"`
	// MaxDuration is the longest break-glass window; 0:
	// DefaultBreakGlassDuration, cut to the policy's MaxDuration. Set, it
	// may not exceed the policy's MaxDuration.
	MaxDuration time.Duration `json:"max_duration,omitempty"`
	// Limit is how many times one actor may break glass under the policy
	// per Period (0: once); Period 0 is DefaultBreakGlassPeriod. An
	// activation counts from when it was made, whatever became of it.
	Limit  int           `json:"limit,omitempty"`
	Period time.Duration `json:"period,omitempty"`
	// ReviewWithin is how long after an activation its review is due
	// (0: DefaultReviewWithin); an overdue review notifies the reviewers
	// again every ReviewWithin until it is done. At least
	// MinNudgeInterval.
	ReviewWithin time.Duration `json:"review_within,omitempty"`
}

// validate checks b as the BreakGlass of policy p.
func (b *BreakGlass) validate(p *Policy) error {
	if err := checkName("BreakGlass.Group", b.Group); err != nil {
		return err
	}
	if b.AlertGroup != "" {
		if err := checkName("BreakGlass.AlertGroup", b.AlertGroup); err != nil {
			return err
		}
	}
	if len(p.ApproverGroups) == 0 {
		return invalid("BreakGlass", "a policy that allows break-glass needs approver groups to review it")
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"BreakGlass.MaxDuration", b.MaxDuration}, {"BreakGlass.Period", b.Period}, {"BreakGlass.ReviewWithin", b.ReviewWithin}} {
		if d.v < 0 || d.v > maxDuration {
			return invalid(d.field, "must be between 0 (default) and %v", maxDuration)
		}
	}
	switch {
	case b.MaxDuration > p.maxDuration():
		return invalid("BreakGlass.MaxDuration", "%v exceeds the policy's MaxDuration %v", b.MaxDuration, p.maxDuration())
	case b.Limit < 0 || b.Limit > MaxBreakGlassLimit:
		return invalid("BreakGlass.Limit", "must be between 0 (once) and %d", MaxBreakGlassLimit)
	case b.ReviewWithin != 0 && b.ReviewWithin < MinNudgeInterval:
		return invalid("BreakGlass.ReviewWithin", "must be 0 (default) or at least %v", MinNudgeInterval)
	}
	return nil
}

// duration is the longest break-glass window under policy p.
func (b *BreakGlass) duration(p *Policy) time.Duration {
	if b.MaxDuration == 0 {
		return min(DefaultBreakGlassDuration, p.maxDuration())
	}
	return b.MaxDuration
}

func (b *BreakGlass) limit() int {
	if b.Limit == 0 {
		return 1
	}
	return b.Limit
}

func (b *BreakGlass) period() time.Duration {
	if b.Period == 0 {
		return DefaultBreakGlassPeriod
	}
	return b.Period
}

func (b *BreakGlass) reviewWithin() time.Duration {
	if b.ReviewWithin == 0 {
		return DefaultReviewWithin
	}
	return b.ReviewWithin
}

func (b *BreakGlass) clone() *BreakGlass {
	if b == nil {
		return nil
	}
	c := *b
	return &c
}

// ReviewState is where a break-glass activation's post-hoc review
// stands.
type ReviewState string

// Review states: pending until an approver confirms or flags it.
const (
	ReviewPending   ReviewState = "pending"
	ReviewConfirmed ReviewState = "confirmed" // an approver found it justified
	ReviewFlagged   ReviewState = "flagged"   // an approver found it not justified
)

// BreakGlassReview is the post-hoc review of a break-glass activation,
// held by its Request.
type BreakGlassReview struct {
	State ReviewState `json:"state"`
	// DueAt is when the review is due (activation + ReviewWithin);
	// NotifyAt when the reviewers are next told it is overdue (zero once
	// reviewed).
	DueAt    time.Time `json:"due_at"`
	NotifyAt time.Time `json:"notify_at,omitzero"`
	// Every is the policy's ReviewWithin at activation: the cadence of
	// the overdue notifications.
	Every time.Duration `json:"every"`
	// By, Comment and At record the review once done.
	By      string    `json:"by,omitempty"`
	Comment string    `json:"comment,omitempty"`
	At      time.Time `json:"at,omitzero"`
}

// Overdue reports whether the review is still pending at or after its
// due time.
func (v *BreakGlassReview) Overdue(now time.Time) bool {
	return v != nil && v.State == ReviewPending && !now.Before(v.DueAt)
}

// BreakGlass activates a grant at once, without approval, for the
// context's actor, who must be in the BreakGlass.Group of the policy
// that n names or whose scope covers n.Scope (ErrForbidden otherwise;
// a directory error is returned as it is; nothing is written either
// way). n.Reason is required as for Submit, and the policy's request
// rule applies; n.Duration 0 is the break-glass MaxDuration, longer is
// ErrDurationTooLong. An actor may break glass Limit times per Period
// under one policy (ErrLimit beyond), counted exactly across Managers
// sharing the store.
//
// The request is approved from now (EventRequestBreakGlass, then
// EventRequestApproved), its approver groups and AlertGroup are
// notified, every Guard run under it is marked break_glass in the trail,
// and its review is pending until an approver confirms or flags it
// (ReviewBreakGlass).
func (m *Manager) BreakGlass(ctx context.Context, n RequestInput) (Request, error) {
	ctx, span := m.tel.start(ctx, "pam.request.break_glass")
	r, err := m.breakGlass(ctx, n)
	if err == nil && span.IsRecording() {
		span.SetAttributes(attrRequest.String(r.ID))
	}
	end(span, err)
	return r, err
}

func (m *Manager) breakGlass(ctx context.Context, n RequestInput) (Request, error) {
	actor, s, p, err := m.input(ctx, &n)
	if err != nil {
		return Request{}, err
	}
	bg := p.BreakGlass
	if bg == nil {
		return Request{}, fmt.Errorf("%w: policy %s does not allow break-glass", ErrForbidden, p.ID)
	}
	member, err := m.isMember(ctx, bg.Group, actor)
	if err != nil {
		return Request{}, err // fail closed: no emergency access the directory cannot vouch for
	}
	if err := s.usable(p); err != nil {
		return Request{}, err
	}
	bind, uses, err := s.bounds(&p.Policy, &n)
	if err != nil {
		return Request{}, err
	}
	d := n.Duration
	if d == 0 {
		d = bg.duration(&p.Policy)
	}
	prefix := breakGlassPrefix(p.ID, actor)
	for range maxAttempts {
		now, err := m.now(ctx)
		if err != nil {
			return Request{}, err
		}
		// Every activation of actor under the policy has the ID prefix
		// and its number: two Managers racing for the same number write
		// the same new request, and the store lets one of them.
		past, err := m.breakGlassHistory(ctx, p.ID, actor, prefix)
		if err != nil {
			return Request{}, err
		}
		r := Request{
			ID: fmt.Sprintf("%s%d", prefix, len(past)+1), Requester: actor, Scope: n.Scope, PolicyID: p.ID, Reason: n.Reason, Ticket: n.Ticket,
			Duration: d, Bind: bind, MaxUses: uses, State: Pending, PolicyVersion: p.Version, CreatedAt: now, PendingUntil: now.Add(p.pendingTTL()), Version: 1,
		}
		// The lifecycle decides (who, how long, how often); then the
		// policy's request rule judges the reason.
		input := ruleInput(&r, now)
		r, events, err := apply(r, ActionBreakGlass, facts{Actor: actor, Now: now, Policy: &p.Policy, BreakGlasser: member, BreakGlassUsed: usedWithin(past, bg, now)})
		if err != nil {
			return Request{}, err
		}
		if err := m.checkRequestRule(ctx, p, input, now); err != nil {
			return Request{}, err
		}
		tx := &Tx{Requests: []Request{r}, Events: events, Messages: m.notifications(ctx, events, r, p, now)}
		err = m.commit(ctx, tx)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return Request{}, err
		}
		m.after(tx)
		return r, nil
	}
	return Request{}, fmt.Errorf("%w: break-glass under policy %s kept racing, gave up after %d attempts", ErrConflict, p.ID, maxAttempts)
}

// breakGlassPrefix is the ID prefix of actor's break-glass requests
// under policy id: a digest, so that IDs say nothing of either and no
// pair shares another's numbers.
func breakGlassPrefix(policyID, actor string) string {
	h := sha256.Sum256([]byte(policyID + "\x00" + actor))
	return "bg_" + hex.EncodeToString(h[:12]) + "_"
}

// breakGlassHistory returns when each of actor's break-glass activations
// under policy id was made.
func (m *Manager) breakGlassHistory(ctx context.Context, policyID, actor, prefix string) ([]time.Time, error) {
	var out []time.Time
	f := RequestFilter{Requester: actor, PolicyIDs: []string{policyID}, Limit: MaxPageSize}
	for {
		page, err := m.store.Requests(ctx, f)
		if err != nil {
			return nil, err
		}
		for i := range page {
			if r := &page[i]; r.BreakGlass != nil && len(r.ID) > len(prefix) && r.ID[:len(prefix)] == prefix {
				out = append(out, r.CreatedAt)
			}
		}
		if len(page) < f.Limit {
			return out, nil
		}
		f.After = page[len(page)-1].ID
	}
}

// usedWithin counts the activations made within the Period up to now:
// those after now - Period.
func usedWithin(past []time.Time, bg *BreakGlass, now time.Time) int {
	from := now.Add(-bg.period())
	n := 0
	for _, t := range past {
		if t.After(from) {
			n++
		}
	}
	return n
}

// ReviewBreakGlass records the actor's post-hoc review of break-glass
// request id: ReviewConfirmed (EventRequestBreakGlassConfirmed) or
// ReviewFlagged (EventRequestBreakGlassFlagged). Members of the
// policy's approver groups and admins may review, never the activator
// (ErrSelfApproval); a request that is not break-glass, or whose review
// is done, is ErrWrongState. A flag on a grant still active also revokes
// it (EventRequestRevoked): every Manager denies it from then on and the
// context of work running under it ends, as with Revoke. The review may
// be recorded whatever became of the grant; it changes nothing else of a
// request that ended.
func (m *Manager) ReviewBreakGlass(ctx context.Context, id string, verdict ReviewState, comment string) (Request, error) {
	switch verdict {
	case ReviewConfirmed:
		return m.act(ctx, id, ActionConfirm, comment)
	case ReviewFlagged:
		return m.act(ctx, id, ActionFlag, comment)
	}
	return Request{}, invalid("verdict", "must be %q or %q, got %q", ReviewConfirmed, ReviewFlagged, verdict)
}

// BreakGlassReviews returns the break-glass activations under the live
// policies whose review is in one of states (none: pending and flagged,
// the ones that need attention), oldest first, each with its state as of
// now. Admins see all of them; others those under policies with an
// approver group they are in (the reviewers).
func (m *Manager) BreakGlassReviews(ctx context.Context, states ...ReviewState) ([]Request, error) {
	actor, err := actorOf(ctx)
	if err != nil {
		return nil, err
	}
	for _, st := range states {
		if st != ReviewPending && st != ReviewConfirmed && st != ReviewFlagged {
			return nil, invalid("states", "unknown review state %q", st)
		}
	}
	if len(states) == 0 {
		states = []ReviewState{ReviewPending, ReviewFlagged}
	}
	admin, err := m.isAdmin(ctx, actor)
	if err != nil {
		return nil, err
	}
	s, err := m.cache.current(ctx)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, c := range s.policies.all() {
		if c.BreakGlass == nil {
			continue
		}
		ok := admin
		if !ok {
			mo, err := m.memberships(ctx, &c.Policy, []string{actor})
			if err != nil {
				return nil, err
			}
			ok = len(mo[actor]) > 0
		}
		if ok {
			ids = append(ids, c.ID)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	sort.Strings(ids)
	now, err := m.now(ctx)
	if err != nil {
		return nil, err
	}
	var out []Request
	f := RequestFilter{PolicyIDs: ids, Limit: MaxPageSize}
	for {
		page, err := m.store.Requests(ctx, f)
		if err != nil {
			return nil, err
		}
		for _, r := range page {
			if r.BreakGlass != nil && slices.Contains(states, r.BreakGlass.State) {
				r.State = r.StateAt(now)
				out = append(out, r)
			}
		}
		if len(page) < f.Limit {
			break
		}
		f.After = page[len(page)-1].ID
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, nil
}
