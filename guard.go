package pam

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/zerostanding/pam/internal/rules"
)

// Op is one concrete call of a task, passed to Guard and Check.
type Op struct {
	Task string `json:"task"`
	// Params are the operation's parameters, visible to policy conditions
	// as input.op.params. Values should be JSON-like: strings, numbers,
	// booleans, nil, []any, map[string]any.
	Params map[string]any `json:"params,omitempty"`
}

// CheckResult is Guard's decision and why, as Check returns it.
type CheckResult struct {
	Allowed bool    `json:"allowed"`
	Outcome Outcome `json:"outcome"`
	Actor   string  `json:"actor"`
	Task    string  `json:"task"`
	// Policies lists the candidate policies for the task and what each
	// contributed.
	Policies []PolicyCheck `json:"policies"`
	// At is the time of the decision.
	At time.Time `json:"at"`
	// Deadline is when the earliest grant used ends: Guard's fn runs with
	// this context deadline.
	Deadline time.Time `json:"deadline,omitzero"`
	// Err is the error Guard returns when not allowed.
	Err error `json:"-"`
	// ParamsError, when set, says how the operation's parameters fail
	// its task's declaration in the Catalog: no condition ran, and every
	// conditional policy on the task covers the operation.
	ParamsError string `json:"params_error,omitempty"`

	rev    int64          // the policy revision decided on
	params map[string]any // the operation's, for the audit trail
	audits []*ParamAudit  // of the covering policies
}

// PolicyCheck explains one candidate policy.
type PolicyCheck struct {
	PolicyID string `json:"policy_id"`
	// Condition is "" when the policy has none, else its outcome: "true",
	// "false", "undefined", "not boolean" or "error" (a condition that
	// ran past Options.ConditionTimeout is an error).
	Condition string `json:"condition,omitempty"`
	// ConditionError says why the condition could not be evaluated. Check
	// gives the text to admins only; other actors get
	// ConditionErrorHidden. Guard events keep the text for admins
	// ("condition_error").
	ConditionError string `json:"condition_error,omitempty"`
	Covered        bool   `json:"covered"`
	// Grant is the request that satisfies the policy, if any.
	Grant              string `json:"grant,omitempty"`
	grantVersion       int64
	grantLimited       bool // the grant limits its runs: a run takes one
	grantPolicyVersion int64
	ExpiresAt          time.Time `json:"expires_at,omitzero"`
	// BreakGlass: Grant is a break-glass request (Manager.BreakGlass);
	// the run's guard.allowed says so (detail break_glass).
	BreakGlass bool `json:"break_glass,omitempty"`
	// Missing says why no grant satisfies a covering policy, and what the
	// actor can do about it: that a request of theirs is pending (its ID,
	// the approvals so far, the approver groups it waits for), or that
	// they may not request under the policy at all.
	Missing string `json:"missing,omitempty"`
	// Pending is the ID of the actor's pending request under the policy,
	// when no grant satisfies it and one is pending.
	Pending string `json:"pending,omitempty"`
	// Ineligible: no grant satisfies the policy, and the actor may not
	// request under it (not in its RequesterGroups, or the directory
	// could not tell).
	Ineligible bool `json:"ineligible,omitempty"`
}

