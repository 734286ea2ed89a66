package pam_test

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/zerostanding/pam"
)

// The state-machine test drives random sequences of submissions (some
// bound to a mailbox, some limited in runs, some scheduled to start
// later), decisions, cancellations, revocations, relinquishments,
// extensions and decisions on them, clock moves, group changes, sweeps
// and Guards (on either mailbox, or none) against a small reference
// model, and checks after
// every step that the engine agrees with the model and that the
// invariants hold.

type modelRequest struct {
	id, requester, policy string
	duration              time.Duration
	start                 time.Time // zero: when approved
	pendingUntil          time.Time
	state                 pam.State // as recorded by the model's transitions
	approvedAt, expiresAt time.Time // the window
	decided               map[string]pam.Verdict
	approvals             []string // approvers in order
	terminalSeen          pam.State
	// Break-glass: activated at createdAt, its review pending until
	// reviewed, overdue again at bgNotifyAt.
	breakGlass    bool
	createdAt     time.Time
	bgNotifyAt    time.Time
	bgReviewed    bool
	bind          string // the mailbox the grant is bound to, or ""
	maxUses, uses int

	// The latest extension: asked (ext set), pending until decided.
	ext          bool
	extBy        time.Duration
	extPending   bool
	extDecided   map[string]pam.Verdict
	extApprovals []string
}

// smMailboxes are the mailboxes requests bind and operations name.
var smMailboxes = []string{"ceo@contoso.com", "cfo@contoso.com"}

// extending: an open window whose extension waits for a decision.
func (r *modelRequest) extending(now time.Time) bool {
	return r.stateAt(now) == pam.Approved && !now.Before(r.approvedAt) && r.extPending
}

// smMaxWindow is the policies' MaxDuration, the default, which caps
// extensions too.
const smMaxWindow = pam.DefaultMaxWindow

func (r *modelRequest) stateAt(now time.Time) pam.State {
	switch {
	case r.state == pam.Pending && !now.Before(r.pendingUntil):
		return pam.Expired
	case r.state == pam.Approved && !now.Before(r.expiresAt):
		return pam.Expired
	}
	return r.state
}

type modelPolicy struct {
	id, task   string
	groups     []pam.ApproverGroup
	ttl        time.Duration
	breakGlass bool // security's members may break glass, for an hour, once a day
}

var smPolicies = []modelPolicy{
	{id: "move", task: "New-MoveRequest", groups: []pam.ApproverGroup{{Group: "managers", MinApprovals: 2}}, ttl: 24 * time.Hour},
	{id: "journal", task: "Set-JournalRule", groups: []pam.ApproverGroup{{Group: "managers"}, {Group: "security"}}, ttl: 3 * time.Hour, breakGlass: true},
}

var smUsers = []string{"alice", "bob", "carol", "dave", "erin", "admin"}

type machine struct {
	e        *env
	members  map[string]map[string]bool
	requests []*modelRequest
	seq      int64
}

func (m *machine) member(group, who string) bool { return m.members[group][who] }

// quorum is the model's own quorum: try every assignment of approvers to
// groups (a different algorithm from the engine's matching).
func (m *machine) quorum(p modelPolicy, approvers []string) bool {
	var eligible []string
	for _, a := range approvers {
		for _, g := range p.groups {
			if m.member(g.Group, a) {
				eligible = append(eligible, a)
				break
			}
		}
	}
	need := make([]int, len(p.groups))
	for i, g := range p.groups {
		need[i] = max(g.MinApprovals, 1)
	}
	var try func(i int) bool
	try = func(i int) bool {
		done := true
		for _, n := range need {
			if n > 0 {
				done = false
			}
		}
		if done {
			return true
		}
		if i == len(eligible) {
			return false
		}
		for gi, g := range p.groups {
			if need[gi] > 0 && m.member(g.Group, eligible[i]) {
				need[gi]--
				ok := try(i + 1)
				need[gi]++
				if ok {
					return true
				}
			}
		}
		return try(i + 1) // this approver fills no seat
	}
	return try(0)
}

func policyOf(id string) modelPolicy {
	for _, p := range smPolicies {
		if p.id == id {
			return p
		}
	}
	panic(id)
}

