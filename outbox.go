package pam

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/zerostanding/pam/internal/ident"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Notification tells people that a request needs them or has changed.
type Notification struct {
	// ID identifies the message in the outbox; it stays the same on every
	// attempt, so receivers can drop duplicates (delivery is at least
	// once).
	ID string `json:"id"`
	// Type is the event that caused it: EventRequestSubmitted or
	// EventRequestExtensionRequested (to the approvers);
	// EventRequestApproved, EventRequestDenied, EventRequestExpired,
	// EventRequestRevoked, EventRequestRelinquished, EventRequestExtended
	// or EventRequestExtensionDenied (to the requester);
	// EventRequestBreakGlass (to the approvers and the policy's
	// BreakGlass.AlertGroup), EventRequestBreakGlassOverdue (to the
	// approvers), EventRequestBreakGlassConfirmed or
	// EventRequestBreakGlassFlagged (to the requester);
	// EventRequestReminded (to the approvers who have not decided) and
	// EventRequestEscalated (to the policy's EscalationGroup).
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

// MessageState is where an outbox message stands.
type MessageState string

// Message states.
const (
	MessagePending   MessageState = "pending"   // waiting for its next attempt
	MessageDelivered MessageState = "delivered" // the notifier took it
	MessageFailed    MessageState = "failed"    // parked after its last attempt
)

// Message is one notification to one recipient through one notifier, kept
// in the store's outbox from the commit that causes it until it is
// delivered or parked.
type Message struct {
	ID          string       `json:"id"` // also the receivers' idempotency key
	Notifier    string       `json:"notifier"`
	Recipient   string       `json:"recipient"`
	Type        EventType    `json:"type"`
	Request     Request      `json:"request"`
	State       MessageState `json:"state"`
	Attempts    int          `json:"attempts"`
	CreatedAt   time.Time    `json:"created_at"`
	NextAttempt time.Time    `json:"next_attempt"`
	DeliveredAt time.Time    `json:"delivered_at,omitzero"`
	LastError   string       `json:"last_error,omitempty"`
	// LeaseOwner and LeaseUntil are set by Store.ClaimMessages: the
	// Manager delivering the message, and until when no other may.
	LeaseOwner string    `json:"-"`
	LeaseUntil time.Time `json:"-"`
	// Version is the store's: 1 when written, one more on every claim
	// and every settlement.
	Version int64 `json:"-"`
}

// MessageFilter selects outbox messages. Zero fields match everything.
type MessageFilter struct {
	States    []MessageState
	RequestID string
	After     string // ID > After
	Limit     int    // 0: no limit
}

// Matches reports whether msg passes the filter (not After or Limit).
func (f *MessageFilter) Matches(msg *Message) bool {
	return (len(f.States) == 0 || contains(f.States, msg.State)) && (f.RequestID == "" || msg.RequestID() == f.RequestID)
}

// RequestID returns the ID of the message's request.
func (msg *Message) RequestID() string { return msg.Request.ID }

// NotifierConfig attaches a Notifier. Each has its own messages, so its
// own retry state: one that is down delays no other.
type NotifierConfig struct {
	// Name identifies the notifier in messages; keep it stable across
	// restarts, or messages written for the old name are parked.
	Name     string
	Notifier Notifier
	// MaxAttempts is how many deliveries are tried before the message is
	// parked as failed (and EventNotifyFailed recorded). Default: 10.
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the wait before a retry (doubling
	// from MinBackoff, with jitter). Defaults: 5 seconds and 1 hour.
	MinBackoff, MaxBackoff time.Duration
}

type notifier struct {
	NotifierConfig
}

// outbox holds the notifiers and this Manager's part in delivering the
// store's outbox.
type outbox struct {
	store     OutboxStore // nil when the store keeps no outbox
	notifiers map[string]*notifier
	names     []string      // in Options order
	owner     string        // this Manager's name in leases
	wake      chan struct{} // a commit wrote messages
	timeout   time.Duration // Options.NotifyTimeout
	lease     time.Duration // Options.OutboxLease
	poll      time.Duration // Options.AuditPollInterval
}

// newOutbox validates the notifier options and applies their defaults.
func newOutbox(store Store, opts *Options, owner string) (*outbox, error) {
	if opts.NotifyTimeout < 0 || opts.OutboxLease < 0 || opts.AuditPollInterval < 0 {
		return nil, invalid("Options", "NotifyTimeout, OutboxLease and AuditPollInterval must not be negative")
	}
	o := &outbox{owner: owner, wake: make(chan struct{}, 1), timeout: opts.NotifyTimeout, lease: opts.OutboxLease, poll: opts.AuditPollInterval}
	o.store, _ = store.(OutboxStore)
	if o.timeout == 0 {
		o.timeout = 30 * time.Second
	}
	if o.lease == 0 {
		o.lease = o.timeout + 30*time.Second
	}
	if o.lease <= o.timeout {
		return nil, invalid("Options.OutboxLease", "must exceed NotifyTimeout (%v)", o.timeout)
	}
	if o.poll == 0 {
		o.poll = time.Second
	}
	var err error
	if o.notifiers, o.names, err = newNotifiers(opts); err != nil {
		return nil, err
	}
	if len(o.notifiers) > 0 && o.store == nil {
		return nil, invalid("Options.Notifiers", "the store keeps no outbox (it does not implement OutboxStore)")
	}
	return o, nil
}

// wakeUp tells the dispatcher that a commit wrote messages.
func (o *outbox) wakeUp() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func newNotifiers(opts *Options) (map[string]*notifier, []string, error) {
	cfgs := opts.Notifiers
	if opts.Notifier != nil {
		cfgs = append([]NotifierConfig{{Name: "default", Notifier: opts.Notifier}}, cfgs...)
	}
	out := map[string]*notifier{}
	var names []string
	for i, c := range cfgs {
		field := fmt.Sprintf("Options.Notifiers[%d]", i)
		if c.Notifier == nil {
			return nil, nil, invalid(field+".Notifier", "must not be nil")
		}
		if err := checkName(field+".Name", c.Name); err != nil {
			return nil, nil, err
		}
		if out[c.Name] != nil {
			return nil, nil, invalid(field+".Name", "%q is used twice", c.Name)
		}
		if c.MaxAttempts < 0 || c.MinBackoff < 0 || c.MaxBackoff < 0 {
			return nil, nil, invalid(field, "attempts and backoffs must not be negative")
		}
		if c.MaxAttempts == 0 {
			c.MaxAttempts = 10
		}
		if c.MinBackoff == 0 {
			c.MinBackoff = 5 * time.Second
		}
		if c.MaxBackoff == 0 {
			c.MaxBackoff = time.Hour
		}
		c.MaxBackoff = max(c.MaxBackoff, c.MinBackoff)
		out[c.Name] = &notifier{c}
		names = append(names, c.Name)
	}
	return out, names, nil
}

// notifications returns the messages a request transition's events cause: a new
// request, or a new extension still pending, to every member of its
// approver groups but the requester; a decision, expiry, revocation,
// relinquishment or an extension's outcome to the requester. One message per
// recipient and notifier.
func (m *Manager) notifications(ctx context.Context, events []Event, r Request, p *compiled, now time.Time) []Message {
	if len(m.outbox.notifiers) == 0 {
		return nil
	}
	var out []Message
	for _, e := range events {
		var to []string
		switch e.Type {
		case EventRequestSubmitted:
			if r.State == Pending && p != nil {
				to = m.approverRecipients(ctx, p, r.Requester)
			}
		case EventRequestReminded:
			if p != nil {
				to = m.approverRecipients(ctx, p, r.Requester)
				// Those who decided already are not reminded.
				to = slices.DeleteFunc(to, func(who string) bool { return slices.Contains(approvers(r.Decisions), who) })
			}
		case EventRequestEscalated:
			if p != nil && p.EscalationGroup != "" {
				to = m.groupRecipients(ctx, []string{p.EscalationGroup}, r.Requester)
			}
		case EventRequestExtensionRequested:
			if r.extensionPending() && p != nil {
				to = m.approverRecipients(ctx, p, r.Requester)
			}
		case EventRequestBreakGlass:
			if p != nil {
				groups := make([]string, 0, len(p.ApproverGroups)+1)
				for _, g := range p.ApproverGroups {
					groups = append(groups, g.Group)
				}
				if p.BreakGlass != nil && p.BreakGlass.AlertGroup != "" {
					groups = append(groups, p.BreakGlass.AlertGroup)
				}
				to = m.groupRecipients(ctx, groups, r.Requester)
			}
		case EventRequestBreakGlassOverdue:
			if p != nil {
				to = m.approverRecipients(ctx, p, r.Requester)
			}
		case EventRequestApproved:
			if r.BreakGlass == nil { // the activator knows
				to = []string{r.Requester}
			}
		case EventRequestDenied, EventRequestExpired, EventRequestRevoked, EventRequestRelinquished,
			EventRequestExtended, EventRequestExtensionDenied, EventRequestBreakGlassConfirmed, EventRequestBreakGlassFlagged:
			to = []string{r.Requester}
		}
		for _, name := range m.outbox.names {
			for _, who := range to {
				out = append(out, Message{ID: m.newID("msg"), Notifier: name, Recipient: who, Type: e.Type, Request: r.clone(),
					State: MessagePending, CreatedAt: now, NextAttempt: now, Version: 1})
			}
		}
	}
	return out
}

// deliverBatch is how many messages one pass claims. They are delivered
// concurrently, so a pass takes at most about NotifyTimeout, well within
// the lease.
const deliverBatch = 16

// Deliver makes one pass over the outbox: it claims the messages due now
// (up to 16), delivers them concurrently, and records each outcome:
// delivered, or retried later with backoff, or parked as failed after the
// notifier's MaxAttempts (with an EventNotifyFailed audit event). It
// returns how many it claimed. Run calls it continually; hosts that do
// not call Run can.
func (m *Manager) Deliver(ctx context.Context) (int, error) {
	if len(m.outbox.notifiers) == 0 {
		return 0, nil
	}
	now, err := m.now(ctx)
	if err != nil {
		return 0, err
	}
	msgs, err := m.outbox.store.ClaimMessages(ctx, m.outbox.owner, now, now.Add(m.outbox.lease), deliverBatch)
	if err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	for _, msg := range msgs {
		wg.Go(func() { m.deliver(ctx, msg) })
	}
	wg.Wait()
	return len(msgs), nil
}

func (m *Manager) deliver(ctx context.Context, msg Message) {
	n := m.outbox.notifiers[msg.Notifier]
	var err error
	if n == nil {
		err = fmt.Errorf("no notifier is named %q", msg.Notifier)
	} else {
		sctx, span := m.tel.start(ctx, "pam.notify", attrNotifier.String(msg.Notifier), attrMessage.String(string(msg.Type)),
			attrRequest.String(msg.Request.ID), attribute.Int("pam.message.attempt", msg.Attempts+1))
		nctx, cancel := context.WithTimeout(sctx, m.outbox.timeout)
		err = n.Notifier.Notify(nctx, Notification{ID: msg.ID, Type: msg.Type, Request: msg.Request, Recipients: []string{msg.Recipient}, Attempt: msg.Attempts + 1})
		cancel()
		end(span, err)
	}
	outcome := "delivered"
	now, nerr := m.now(ctx)
	if nerr != nil {
		return // the lease runs out and the message is tried again
	}
	next := msg
	next.Attempts++
	next.Version++
	next.LeaseOwner, next.LeaseUntil = "", time.Time{}
	tx := &Tx{Messages: []Message{next}}
	switch {
	case err == nil:
		tx.Messages[0].State, tx.Messages[0].DeliveredAt, tx.Messages[0].LastError = MessageDelivered, now, ""
	case n == nil || next.Attempts >= n.MaxAttempts:
		err = fmt.Errorf("pam: notify %s of %s through %s, attempt %d of %d: %w", msg.Recipient, msg.Type, msg.Notifier, next.Attempts, max(next.Attempts, attemptsOf(n)), err)
		m.onError(err)
		outcome = "failed"
		tx.Messages[0].State, tx.Messages[0].LastError = MessageFailed, cleanText(err.Error())
		tx.Events = []Event{{Time: now, Type: EventNotifyFailed, RequestID: msg.Request.ID, PolicyID: msg.Request.PolicyID, Task: scopeTask(msg.Request.Scope),
			Outcome: OutcomeFailed, Detail: map[string]string{"message": msg.ID, "notifier": msg.Notifier, "recipient": msg.Recipient,
				"type": string(msg.Type), "attempts": strconv.Itoa(next.Attempts), "error": cleanText(err.Error())}}}
	default:
		m.onError(fmt.Errorf("pam: notify %s of %s through %s, attempt %d of %d: %w", msg.Recipient, msg.Type, msg.Notifier, next.Attempts, n.MaxAttempts, err))
		outcome = "retry"
		wait := n.MinBackoff << min(next.Attempts-1, 30)
		if wait <= 0 || wait > n.MaxBackoff {
			wait = n.MaxBackoff
		}
		wait = wait/2 + rand.N(wait/2+1) // jitter
		tx.Messages[0].NextAttempt, tx.Messages[0].LastError = now.Add(wait), cleanText(err.Error())
	}
	m.tel.deliveries.Add(ctx, 1, metric.WithAttributes(attrNotifier.String(msg.Notifier), attrResult.String(outcome)))
	if cerr := m.commit(ctx, tx); cerr != nil {
		if !errors.Is(cerr, ErrConflict) {
			m.onError(fmt.Errorf("pam: record delivery of message %s: %w", msg.ID, cerr))
		}
		return // another Manager took the message over after the lease ended
	}
	m.published(tx.Events)
}

func attemptsOf(n *notifier) int {
	if n == nil {
		return 0
	}
	return n.MaxAttempts
}

// dispatch delivers until ctx is done: at once when this Manager commits
// messages, and every AuditPollInterval for the rest (retries that came
// due, messages other Managers wrote, leases that ran out).
func (m *Manager) dispatch(ctx context.Context) {
	poll := time.NewTicker(m.outbox.poll)
	defer poll.Stop()
	for ctx.Err() == nil {
		n, err := m.Deliver(ctx)
		if err != nil && ctx.Err() == nil {
			m.onError(fmt.Errorf("pam: outbox: %w", err))
		}
		if n > 0 && err == nil {
			continue
		}
		select {
		case <-ctx.Done():
		case <-m.outbox.wake:
		case <-poll.C:
		}
	}
}

// Messages lists outbox messages matching f, ordered by ID, one page at a
// time: pass next as f.After for the following page ("" at the end).
// Failed messages are the ones to look at.
// Only admins may (ErrForbidden).
func (m *Manager) Messages(ctx context.Context, f MessageFilter) (msgs []Message, next string, err error) {
	if _, err := m.requireAdmin(ctx); err != nil {
		return nil, "", err
	}
	if f.Limit < 0 || f.Limit > MaxPageSize {
		return nil, "", invalid("Limit", "must be between 0 and %d", MaxPageSize)
	}
	if f.Limit == 0 {
		f.Limit = DefaultPageSize
	}
	if m.outbox.store == nil {
		return nil, "", nil // nothing is written to an outbox the store does not keep
	}
	msgs, err = m.outbox.store.Messages(ctx, f)
	if err != nil {
		return nil, "", err
	}
	if len(msgs) == f.Limit {
		next = msgs[len(msgs)-1].ID
	}
	return msgs, next, nil
}

func (m *Manager) approverRecipients(ctx context.Context, p *compiled, requester string) []string {
	groups := make([]string, len(p.ApproverGroups))
	for i, g := range p.ApproverGroups {
		groups[i] = g.Group
	}
	return m.groupRecipients(ctx, groups, requester)
}

// groupRecipients returns the members of groups, canonical and once
// each, but not the requester.
func (m *Manager) groupRecipients(ctx context.Context, groups []string, requester string) []string {
	seen := map[string]bool{requester: true}
	var to []string
	for _, g := range groups {
		members, err := m.dir.Members(ctx, g)
		if err != nil {
			m.onError(fmt.Errorf("pam: members of %s: %w", g, err))
			continue
		}
		for _, who := range members {
			if c, err := ident.Canonical(who); err == nil && !seen[c] {
				seen[c] = true
				to = append(to, c)
			}
		}
	}
	return to
}

// OldestPending returns how long the oldest pending outbox message has
// waited since it was written, 0 when none is pending (or the store
// keeps no outbox). It reads one message: cheap enough for a readiness
// probe or a metrics collection. A notifier that is down shows here
// first: its messages pend, retried with backoff, until they are parked.
func (m *Manager) OldestPending(ctx context.Context) (time.Duration, error) {
	if m.outbox.store == nil {
		return 0, nil
	}
	msgs, err := m.outbox.store.Messages(ctx, MessageFilter{States: []MessageState{MessagePending}, Limit: 1})
	if err != nil || len(msgs) == 0 {
		return 0, err
	}
	now, err := m.now(ctx)
	if err != nil {
		return 0, err
	}
	return max(now.Sub(msgs[0].CreatedAt), 0), nil
}