// Guard runs fn if the context's actor may perform op now, and audits it.
//
//  1. No actor in ctx: ErrNoActor.
//  2. The policies that cover op are found by task (roles and role groups
//     expanded through the catalog); conditions are evaluated only for
//     candidates that carry one, and anything but false counts as
//     covered.
//  3. None covers op: fn runs without audit (or, with
//     Options.DenyUncovered, Guard returns ErrNoPolicy).
//  4. System accounts run covered operations without a grant; each pass
//     is audited.
//  5. Otherwise every covering policy needs an active grant of the actor,
//     approved under its current MinGrantVersion, whose scope includes the
//     task. Missing: a *NotApprovedError (ErrNotApproved) naming the task
//     and policy.
//  6. A guard.allowed event is stored before fn runs; if it cannot be,
//     fn does not run and Guard returns ErrAudit. When the store fails
//     without saying whether it stored the start (a reply lost), a start
//     that was stored gets a guard.finished event with OutcomeNotRun.
//  7. fn runs with a context whose deadline is the end of the earliest
//     grant used, and that ends with any grant it runs under: at its
//     expiry, on its revocation, or when a policy change cuts it
//     (MinGrantVersion raised above the grant's version: UpdatePolicy,
//     SetCatalog, Apply; or the policy deleted). context.Cause then
//     returns a *GrantEndedError (ErrGrantEnded) that says which and why,
//     and ctx.Err() is context.DeadlineExceeded for an expiry,
//     context.Canceled otherwise. A change made through this Manager ends
//     the context before the call that made it returns; one made through
//     another Manager sharing the store, within Options.AuditPollInterval
//     (within milliseconds on a store that is a ChangeNotifier, such as
//     PostgreSQL). fn decides what to do when its context ends: Guard
//     does not stop it.
//  8. A guard.finished event records fn's outcome, with the start's
//     Event.Run. Every start gets exactly one. By default Guard returns
//     once fn has, and the end rides on this Manager's next start (or
//     is committed with the other waiting ends within milliseconds),
//     retried until stored; Close waits for it. With
//     Options.SyncRunEnds Guard returns once the end is stored, or, when
//     it cannot be, fn's result joined with ErrAuditIncomplete (fn RAN:
//     do not repeat it), and the end is retried. When the Manager
//     stopped first, Sweep records OutcomeEndedUnknown once
//     Options.RunEndGrace has passed.
//
// Guard returns fn's error, or the reason fn did not run: ErrAudit and
// the other sentinels Guard itself returns mean fn did not run;
// ErrAuditIncomplete, that it did. fn's own error is returned as it is,
// so a sentinel fn returns (from a Guard nested in it, say) is fn's.
func (m *Manager) Guard(ctx context.Context, op Op, fn func(ctx context.Context) error) error {
	if !m.observed {
		return m.guard(ctx, op, fn, nil)
	}
	d := guardObs{began: m.clock.Now()}
	ctx, span := m.tel.start(ctx, "pam.Guard", attrTask.String(op.Task))
	err := m.guard(ctx, op, fn, &d)
	m.tel.guarded(ctx, span, &d, m.clock.Now(), err)
	return err
}

// guard is Guard, telling d (when not nil) what it decided.
func (m *Manager) guard(ctx context.Context, op Op, fn func(ctx context.Context) error, d *guardObs) error {
	if fn == nil {
		return invalid("fn", "must not be nil")
	}
	if err := checkName("Op.Task", op.Task); err != nil {
		return err
	}
	actor, aerr := actorOf(ctx)
	s, cands, pre, err := m.readGuard(ctx, actor, aerr, op.Task)
	if err != nil {
		return err
	}
	if len(cands) == 0 && !m.denyUncov {
		if aerr != nil {
			return aerr
		}
		if d != nil {
			d.mark(m.clock, nil, true, OutcomeUncovered)
		}
		return fn(ctx)
	}
	var res CheckResult
	for changed, raced := 0, 0; changed < maxAttempts && raced < maxUseRaces; {
		res = m.decide(ctx, s, actor, aerr, op, cands, pre)
		switch err := m.enforce(ctx, &res, fn, d); err {
		case errGrantChanged:
			changed++
		case errUseRaced:
			raced++
		default:
			return err
		}
		// A grant changed (was revoked, say, or another run took a use)
		// between reading it and recording the run: decide again on what
		// is there now.
		if s, cands, pre, err = m.readGuard(ctx, actor, aerr, op.Task); err != nil {
			return err
		}
	}
	err = fmt.Errorf("%w: the grants for %q kept changing", ErrConflict, op.Task)
	d.mark(m.clock, &res, false, OutcomeNotApproved)
	m.recordDenial(ctx, denial(m.guardEvent(&res), OutcomeNotApproved, err))
	return err
}

// maxUseRaces bounds the times one Guard decides again because other
// runs took uses of the use-limited grant it decided on. Each such race
// is another run's progress, and a grant has at most MaxUses of them, so
// it is bounded apart from maxAttempts, which counts other changes.
const maxUseRaces = 1 << 12