// expectEvents checks the events committed since the last step.
func (m *machine) expectEvents(t *rapid.T, want ...pam.EventType) {
	got := m.e.eventsSince(m.seq)
	if len(got) > 0 {
		m.seq = got[len(got)-1].Seq
	}
	gotTypes := types(got)
	if !slices.Equal(gotTypes, want) {
		t.Fatalf("events %v, want %v", gotTypes, want)
	}
}

func (m *machine) pick(t *rapid.T) *modelRequest {
	if len(m.requests) == 0 {
		t.Skip("no requests yet")
	}
	return rapid.SampledFrom(m.requests).Draw(t, "request")
}

func (m *machine) check(t *rapid.T, err error, want error) {
	if want == nil && err != nil {
		t.Fatalf("unexpected error %v", err)
	}
	if want != nil && !errors.Is(err, want) {
		t.Fatalf("error %v, want %v", err, want)
	}
}

func (m *machine) decide(t *rapid.T, v pam.Verdict) {
	r := m.pick(t)
	now := m.e.clk.Now()
	// Random picks rarely reach a quorum: draw pending requests and
	// members of their approver groups more often, so that grants exist
	// for the steps that act on them.
	var pending, extending []*modelRequest
	for _, q := range m.requests {
		switch {
		case q.stateAt(now) == pam.Pending:
			pending = append(pending, q)
		case q.extending(now):
			extending = append(extending, q)
		}
	}
	if len(extending) > 0 && rapid.Bool().Draw(t, "an extension?") {
		r = rapid.SampledFrom(extending).Draw(t, "extending grant")
	} else if len(pending) > 0 && rapid.Bool().Draw(t, "a pending request?") {
		r = rapid.SampledFrom(pending).Draw(t, "pending request")
	}
	p := policyOf(r.policy)
	candidates := smUsers
	if rapid.Bool().Draw(t, "a member?") {
		var members []string
		for _, who := range smUsers {
			for _, g := range p.groups {
				if m.member(g.Group, who) && !slices.Contains(members, who) {
					members = append(members, who)
				}
			}
		}
		if len(members) > 0 {
			candidates = members
		}
	}
	who := rapid.SampledFrom(candidates).Draw(t, "approver")
	onExtension := r.extending(now)
	decided := r.decided
	if onExtension {
		decided = r.extDecided
	}
	var want error
	switch {
	case who != r.requester && !m.mayView(r, who):
		want = pam.ErrNotFound // who may not see it may not learn it exists
	case r.stateAt(now) != pam.Pending && !onExtension:
		want = pam.ErrWrongState
	case who == r.requester:
		want = pam.ErrSelfApproval
	case decided[who] != "":
		want = pam.ErrAlreadyDecided
	default:
		eligible := false
		for _, g := range p.groups {
			eligible = eligible || m.member(g.Group, who)
		}
		switch {
		case !eligible && who == "admin":
			want = pam.ErrForbidden
		case !eligible:
			want = pam.ErrNotFound // who may not see it may not learn it exists
		}
	}
	var err error
	if v == pam.Approve {
		_, err = m.e.m.Approve(m.e.as(who), r.id, "")
	} else {
		_, err = m.e.m.Deny(m.e.as(who), r.id, "")
	}
	m.check(t, err, want)
	if want != nil {
		m.expectEvents(t)
		return
	}
	decided[who] = v
	if onExtension {
		switch {
		case v == pam.Deny:
			r.extPending = false
			m.expectEvents(t, pam.EventRequestDecision, pam.EventRequestExtensionDenied)
		case m.quorum(p, append(r.extApprovals, who)):
			r.extApprovals = append(r.extApprovals, who)
			r.extPending, r.expiresAt = false, r.expiresAt.Add(r.extBy)
			m.expectEvents(t, pam.EventRequestDecision, pam.EventRequestExtended)
		default:
			r.extApprovals = append(r.extApprovals, who)
			m.expectEvents(t, pam.EventRequestDecision)
		}
		return
	}
	if v == pam.Deny {
		r.state = pam.Denied
		m.expectEvents(t, pam.EventRequestDecision, pam.EventRequestDenied)
		return
	}
	r.approvals = append(r.approvals, who)
	if m.quorum(p, r.approvals) {
		r.state, r.approvedAt = pam.Approved, now
		if r.start.After(now) {
			r.approvedAt = r.start
		}
		r.expiresAt = r.approvedAt.Add(r.duration)
		m.expectEvents(t, pam.EventRequestDecision, pam.EventRequestApproved)
		return
	}
	m.expectEvents(t, pam.EventRequestDecision)
}