// readGuard returns the current policies and task's candidates among
// them. Over a GuardReader it also returns what it read with the policy
// revision: the time, and actor's grants under the candidates when a
// decision may need them.
func (m *Manager) readGuard(ctx context.Context, actor string, aerr error, task string) (*snapshot, []*compiled, *GuardRead, error) {
	if m.reads == nil {
		s, err := m.cache.current(ctx)
		if err != nil {
			return nil, nil, nil, err
		}
		return s, s.candidates(task), nil, nil
	}
	s := m.cache.snap.Load()
	for range maxAttempts {
		cands := s.candidates(task)
		var ids []string
		switch {
		case len(cands) == 0 || aerr != nil || m.system[actor] && exactActor(ctx):
			// No decision reads grants.
		case len(cands) == 1:
			ids = cands[0].ids // shared and read-only
		default:
			ids = make([]string, len(cands))
			for i, c := range cands {
				ids[i] = c.ID
			}
		}
		r, err := m.reads.ReadGuard(ctx, actor, ids)
		if err != nil {
			return nil, nil, nil, err
		}
		if r.PolicyRevision == s.rev {
			if m.times == nil {
				r.Now = m.clock.Now()
			}
			return s, cands, &r, nil
		}
		if s, err = m.cache.refresh(ctx); err != nil {
			return nil, nil, nil, err
		}
	}
	return nil, nil, nil, fmt.Errorf("%w: the policies kept changing", ErrConflict)
}

// errGrantChanged tells Guard to decide again; errUseRaced too, when the
// decision ran under a use-limited grant, whose version every run moves.
var (
	errGrantChanged = errors.New("pam: grant changed while recording")
	errUseRaced     = errors.New("pam: another run took a use of the grant")
)

// changed is the error that tells Guard to decide again on res.
func changed(res *CheckResult) error {
	if slices.ContainsFunc(res.Policies, func(pc PolicyCheck) bool { return pc.grantLimited }) {
		return errUseRaced
	}
	return errGrantChanged
}

// Check returns what Guard would decide for op now, and why, without
// running anything or writing to the audit trail. A condition's error text
// (PolicyCheck.ConditionError) is for admins: other actors get
// ConditionErrorHidden in its place.
func (m *Manager) Check(ctx context.Context, op Op) (CheckResult, error) {
	if err := checkName("Op.Task", op.Task); err != nil {
		return CheckResult{}, err
	}
	actor, aerr := actorOf(ctx)
	s, cands, pre, err := m.readGuard(ctx, actor, aerr, op.Task)
	if err != nil {
		return CheckResult{}, err
	}
	res := m.decide(ctx, s, actor, aerr, op, cands, pre)
	m.hideConditionErrors(ctx, res.Policies)
	return res, nil
}

// ConditionErrorHidden is what actors outside Options.AdminGroup read in
// place of a condition's error text: the text can quote what the
// built-ins said about the host and the values they were given, and it
// lets a user probe a condition's internals.
const ConditionErrorHidden = "the condition could not be evaluated"

// hideConditionErrors replaces the condition errors in pcs by
// ConditionErrorHidden unless ctx's actor is an admin. The directory is
// asked only when there is something to hide.
func (m *Manager) hideConditionErrors(ctx context.Context, pcs []PolicyCheck) {
	if !slices.ContainsFunc(pcs, func(pc PolicyCheck) bool { return pc.ConditionError != "" }) {
		return
	}
	if admin, err := m.IsAdmin(ctx); err == nil && admin {
		return
	}
	for i := range pcs {
		if pcs[i].ConditionError != "" {
			pcs[i].ConditionError = ConditionErrorHidden
		}
	}
}

// guardFacts is everything Guard's decision depends on, gathered before
// it is made: who acts, when, which policies are candidates and what their
// conditions said, whether the actor is exempt, and the actor's grants.
type guardFacts struct {
	rev      int64 // the policy revision of the snapshot decided on
	actor    string
	actorErr error // no valid actor in the context
	op       Op
	now      time.Time
	nowErr   error // the store's clock could not be read
	cands    []*compiled
	// checks hold, per candidate, its ID and what its condition said
	// (Condition, ConditionError, Covered); the decision fills in the
	// rest and returns them as CheckResult.Policies.
	checks        []PolicyCheck
	exempt        bool // actor is a system account
	denyUncovered bool
	catalog       *catalogIndex
	// grants are the actor's approved requests under the covering
	// policies; read only when the decision needs them.
	grants    []Grant
	grantsErr error
	// paramsErr: op's parameters do not fit its task's declaration
	// (checked only when a candidate has a condition).
	paramsErr error
}

// conditionFailed is PolicyCheck.Condition for a condition whose
// evaluation failed (an error, or past the time budget) or that does not
// compile.
var conditionFailed = rules.Failed.String()

// detailConditionError is the guard event's detail that holds, for each
// covering policy whose condition failed, "policy: error".
const detailConditionError = "condition_error"

// conditionNotRun is PolicyCheck.Condition for a condition that was not
// evaluated because the operation's parameters do not fit its task's
// declaration.
const conditionNotRun = "not run: parameters do not fit the declaration"

// gatherGuard collects the facts of op's decision: the clock, the
// candidates' conditions, and the grants. Grants are read only when a
// policy covers op and the actor is neither missing nor exempt: no other
// decision reads them. pre, when not nil, holds the time and the grants
// read already (readGuard).
func (m *Manager) gatherGuard(ctx context.Context, s *snapshot, actor string, aerr error, op Op, cands []*compiled, pre *GuardRead) guardFacts {
	f := guardFacts{rev: s.rev, actor: actor, actorErr: aerr, op: op, cands: cands, exempt: m.system[actor] && exactActor(ctx), denyUncovered: m.denyUncov, catalog: s.catalog}
	if pre != nil {
		f.now = pre.Now
	} else if f.now, f.nowErr = m.now(ctx); f.nowErr != nil {
		return f
	}
	f.checks = make([]PolicyCheck, len(cands))
	covered := 0
	var in *rules.Input
	paramsChecked := false
	for i, c := range cands {
		pc := &f.checks[i]
		pc.PolicyID, pc.Covered = c.ID, true
		if c.cond != nil && !paramsChecked {
			// Once per operation, before its first condition.
			paramsChecked = true
			if spec := s.catalog.specs[op.Task]; spec != nil {
				f.paramsErr = spec.checkParams(op.Task, op.Params)
			}
		}
		switch {
		case c.broken != nil:
			pc.Condition, pc.ConditionError = rules.Failed.String(), c.broken.Error()
		case c.cond != nil && f.paramsErr != nil:
			// Ill-declared parameters: no condition runs, every
			// conditional policy covers the operation.
			pc.Condition, pc.ConditionError = conditionNotRun, f.paramsErr.Error()
		case c.cond != nil:
			if in == nil {
				in = &rules.Input{Actor: actor, Task: op.Task, Params: op.Params, Now: f.now}
			}
			out, err := m.evalCondition(ctx, c.cond, in)
			pc.Condition, pc.Covered = out.String(), out.Covered()
			if err != nil {
				pc.ConditionError = err.Error()
			}
		}
		if pc.Covered {
			covered++
		}
	}
	if covered == 0 || aerr != nil || f.exempt {
		return f
	}
	var ids []string
	for i, pc := range f.checks {
		switch {
		case !pc.Covered:
		case covered == 1:
			ids = cands[i].ids // shared and read-only: no allocation on the common path
		default:
			ids = append(ids, cands[i].ID)
		}
	}
	if pre != nil {
		// Read with the revision, under every candidate: the decision
		// looks only at those of the covering policies.
		f.grants = pre.Grants
		return f
	}
	if f.grants, f.grantsErr = m.store.Grants(ctx, actor, ids); f.grantsErr != nil {
		f.grantsErr = fmt.Errorf("pam: read grants: %w", f.grantsErr)
	}
	return f
}

// decide gathers the facts of op's decision and makes it. A denial for
// want of a grant is then explained (see explain); an allowed operation
// reads nothing more.
func (m *Manager) decide(ctx context.Context, s *snapshot, actor string, aerr error, op Op, cands []*compiled, pre *GuardRead) CheckResult {
	f := m.gatherGuard(ctx, s, actor, aerr, op, cands, pre)
	res := decideGuard(&f)
	if !res.Allowed && res.Outcome == OutcomeNotApproved {
		m.explain(ctx, &res, f.cands)
	}
	return res
}