// mayView is the engine's read rule: the requester, an admin, or a member
// of an approver group of the request's policy.
func (m *machine) mayView(r *modelRequest, who string) bool {
	ok := who == r.requester || who == "admin"
	for _, g := range policyOf(r.policy).groups {
		ok = ok || m.member(g.Group, who)
	}
	return ok
}

func (m *machine) Submit(t *rapid.T) {
	who := rapid.SampledFrom(smUsers[:5]).Draw(t, "requester")
	p := rapid.SampledFrom(smPolicies).Draw(t, "policy")
	d := rapid.SampledFrom([]time.Duration{time.Hour, 2 * time.Hour, 4 * time.Hour}).Draw(t, "duration")
	now := m.e.clk.Now()
	// Scheduled: none, in the past (taken as now), soon, or after the
	// pending TTL of the journal policy.
	start := rapid.SampledFrom([]time.Duration{0, 0, -time.Minute, time.Nanosecond, 30 * time.Minute, 4 * time.Hour}).Draw(t, "start")
	var at time.Time
	if start != 0 {
		at = now.Add(start)
	}
	bind := rapid.SampledFrom(append([]string{""}, smMailboxes...)).Draw(t, "bind")
	uses := rapid.IntRange(0, 2).Draw(t, "uses")
	n := pam.RequestInput{Scope: pam.TaskScope(p.task), Reason: "r", Duration: d, Start: at, MaxUses: uses}
	if bind != "" {
		n.Bind = map[string]any{"mailbox": bind}
	}
	r, err := m.e.m.Submit(m.e.as(who), n)
	m.check(t, err, nil)
	if !at.After(now) {
		at = time.Time{}
	}
	if !r.Start.Equal(at) {
		t.Fatalf("request %s starts %v, model %v", r.ID, r.Start, at)
	}
	m.requests = append(m.requests, &modelRequest{id: r.ID, requester: who, policy: p.id, duration: d, start: at,
		pendingUntil: now.Add(p.ttl), state: pam.Pending, decided: map[string]pam.Verdict{}, bind: bind, maxUses: uses})
	m.expectEvents(t, pam.EventRequestSubmitted)
}

func (m *machine) Approve(t *rapid.T) { m.decide(t, pam.Approve) }

func (m *machine) Deny(t *rapid.T) {
	// Denials end requests; draw them less often than approvals, unless
	// an extension waits (denying it ends nothing).
	extending := slices.ContainsFunc(m.requests, func(r *modelRequest) bool { return r.extending(m.e.clk.Now()) })
	if !extending && rapid.IntRange(0, 3).Draw(t, "deny?") != 0 {
		t.Skip("not this time")
	}
	m.decide(t, pam.Deny)
}

func (m *machine) Cancel(t *rapid.T) {
	r := m.pick(t)
	who := rapid.SampledFrom(smUsers).Draw(t, "who")
	var want error
	switch {
	case who != r.requester && !m.mayView(r, who):
		want = pam.ErrNotFound
	case r.stateAt(m.e.clk.Now()) != pam.Pending:
		want = pam.ErrWrongState
	case who != r.requester:
		want = pam.ErrForbidden
	}
	_, err := m.e.m.Cancel(m.e.as(who), r.id, "")
	m.check(t, err, want)
	if want == nil {
		r.state = pam.Canceled
		m.expectEvents(t, pam.EventRequestCanceled)
		return
	}
	m.expectEvents(t)
}

func (m *machine) Revoke(t *rapid.T) {
	r := m.pick(t)
	who := rapid.SampledFrom(smUsers).Draw(t, "who")
	var want error
	allowed := who == r.requester || who == "admin"
	for _, g := range policyOf(r.policy).groups {
		allowed = allowed || m.member(g.Group, who)
	}
	switch {
	case !allowed:
		want = pam.ErrNotFound // those who may revoke are those who may see it
	case r.stateAt(m.e.clk.Now()) != pam.Approved:
		want = pam.ErrWrongState
	}
	_, err := m.e.m.Revoke(m.e.as(who), r.id, "")
	m.check(t, err, want)
	if want == nil {
		r.state = pam.Revoked
		m.expectEvents(t, pam.EventRequestRevoked)
		return
	}
	m.expectEvents(t)
}