// decideGuard is Guard's decision: a pure function of the gathered facts
// (it takes over f.checks). See Guard for the rules.
func decideGuard(f *guardFacts) CheckResult {
	res := CheckResult{Actor: f.actor, Task: f.op.Task, At: f.now, Policies: f.checks, rev: f.rev}
	if f.nowErr != nil {
		res.Outcome, res.Err = OutcomeNotApproved, f.nowErr
		return res
	}
	covered := 0
	for i, c := range f.cands {
		if pc := &res.Policies[i]; pc.Covered {
			covered++
			if len(f.op.Params) > 0 {
				res.audits = append(res.audits, &c.ParamAudit)
			}
		}
	}
	res.params = f.op.Params
	if f.paramsErr != nil {
		res.ParamsError = f.paramsErr.Error()
	}
	switch {
	case f.actorErr != nil:
		res.Outcome, res.Err = OutcomeNotApproved, f.actorErr
		if covered == 0 && !f.denyUncovered {
			res.Outcome = OutcomeUncovered
		}
		return res
	case covered == 0 && f.denyUncovered && f.exempt:
		res.Allowed, res.Outcome = true, OutcomeExempt
		return res
	case covered == 0 && f.denyUncovered:
		res.Outcome, res.Err = OutcomeNoPolicy, fmt.Errorf("%w: task %q", ErrNoPolicy, f.op.Task)
		return res
	case covered == 0:
		res.Allowed, res.Outcome = true, OutcomeUncovered
		return res
	case f.exempt:
		res.Allowed, res.Outcome = true, OutcomeExempt
		return res
	case f.grantsErr != nil:
		res.Outcome, res.Err = OutcomeNotApproved, f.grantsErr
		return res
	}
	for i := range res.Policies {
		pc, c := &res.Policies[i], f.cands[i]
		if !pc.Covered {
			continue
		}
		var best *Grant
		missing := noApprovedRequest
		for i := range f.grants {
			g := &f.grants[i]
			switch {
			case g.PolicyID != c.ID:
				continue
			case f.now.Before(g.ApprovedAt):
				missing = "request " + g.RequestID + " is approved and opens at " + g.ApprovedAt.UTC().Format(time.RFC3339)
			case !g.ActiveAt(f.now):
				missing = "the grant from request " + g.RequestID + " expired at " + g.ExpiresAt.UTC().Format(time.RFC3339)
			case g.PolicyVersion < c.MinGrantVersion:
				missing = fmt.Sprintf("request %s was approved under policy version %d; the policy changed and now requires version %d or later", g.RequestID, g.PolicyVersion, c.MinGrantVersion)
			case !f.catalog.coversTask(g.Scope, f.op.Task):
				missing = fmt.Sprintf("request %s grants %s, which does not include this task", g.RequestID, g.Scope)
			case g.Spent():
				missing = fmt.Sprintf("request %s has used its %s", g.RequestID, runCount(g.MaxUses))
			case !boundCovers(f.catalog, g.Scope, f.op.Task, g.Bind):
				missing = fmt.Sprintf("request %s is bound to %s, which %s does not declare", g.RequestID, formatBind(g.Bind), f.op.Task)
			case bindMismatch(g.Bind, f.op.Params) != "":
				name := bindMismatch(g.Bind, f.op.Params)
				missing = fmt.Sprintf("request %s is bound to %s = %s, which this operation's parameters do not match", g.RequestID, name, formatBound(g.Bind[name]))
			case best == nil || betterGrant(g, best):
				best = g
			}
		}
		if best == nil {
			pc.Missing = missing
			if res.Err == nil {
				res.Err = &NotApprovedError{Actor: f.actor, Task: f.op.Task, PolicyID: c.ID, Reason: missing}
			}
			continue
		}
		pc.Grant, pc.grantVersion, pc.grantPolicyVersion, pc.ExpiresAt = best.RequestID, best.Version, best.PolicyVersion, best.ExpiresAt
		pc.grantLimited, pc.BreakGlass = best.MaxUses > 0, best.BreakGlass
		if res.Deadline.IsZero() || best.ExpiresAt.Before(res.Deadline) {
			res.Deadline = best.ExpiresAt
		}
	}
	if res.Err != nil {
		res.Outcome, res.Deadline = OutcomeNotApproved, time.Time{}
		return res
	}
	res.Allowed, res.Outcome = true, OutcomeGranted
	return res
}

// betterGrant reports whether g is a better grant to run under than
// best: one that is not break-glass (so that a run marked break-glass
// had no other grant), then one that does not count its runs, then the
// one that ends last.
func betterGrant(g, best *Grant) bool {
	if g.BreakGlass != best.BreakGlass {
		return !g.BreakGlass
	}
	if (g.MaxUses == 0) != (best.MaxUses == 0) {
		return g.MaxUses == 0
	}
	return g.ExpiresAt.After(best.ExpiresAt)
}

// runCount says "1 run" or "n runs".
func runCount(n int) string {
	if n == 1 {
		return "1 run"
	}
	return fmt.Sprintf("%d runs", n)
}

// spend is what a run's start takes from use-limited grants: their
// requests with one more run used, and the events that records (see
// ActionUse), committed with the start.
type spend struct {
	requests []Request
	events   []Event
}

// spendRuns takes one run of each use-limited grant res runs under, as
// of the versions res decided on: errGrantChanged when a grant moved
// since (another run took a use, say), so that Guard decides again.
func (m *Manager) spendRuns(ctx context.Context, res *CheckResult) (*spend, error) {
	var sp *spend
	for _, pc := range res.Policies {
		if !pc.grantLimited {
			continue
		}
		r, err := m.store.Request(ctx, pc.Grant)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				return nil, errGrantChanged
			}
			return nil, err
		}
		if r.Version != pc.grantVersion {
			return nil, errGrantChanged
		}
		next, events, err := apply(r, ActionUse, facts{Actor: res.Actor, Now: res.At})
		if err != nil {
			return nil, errGrantChanged
		}
		next.Version++
		if sp == nil {
			sp = &spend{}
		}
		sp.requests = append(sp.requests, next)
		sp.events = append(sp.events, events...)
	}
	return sp, nil
}

// enforce carries out a decision: audit, run, audit.
func (m *Manager) enforce(ctx context.Context, res *CheckResult, fn func(context.Context) error, d *guardObs) error {
	if res.Outcome == OutcomeUncovered {
		d.mark(m.clock, res, res.Err == nil, OutcomeUncovered)
		if res.Err != nil {
			return res.Err
		}
		return fn(ctx)
	}
	start := m.guardEvent(res)
	if !res.Allowed {
		d.mark(m.clock, res, false, res.Outcome)
		m.recordDenial(ctx, start)
		return res.Err
	}
	if down := m.feed.requiredDown(); down != nil {
		d.mark(m.clock, res, false, OutcomeAuditUnavailable)
		m.recordDenial(ctx, denial(start, OutcomeAuditUnavailable, down))
		return fmt.Errorf("%w: %w", ErrAudit, down)
	}
	runCtx := ctx
	if !res.Deadline.IsZero() {
		// The deadline is in the decision's time; the context counts on
		// Options.Clock, which may differ from a store's TimeSource.
		var skew time.Duration
		if m.times != nil {
			skew = m.clock.Now().Sub(res.At)
		}
		gc := newGrantContext(ctx, res.Deadline, skew, m.clock)
		gc.grants = gc.grantBuf[:0]
		for _, pc := range res.Policies {
			if pc.Grant != "" {
				gc.grants = append(gc.grants, runGrant{requestID: pc.Grant, policyID: pc.PolicyID, policyVersion: pc.grantPolicyVersion, expires: pc.ExpiresAt})
			}
		}
		// Registered before the start event commits: a revocation
		// committed after it finds the run, one committed before it
		// fails the commit (the grants must be unchanged).
		m.runs.add(gc)
		defer func() {
			m.runs.remove(gc)
			gc.stop()
		}()
		runCtx = gc
	}
	sp, err := m.spendRuns(ctx, res)
	if err != nil {
		if err == errGrantChanged {
			return changed(res)
		}
		err = fmt.Errorf("pam: read grant: %w", err)
		d.mark(m.clock, res, false, OutcomeNotApproved)
		m.recordDenial(ctx, denial(start, OutcomeNotApproved, err))
		return err
	}
	start.Run = m.ends.newID()
	// Known here as running from before its start commits, so that this
	// Manager's Sweep never takes it for abandoned.
	m.ends.started(start.Run)
	seq, err := m.record(ctx, start, res.Policies, res.rev, m.ends.due(res), sp)
	if err != nil {
		if errors.Is(err, ErrConflict) {
			m.ends.ended(start.Run)
			return changed(res)
		}
		// The start may be stored all the same (a commit whose reply was
		// lost): fn does not run, and a stored start gets an end that
		// says so.
		m.endUnstarted(ctx, start, res.At, err)
		d.mark(m.clock, res, false, OutcomeAuditUnavailable)
		return fmt.Errorf("%w: %w", ErrAudit, err)
	}
	started := m.clock.Now()
	if err := m.feed.awaitRequired(ctx, seq); err != nil {
		m.finish(ctx, res, start, started, OutcomeNotRun, err)
		d.mark(m.clock, res, false, OutcomeAuditUnavailable)
		return fmt.Errorf("%w: %w", ErrAudit, err)
	}
	finished := false
	defer func() {
		if !finished {
			m.finish(ctx, res, start, started, OutcomePanic, nil)
		}
	}()
	d.mark(m.clock, res, true, res.Outcome)
	err = fn(runCtx)
	finished = true
	outcome := OutcomeOK
	if err != nil {
		outcome = OutcomeError
	}
	if ferr := m.finish(ctx, res, start, started, outcome, err); ferr != nil {
		return errors.Join(err, fmt.Errorf("%w: %w", ErrAuditIncomplete, ferr))
	}
	return err
}