// Relinquish: only the holder ends their own active grant; anyone else
// who may see the request is forbidden, and to the rest it does not exist.
func (m *machine) Relinquish(t *rapid.T) {
	// Approved requests are rare among random ones, and their holders
	// among random users: draw them more often.
	r := m.pick(t)
	var active []*modelRequest
	for _, q := range m.requests {
		if q.stateAt(m.e.clk.Now()) == pam.Approved {
			active = append(active, q)
		}
	}
	if len(active) > 0 && rapid.Bool().Draw(t, "an active grant?") {
		r = rapid.SampledFrom(active).Draw(t, "grant")
	}
	who := rapid.SampledFrom(smUsers).Draw(t, "who")
	if rapid.Bool().Draw(t, "its holder?") {
		who = r.requester
	}
	var want error
	switch {
	case who != r.requester && !m.mayView(r, who):
		want = pam.ErrNotFound
	case r.stateAt(m.e.clk.Now()) != pam.Approved:
		want = pam.ErrWrongState
	case who != r.requester:
		want = pam.ErrForbidden
	}
	got, err := m.e.m.Relinquish(m.e.as(who), r.id, "done early")
	m.check(t, err, want)
	if want != nil {
		m.expectEvents(t)
		return
	}
	if got.State != pam.Relinquished || got.ClosedBy != r.requester {
		t.Fatalf("relinquished request %s is %s, closed by %q", r.id, got.State, got.ClosedBy)
	}
	r.state = pam.Relinquished
	m.expectEvents(t, pam.EventRequestRelinquished)
}

// Extend: only the holder of an open window with no extension pending,
// within the cap on the whole window.
func (m *machine) Extend(t *rapid.T) {
	now := m.e.clk.Now()
	r := m.pick(t)
	var open []*modelRequest
	for _, q := range m.requests {
		if q.stateAt(now) == pam.Approved {
			open = append(open, q)
		}
	}
	if len(open) > 0 && rapid.Bool().Draw(t, "an active grant?") {
		r = rapid.SampledFrom(open).Draw(t, "grant")
	}
	who := rapid.SampledFrom(smUsers).Draw(t, "who")
	if rapid.Bool().Draw(t, "its holder?") {
		who = r.requester
	}
	by := rapid.SampledFrom([]time.Duration{time.Nanosecond, 30 * time.Minute, time.Hour, 20 * time.Hour, 24 * time.Hour}).Draw(t, "by")
	var want error
	switch {
	case who != r.requester && !m.mayView(r, who):
		want = pam.ErrNotFound
	case r.stateAt(now) != pam.Approved || now.Before(r.approvedAt) || r.extPending:
		want = pam.ErrWrongState
	case who != r.requester:
		want = pam.ErrForbidden
	case r.expiresAt.Sub(r.approvedAt)+by > smMaxWindow:
		want = pam.ErrDurationTooLong
	}
	_, err := m.e.m.Extend(m.e.as(who), r.id, by, "more")
	m.check(t, err, want)
	if want != nil {
		m.expectEvents(t)
		return
	}
	r.ext, r.extBy, r.extPending = true, by, true
	r.extDecided, r.extApprovals = map[string]pam.Verdict{}, nil
	m.expectEvents(t, pam.EventRequestExtensionRequested)
}

func (m *machine) Advance(t *rapid.T) {
	now := m.e.clk.Now()
	steps := []time.Duration{time.Nanosecond, time.Minute, 59 * time.Minute, time.Hour, 3 * time.Hour, 25 * time.Hour}
	// Land exactly on, just before and just after the next deadlines.
	for _, r := range m.requests {
		for _, d := range []time.Time{r.pendingUntil, r.approvedAt, r.expiresAt} {
			if d.After(now) {
				steps = append(steps, d.Sub(now)-time.Nanosecond, d.Sub(now), d.Sub(now)+time.Nanosecond)
			}
		}
	}
	step := rapid.SampledFrom(steps).Draw(t, "step")
	if step <= 0 {
		t.Skip("no forward step")
	}
	m.e.clk.Add(step)
	m.expectEvents(t)
}

func (m *machine) ChangeGroup(t *rapid.T) {
	group := rapid.SampledFrom([]string{"managers", "security"}).Draw(t, "group")
	members := rapid.SliceOfDistinct(rapid.SampledFrom(smUsers[:5]), func(s string) string { return s }).Draw(t, "members")
	if err := m.e.dir.SetMembers(group, members...); err != nil {
		t.Fatal(err)
	}
	m.members[group] = map[string]bool{}
	for _, who := range members {
		m.members[group][who] = true
	}
}

func (m *machine) Guard(t *rapid.T) {
	who := rapid.SampledFrom(smUsers[:5]).Draw(t, "who")
	task := rapid.SampledFrom([]string{"New-MoveRequest", "Set-JournalRule", "Get-Mailbox"}).Draw(t, "task")
	now := m.e.clk.Now()
	// Random picks rarely find a grant: draw a holder and the task of
	// their grant more often, so that runs are taken and spent.
	var held []*modelRequest
	for _, r := range m.requests {
		if r.stateAt(now) == pam.Approved {
			held = append(held, r)
		}
	}
	if len(held) > 0 && rapid.Bool().Draw(t, "a holder?") {
		r := rapid.SampledFrom(held).Draw(t, "held grant")
		who, task = r.requester, policyOf(r.policy).task
	}
	covering := ""
	for _, p := range smPolicies {
		if p.task == task {
			covering = p.id
		}
	}
	mailbox := rapid.SampledFrom(append([]string{""}, smMailboxes...)).Draw(t, "mailbox")
	var params map[string]any
	if mailbox != "" {
		params = map[string]any{"mailbox": mailbox}
	}
	// The grants that cover the operation: active, bound to nothing or
	// to its mailbox, with runs left. The engine runs under the best of
	// them: one that does not count runs, else one that ends last.
	var cands []*modelRequest
	for _, r := range m.requests {
		if r.requester == who && r.policy == covering && r.stateAt(now) == pam.Approved && !now.Before(r.approvedAt) &&
			(r.bind == "" || r.bind == mailbox) && (r.maxUses == 0 || r.uses < r.maxUses) {
			cands = append(cands, r)
		}
	}
	// The engine's order: not break-glass, then not counting runs,
	// then the one that ends last.
	better := func(a, b *modelRequest) bool {
		if a.breakGlass != b.breakGlass {
			return !a.breakGlass
		}
		if (a.maxUses == 0) != (b.maxUses == 0) {
			return a.maxUses == 0
		}
		return a.expiresAt.After(b.expiresAt)
	}
	ran, err := m.e.guard(who, task, params)
	switch {
	case covering == "":
		if !ran || err != nil {
			t.Fatalf("uncovered %s: ran %v, %v", task, ran, err)
		}
		m.expectEvents(t)
	case len(cands) > 0:
		if !ran || err != nil {
			t.Fatalf("%s with an active grant: ran %v, %v", task, ran, err)
		}
		// Which grant gave a run: the one whose Uses moved, one of the
		// best; none when the best counts no runs.
		var used *modelRequest
		for _, r := range cands {
			got, err := m.e.m.Request(m.e.admin(), r.id)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case got.Uses == r.uses:
			case got.Uses == r.uses+1 && used == nil:
				used = r
			default:
				t.Fatalf("request %s: %d runs used, model %d", r.id, got.Uses, r.uses)
			}
		}
		for _, r := range cands {
			if used != nil && better(r, used) || used == nil && r.maxUses != 0 && !slices.ContainsFunc(cands, func(c *modelRequest) bool { return c.maxUses == 0 && !c.breakGlass }) && !r.breakGlass {
				t.Fatalf("Guard ran under %v, but %s was a better grant", used, r.id)
			}
		}
		if used == nil {
			m.expectEvents(t, pam.EventGuardAllowed, pam.EventGuardFinished)
			return
		}
		used.uses++
		if used.uses == used.maxUses {
			m.expectEvents(t, pam.EventGuardAllowed, pam.EventRequestSpent, pam.EventGuardFinished)
		} else {
			m.expectEvents(t, pam.EventGuardAllowed, pam.EventGuardFinished)
		}
	default:
		if ran || !errors.Is(err, pam.ErrNotApproved) {
			t.Fatalf("%s without an active grant: ran %v, %v", task, ran, err)
		}
		m.expectEvents(t, pam.EventGuardDenied)
	}
}