// denial is the guard.denied event, of outcome o for err, of an allowed
// decision's start that cannot go ahead.
func denial(start Event, o Outcome, err error) Event {
	deny := start
	deny.Type, deny.Outcome = EventGuardDenied, o
	deny.Detail = maps.Clone(start.Detail)
	if deny.Detail == nil {
		deny.Detail = map[string]string{}
	}
	deny.Detail["error"] = cleanText(err.Error())
	return deny
}

func (m *Manager) guardEvent(res *CheckResult) Event {
	e := Event{Time: res.At, Actor: res.Actor, Task: res.Task, Outcome: res.Outcome}
	switch res.Outcome {
	case OutcomeGranted:
		e.Type = EventGuardAllowed
	case OutcomeExempt:
		e.Type = EventGuardExempt
	default:
		e.Type = EventGuardDenied
		e.Detail = map[string]string{"error": cleanText(res.Err.Error())}
	}
	var pols, grants, condErrs, breakGlass []string
	for _, pc := range res.Policies {
		if pc.BreakGlass && pc.Grant != "" {
			breakGlass = append(breakGlass, pc.Grant)
		}
		if pc.Covered {
			pols = append(pols, pc.PolicyID)
			if pc.Condition == conditionFailed && pc.ConditionError != "" {
				condErrs = append(condErrs, pc.PolicyID+": "+pc.ConditionError)
			}
		}
		if pc.Grant != "" {
			grants = append(grants, pc.Grant)
		}
	}
	if len(pols) > 0 {
		e.PolicyID = pols[0]
	}
	if len(grants) > 0 {
		e.RequestID = grants[0]
	}
	if len(pols) > 1 || len(grants) > 1 {
		if e.Detail == nil {
			e.Detail = map[string]string{}
		}
		e.Detail["policies"] = strings.Join(pols, ",")
		e.Detail["requests"] = strings.Join(grants, ",")
	}
	if len(breakGlass) > 0 {
		// The run is under break-glass: the requests it runs under.
		if e.Detail == nil {
			e.Detail = map[string]string{}
		}
		e.Detail["break_glass"] = strings.Join(breakGlass, ",")
	}
	if res.ParamsError != "" {
		if e.Detail == nil {
			e.Detail = map[string]string{}
		}
		e.Detail["params_error"] = cleanText(res.ParamsError)
	}
	if len(condErrs) > 0 {
		// The admin's record of why a condition covered the operation
		// (readers outside the admin group get ConditionErrorHidden).
		if e.Detail == nil {
			e.Detail = map[string]string{}
		}
		e.Detail[detailConditionError] = cleanText(strings.Join(condErrs, "\n"))
	}
	if len(res.params) > 0 {
		if e.Detail == nil {
			e.Detail = make(map[string]string, len(res.params))
		}
		m.params.detail(e.Detail, res.params, res.audits)
	}
	return e
}

// finish records the end of a run, or queues it to be retried and
// returns why it could not (see recordEnd). Its time is the decision's
// time plus the run's length on Options.Clock: no second trip to a
// store's TimeSource.
func (m *Manager) finish(ctx context.Context, res *CheckResult, start Event, started time.Time, outcome Outcome, err error) error {
	var detail map[string]string
	if len(start.Detail) > 0 {
		detail = maps.Clone(start.Detail)
	}
	if err != nil {
		if detail == nil {
			detail = map[string]string{}
		}
		detail["error"] = cleanText(err.Error())
	}
	return m.recordEnd(uncanceled(ctx), runEnd(start, res.At.Add(m.clock.Since(started)), outcome, detail))
}