func (m *machine) Sweep(t *rapid.T) {
	now := m.e.clk.Now()
	var want []pam.EventType
	var expiring []*modelRequest
	for _, r := range m.requests {
		if !r.state.Terminal() && r.stateAt(now) == pam.Expired {
			expiring = append(expiring, r)
			want = append(want, pam.EventRequestExpired)
		}
	}
	// Break-glass reviews past due are notified again, once a day from
	// the activation; a sweep that missed days does not make them up.
	var overdue []*modelRequest
	for _, r := range m.requests {
		if r.breakGlass && !r.bgReviewed && !now.Before(r.bgNotifyAt) {
			overdue = append(overdue, r)
			want = append(want, pam.EventRequestBreakGlassOverdue)
		}
	}
	n, err := m.e.m.Sweep(t.Context())
	m.check(t, err, nil)
	if n != len(expiring)+len(overdue) {
		t.Fatalf("Sweep recorded %d, want %d", n, len(expiring)+len(overdue))
	}
	for _, r := range expiring {
		r.state = pam.Expired
	}
	for _, r := range overdue {
		const day = 24 * time.Hour
		r.bgNotifyAt = r.bgNotifyAt.Add((now.Sub(r.bgNotifyAt)/day + 1) * day)
	}
	// One Sweep records them in the order the store finds them due.
	got := m.e.eventsSince(m.seq)
	if len(got) > 0 {
		m.seq = got[len(got)-1].Seq
	}
	gotTypes := types(got)
	slices.Sort(gotTypes)
	slices.Sort(want)
	if !slices.Equal(gotTypes, want) {
		t.Fatalf("Sweep wrote %v, want %v", gotTypes, want)
	}
}

// BreakGlass: a member of security acts at once under the journal
// policy, once a day; anyone else is refused, and nothing is written.
func (m *machine) BreakGlass(t *rapid.T) {
	who := rapid.SampledFrom(smUsers[:5]).Draw(t, "who")
	now := m.e.clk.Now()
	used := 0
	for _, r := range m.requests {
		if r.breakGlass && r.requester == who && r.createdAt.After(now.Add(-24*time.Hour)) {
			used++
		}
	}
	r, err := m.e.m.BreakGlass(m.e.as(who), pam.RequestInput{PolicyID: "journal", Reason: "r"})
	switch {
	case !m.member("security", who):
		m.check(t, err, pam.ErrForbidden)
		m.expectEvents(t)
		return
	case used > 0:
		m.check(t, err, pam.ErrLimit)
		m.expectEvents(t)
		return
	}
	m.check(t, err, nil)
	m.requests = append(m.requests, &modelRequest{id: r.ID, requester: who, policy: "journal", duration: time.Hour,
		pendingUntil: now, state: pam.Approved, approvedAt: now, expiresAt: now.Add(time.Hour), decided: map[string]pam.Verdict{},
		breakGlass: true, createdAt: now, bgNotifyAt: now.Add(24 * time.Hour)})
	m.expectEvents(t, pam.EventRequestBreakGlass, pam.EventRequestApproved)
}

// Review: someone confirms or flags a break-glass use; a flag on a grant
// still active revokes it.
func (m *machine) Review(t *rapid.T) {
	var glass []*modelRequest
	for _, r := range m.requests {
		if r.breakGlass {
			glass = append(glass, r)
		}
	}
	if len(glass) == 0 {
		t.Skip("no break-glass use")
	}
	r := rapid.SampledFrom(glass).Draw(t, "use")
	who := rapid.SampledFrom(smUsers).Draw(t, "reviewer")
	flag := rapid.Bool().Draw(t, "flag?")
	verdict := pam.ReviewConfirmed
	if flag {
		verdict = pam.ReviewFlagged
	}
	now := m.e.clk.Now()
	_, err := m.e.m.ReviewBreakGlass(m.e.as(who), r.id, verdict, "")
	switch {
	case who == r.requester:
		m.check(t, err, pam.ErrSelfApproval)
	case !m.mayView(r, who):
		m.check(t, err, pam.ErrNotFound)
	case r.bgReviewed:
		m.check(t, err, pam.ErrWrongState)
	default:
		m.check(t, err, nil)
		r.bgReviewed = true
		if !flag {
			m.expectEvents(t, pam.EventRequestBreakGlassConfirmed)
			return
		}
		if r.stateAt(now) == pam.Approved {
			r.state, r.terminalSeen = pam.Revoked, ""
			m.expectEvents(t, pam.EventRequestBreakGlassFlagged, pam.EventRequestRevoked)
			return
		}
		m.expectEvents(t, pam.EventRequestBreakGlassFlagged)
		return
	}
	m.expectEvents(t)
}