// record commits one event, publishes it and returns its Seq. The commit
// fails with ErrConflict if a grant in checks changed since it was read.
// A run's start opens the run, due to be taken as ended unknown at due,
// and carries the ends waiting to be recorded (see runEnds); a run's
// guard.finished closes it (ErrNotFound when it is not open).
func (m *Manager) record(ctx context.Context, e Event, checks []PolicyCheck, rev int64, due time.Time, sp *spend) (int64, error) {
	seq, err := m.recordCarrying(ctx, e, checks, rev, due, sp, true)
	if errors.Is(err, errCarried) {
		// A carried end's run was closed: the ends go their own way,
		// and the start alone.
		seq, err = m.recordCarrying(ctx, e, checks, rev, due, sp, false)
	}
	return seq, err
}

// errCarried: a start's commit failed on an end it carried.
var errCarried = errors.New("pam: an end carried by a start found its run closed")

func (m *Manager) recordCarrying(ctx context.Context, e Event, checks []PolicyCheck, rev int64, due time.Time, sp *spend, carry bool) (int64, error) {
	one := oneEventTxs.Get().(*oneEventTx)
	var carried []Event
	if e.Run != "" {
		switch e.Type {
		case EventGuardAllowed, EventGuardExempt:
			if carry && !m.syncEnds {
				carried = m.ends.take(one.ev[:0], maxRide)
				for i := range carried {
					one.close[i] = carried[i].Run
				}
				if len(carried) > 0 {
					one.tx.Close = one.close[:len(carried)]
				}
			}
			one.open[0] = OpenRun{ID: e.Run, Actor: e.Actor, Task: e.Task, PolicyID: e.PolicyID, RequestID: e.RequestID, Started: e.Time, Due: due}
			one.tx.Open = one.open[:]
		case EventGuardFinished:
			one.close[0] = e.Run
			one.tx.Close = one.close[:1]
		}
	}
	n := len(carried) + 1
	one.ev[n-1] = e
	one.tx.Events = one.ev[:n]
	if sp != nil {
		// The runs the start takes, written with it (each request's
		// version checked), and request.spent for a last one.
		one.tx.Requests = sp.requests
		one.tx.Events = append(one.tx.Events, sp.events...)
		one.tx.PolicyRevision = rev
	}
	for _, pc := range checks {
		if pc.Grant == "" || pc.grantLimited && sp != nil {
			continue
		}
		if one.tx.Unchanged == nil {
			one.tx.Unchanged = one.uv[:0]
			// The policies decided on must still be as read: a cut
			// committed since makes this commit fail and Guard decide
			// again.
			one.tx.PolicyRevision = rev
		}
		one.tx.Unchanged = append(one.tx.Unchanged, RequestVersion{ID: pc.Grant, Version: pc.grantVersion})
	}
	err := m.commit(ctx, &one.tx)
	seq := one.tx.Events[n-1].Seq
	if err == nil {
		m.published(one.tx.Events)
	}
	if len(carried) > 0 {
		m.ends.carried(carried, err)
		if errors.Is(err, ErrNotFound) {
			err = errCarried
		}
	}
	// Stores keep no reference to a Tx (see Store), so it can be reused.
	clear(one.ev[:n])
	clear(one.close[:max(len(carried), 1)])
	one.tx, one.uv, one.open = Tx{}, [1]RequestVersion{}, [1]OpenRun{}
	oneEventTxs.Put(one)
	return seq, err
}

// oneEventTx is a reusable Tx holding one event and the ends it carries.
type oneEventTx struct {
	tx    Tx
	ev    [1 + maxRide]Event
	uv    [1]RequestVersion
	open  [1]OpenRun
	close [maxRide]string
}

var oneEventTxs = sync.Pool{New: func() any { return new(oneEventTx) }}

// recordDenial records a guard.denied event. A denial is recorded even
// when the caller's context ended while Guard decided: on a context
// detached from the caller's, bounded by Options.AuditTimeout.
func (m *Manager) recordDenial(ctx context.Context, e Event) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.feed.timeout)
	defer cancel()
	if _, err := m.record(dctx, e, nil, 0, time.Time{}, nil); err != nil {
		m.onError(fmt.Errorf("pam: record denial of %s to %s: %w", e.Task, e.Actor, err))
	}
}

// uncanceled returns ctx without its cancellation, so an event still gets
// written after fn's caller gave up; a context that cannot be canceled is
// returned as it is.
func uncanceled(ctx context.Context) context.Context {
	if ctx.Done() == nil {
		return ctx
	}
	return context.WithoutCancel(ctx)
}