// Check runs after every step.
func (m *machine) Check(t *rapid.T) {
	now := m.e.clk.Now()
	for _, r := range m.requests {
		got, err := m.e.m.Request(m.e.admin(), r.id)
		if err != nil {
			t.Fatal(err)
		}
		want := r.stateAt(now)
		if got.State != want {
			t.Fatalf("request %s: engine %s, model %s", r.id, got.State, want)
		}
		if r.terminalSeen != "" && got.State != r.terminalSeen {
			t.Fatalf("request %s left terminal state %s for %s", r.id, r.terminalSeen, got.State)
		}
		if got.State.Terminal() {
			r.terminalSeen = got.State
		}
		if got.Uses != r.uses || got.MaxUses != r.maxUses {
			t.Fatalf("request %s: %d of %d runs used, model %d of %d", r.id, got.Uses, got.MaxUses, r.uses, r.maxUses)
		}
		if got.State == pam.Approved && (!got.ApprovedAt.Equal(r.approvedAt) || !got.ExpiresAt.Equal(r.expiresAt)) {
			t.Fatalf("request %s window %v..%v, model %v..%v", r.id, got.ApprovedAt, got.ExpiresAt, r.approvedAt, r.expiresAt)
		}
		if got.Scheduled(now) != (got.State == pam.Approved && now.Before(r.approvedAt)) {
			t.Fatalf("request %s: Scheduled %v at %v, model opens at %v", r.id, got.Scheduled(now), now, r.approvedAt)
		}
		switch {
		case r.ext != (got.Extension != nil):
			t.Fatalf("request %s: extension %+v, model asked %v", r.id, got.Extension, r.ext)
		case got.ExtensionPending(now) != (got.State == pam.Approved && r.extPending):
			t.Fatalf("request %s: extension pending %v, model %v", r.id, got.ExtensionPending(now), r.extPending)
		case r.ext && r.state.Terminal() && got.Extension.State == pam.Pending:
			t.Fatalf("request %s is %s with its extension still pending", r.id, got.State)
		}
		var approvers []string
		for _, d := range got.Decisions {
			if d.Verdict == pam.Approve {
				approvers = append(approvers, d.Approver)
			}
		}
		sort.Strings(approvers)
		if len(slices.Compact(slices.Clone(approvers))) != len(approvers) {
			t.Fatalf("request %s: an approver counted twice: %v", r.id, approvers)
		}
	}
}

func TestStateMachine(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		e := newEnv(t)
		for _, p := range smPolicies {
			pol := pam.Policy{ID: p.id, Scope: pam.TaskScope(p.task), Approval: pam.Manual, ApproverGroups: p.groups, PendingTTL: p.ttl}
			if p.breakGlass {
				pol.BreakGlass = &pam.BreakGlass{Group: "security", MaxDuration: time.Hour}
			}
			e.policy(pol)
		}
		m := &machine{e: e, members: map[string]map[string]bool{}}
		for g, members := range map[string][]string{"managers": {"bob", "carol", "dave"}, "security": {"carol", "erin"}} {
			if err := e.dir.SetMembers(g, members...); err != nil {
				t.Fatal(err)
			}
			m.members[g] = map[string]bool{}
			for _, who := range members {
				m.members[g][who] = true
			}
		}
		m.seq = e.lastSeq()
		t.Repeat(rapid.StateMachineActions(m))
	})
}

func (m *machine) String() string { return fmt.Sprintf("%d requests", len(m.requests)) }
