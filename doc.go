// Package pam gives a Go program zero standing privileges: its privileged
// operations run only inside a just-in-time, time-bounded, approved and
// audited grant.
//
// The model is Microsoft Purview Privileged Access Management. An admin
// puts a Policy on a task (a role, or a role group); a user Submits a
// request with a reason and a duration; approvers in the policy's approver
// groups Approve or Deny it (or the policy approves automatically); while
// the grant is active, the host's Guard call lets the task run, as often
// as needed, each run audited.
//
//	m, err := pam.New(store, dir, &pam.Options{AdminGroup: "pam-admins"})
//	...
//	err = m.Guard(pam.WithActor(ctx, user), pam.Op{Task: "New-MoveRequest", Params: params},
//		func(ctx context.Context) error { return moveMailbox(ctx, params) })
//
// # Guard
//
// Guard is the hot path and the one call a host must make. It takes the
// actor from the context (WithActor; none is denied with ErrNoActor),
// finds the policies that cover the operation through an index by task
// (roles and role groups expanded through the Catalog), and evaluates Rego
// conditions only for policies that carry one. An operation no policy
// covers is not privileged: it runs, unaudited (or is denied with
// ErrNoPolicy under Options.DenyUncovered). A covered one needs, for every
// covering policy, an active grant of the actor approved under the
// policy's current MinGrantVersion; otherwise Guard returns a
// *NotApprovedError naming the task and the policy, so the host can tell
// the user what to request, and what they can do: which request of
// theirs is pending and what it waits for ("request req_x is pending: 1
// of 2 approvals (bob), waiting for mailbox-managers"), or that they may
// not request under the policy (Policy.RequesterGroups). That part is
// read only for such a denial (one bounded read of their pending
// requests, and the directory), never on the way to running fn, and a
// read that fails leaves the denial as it is with less to say. System accounts (Options.SystemAccounts) are
// exempt, and each exempt run is audited. Before fn runs, a guard.allowed
// event must be stored, or fn does not run (ErrAudit); fn's context ends
// with the grant; a guard.finished event records how fn ended. Check
// returns the same decision, with the reasons, without running anything.
//
// Guard's answer is what happened. ErrAudit (and every other sentinel
// Guard itself returns; fn's own error comes back as it is) means fn did
// not run: retrying is safe. A run costs one durable commit, its start:
// Guard returns once fn has, and fn's end rides on the Manager's next
// start, or goes with the other waiting ends within milliseconds (Close
// waits for them). With Options.SyncRunEnds Guard returns only once the
// end is stored, or with ErrAuditIncomplete: fn ran (its own error, if
// any, is joined) but its end could not be stored yet, and is retried:
// do not repeat the work. Every run's start and end carry
// one run ID (Event.Run), and every stored start gets exactly one
// guard.finished: fn's outcome; "not_run" when the store's reply to the
// start was lost, so fn was not run although the start was stored;
// an end that could not be stored is retried by the Manager (Close
// waits for it within its context); and when the Manager stopped
// first, Sweep records "ended_unknown" once Options.RunEndGrace has
// passed after the grant's end. The store keeps the runs that are open
// (Tx.Open, Tx.Close, Store.OpenRuns), so that an end is recorded once
// however often it is retried, and finding the abandoned ones reads no
// trail.
//
// Guard reads the store on every call (the policy revision, and for
// covered operations the actor's grants), so a policy change or a
// revocation made through any Manager sharing the store takes effect on
// every Manager's next Guard.
//
// fn's context ends with the grant it runs under, for work already
// running: when the grant expires, is revoked or relinquished, or is cut
// by a policy change (its policy's MinGrantVersion raised above the
// version it was approved under, by UpdatePolicy, SetCatalog or Apply, or
// its policy deleted). context.Cause(ctx) is then a *GrantEndedError,
// matching ErrGrantEnded, that names the request and says revoked,
// relinquished, cut by a policy change, or expired. How soon: before
// Revoke or Relinquish (or the policy write) returns on the Manager that made the change; on other Managers sharing
// the store, within Options.AuditPollInterval (default 1 second), when a
// goroutine that runs while guarded fns do re-reads their grants; within
// milliseconds where the store is a ChangeNotifier (PostgreSQL, through
// LISTEN/NOTIFY). Expiry follows Options.Clock. The goroutine stops when
// no guarded fn runs, and with Close.
//
// # Policies and conditions
//
// A Policy's Condition narrows its scope with Rego: one or more boolean
// expressions over input.op.task, input.op.params, input.actor, input.now
// and data.pam (the Catalog). Each expression is evaluated as a value, so
// an ordinary false comparison is false and the policy does not cover the
// operation; an error, a non-boolean or an undefined result (say, a
// parameter the condition reads is missing) counts as covered: the policy
// fails closed. A RequestRule can reject submissions with its own
// messages; an AutoApproveRule can approve them at once. All Rego is
// compiled when the policy is created or changed (errors come back as a
// *RegoError with line and column), never on the Guard path, with strict
// built-in errors on.
//
// Policy Rego runs in a sandbox: it may call only built-ins that are pure
// and bounded, from an explicit list: operators, numbers, aggregates,
// arrays, sets and objects, strings, regular expressions and globs,
// types, encodings (base64, hex, JSON, YAML, URL query, URI), hashes and
// HMACs, time (time.now_ns is the engine's clock, the instant of
// input.now), CIDR arithmetic, graph.reachable and walk, semver, units
// and UUID parsing. A call to anything else fails to compile, with a
// RegoError that names the built-in and says it is not allowed: the
// network (http.send, net.lookup_ip_addr), the host (opa.runtime),
// schema loading (json.match_schema and json.verify_schema, whose $ref
// opens files and URLs), randomness (rand.intn, uuid.rfc4122), side
// effects (trace, print), tokens, keys and certificates (io.jwt.*,
// crypto.x509.*, crypto.parse_private_keys, providers.aws.sign_req),
// single calls whose cost has no bound (bits.lsh, graph.reachable_paths,
// json.marshal_with_options, regex.globs_match, strings.render_template),
// GraphQL, Rego introspection (rego.*) and deprecated built-ins. A
// built-in a newer OPA adds is refused until it is put on the list. A
// stored policy that uses a refused built-in (written by an older
// version) fails closed on every operation of its scope and is reported
// to OnError.
//
// Each evaluation has a time budget, Options.ConditionTimeout (50 ms by
// default, real time): past it OPA stops the evaluation and it counts as
// an error, so the condition covers the operation (fail closed), a request
// rule rejects the submission and an auto-approval rule does not
// approve. A guard event whose condition failed records why, the timeout
// included ("condition_error"). That text can quote what the condition
// read, so it is for admins: Check gives it to members of
// Options.AdminGroup only (others read ConditionErrorHidden), Guard's
// error never carries it, and Audit hides it in events read by anyone
// else.
//
// A task may declare its parameters in the Catalog (TaskSpec: name, JSON
// type, required or not). Guard then checks an operation's parameters
// before any condition: an unknown name, a missing required parameter, a
// null or a value of the wrong type makes every conditional policy on the
// task cover the operation, and the guard event records why
// ("params_error"; CheckResult.ParamsError).
//
// Changing a policy's scope, condition, approval type or approver groups
// raises its MinGrantVersion: grants approved before no longer satisfy
// Guard. Other changes leave them valid.
//
// # Catalog and policies as code
//
// The Catalog (roles, role groups, task parameter declarations, extra
// data for Rego) gives role- and role-group-scoped policies their meaning,
// so it lives in the store with them, versioned on the same revision
// counter: every Manager sharing the store decides on the stored catalog
// and sees a change on its next call. Options.Catalog only seeds a store
// that has none. SetCatalog (admins only) refuses to remove or empty a
// role a live policy uses, and raises MinGrantVersion of every policy
// whose meaning changes: its effective tasks, narrowed or widened, or, for
// a policy with a condition, the data the condition reads or the
// parameter declaration of one of its tasks. A stored policy whose
// scope the catalog cannot resolve fails closed on every task and is
// reported to OnError.
//
// Apply makes the catalog and the policies what a Config says, in one
// commit: it returns a Plan (what it creates, updates and deletes, which
// updates cut grants and how many active grants they cut), has a dry run,
// and is idempotent, so a config kept under version control can be
// applied on every deploy (pamctl apply -f pam.yaml).
//
// # Lifecycle
//
//	          submit
//	            │
//	            ▼
//	 ┌────── Pending ───────┬──────────┬──────────┐
//	 │ quorum reached       │ any deny │ requester│ pending TTL
//	 │ (or Auto / rule)     │          │ cancels  │ passes
//	 ▼                      ▼          ▼          ▼
//	Approved ──revoke──▶ Revoked     Denied    Canceled   Expired
//	 │
//	 ├── holder ends it ──▶ Relinquished
//	 │
//	 └── window ends ──▶ Expired
//
// The lifecycle is one table of legal (state, action) pairs and one pure
// function that applies an action to a request given the facts the
// Manager gathered (the actor, the time, the policy, group memberships,
// an automatic verdict); every rule of a transition lives there, once.
// "due" is a request whose deadline has passed before its expiry was
// recorded:
//
//	state      allowed actions
//	pending    settle (automatic verdict), approve, deny, cancel, remind, escalate,
//	           break_glass
//	scheduled  revoke, relinquish
//	approved   revoke, relinquish, extend, use (Guard, on a use-limited grant),
//	           confirm, flag, review_overdue (break-glass reviews)
//	extending  settle, approve, deny (the extension), revoke, relinquish, use,
//	           confirm, flag, review_overdue
//	due        expire (a pending request)
//	due grant  expire, confirm, flag, review_overdue (an approved one)
//	revoked, relinquished, expired: confirm, flag, review_overdue
//	denied, canceled: none
//
// Scheduled and extending are Approved requests: before their window
// opens, and with an extension of their window pending. Request.Allows
// answers from the same table, for front ends. Any other action is
// ErrWrongState and changes nothing.
//
// A request may name a start (RequestInput.Start): once approved, its
// window opens at the later of the start and the approval, and lasts
// its duration; until then the grant is scheduled, and Guard and Check
// deny with "request X is approved and opens at T". A start at or
// before the submission is taken as now; one further ahead than the
// policy's MaxStartDelay (default 30 days) is refused (ErrInvalid,
// field Start). The pending TTL counts from the submission.
//
// The holder of an active grant may ask to extend it (Extend, by a
// duration, with a reason). The extension is decided as the request
// was: the policy's approver groups and quorum, no self-approval, one
// decision per approver, Approve and Deny on the request's ID; at once
// under an Auto policy, its auto-approval rule or an Approver; its
// request rule may reject it. While it is pending the grant runs to its
// current end; granted, the end moves (request.extended), including for
// work already running (its context's Deadline moves); denied, the
// grant runs on (request.extension_denied). The whole window, from its
// opening to its end, never exceeds the policy's MaxExtendedDuration,
// which is MaxDuration unless set higher to allow renewals up to a cap.
// An extension still pending when the grant ends lapses. Scheduled
// windows and extensions go beyond Purview, whose window opens at
// approval and never moves.
//
// Revoke ends a grant for whoever may (an admin, an approver, the
// requester); Relinquish is the holder ending their own grant once the
// work is done, recorded as such: the request becomes Relinquished
// (request.relinquished), and running work ends with GrantRelinquished
// as its cause on every Manager, since the stored state says it. This
// goes beyond Purview, whose grants end by revocation or expiry only.
//
// A grant can be narrower than its scope and window. RequestInput.Bind
// binds it to operation parameters: it covers only operations whose
// parameters equal the bound values (strings, numbers, booleans; checked
// against the catalog's declarations at submission; over a role, every
// task of it must declare each bound name, and the grant covers no task
// that stops declaring one), and a policy can require bindings
// (Policy.RequireBind) so that no grant under it covers more than one
// target. RequestInput.MaxUses limits it to that many runs
// (Policy.MaxUses caps it, and is the default): Guard takes a run with
// the use action in the same durable commit as the run's start, each
// version checked, so that Guards racing for the last run start it once;
// the last writes request.spent. The request stays approved until its
// window ends, so the last run runs on. Request.Bounds says both in
// words, for approvers. Purview grants cover every operation of their
// scope.
//
// Break-glass is emergency access with a review afterwards. A policy's
// BreakGlass names a group whose members may act at once, without
// approval (Manager.BreakGlass, pamctl breakglass): the grant lasts at
// most BreakGlass.MaxDuration (default 1 h), an actor may break glass
// Limit times per Period (default once per 24 h; ErrLimit beyond,
// counted exactly across replicas: the n-th activation of an actor under
// a policy has an ID of its own that only one writer can create), and
// the policy's approver groups and AlertGroup are notified at once
// (request.break_glass, then request.approved). Every guard.allowed under
// it carries the detail break_glass (the request IDs); Guard prefers an
// approved grant when the actor holds one too. A member of the approver
// groups or an admin, never the activator, then confirms or flags it
// (Manager.ReviewBreakGlass: request.break_glass_confirmed,
// request.break_glass_flagged); a flag on a grant still active revokes it
// (request.revoked), which ends running work as Revoke does. A review not
// done within ReviewWithin (default 24 h) is overdue: Sweep notifies the
// reviewers again (request.break_glass_overdue), once per ReviewWithin
// across Managers, also after the grant ended (Request.Due includes the
// review's next notice, so the stores' due index finds it).
// Manager.BreakGlassReviews lists the activations waiting for review and
// those flagged. The review is the one thing recorded on a request that
// ended: its state and window never change. Purview has no break-glass;
// it keeps standing emergency accounts, reviewed by no one.
//
// The access window opens when a request is approved (or at its start,
// when later), not when it was submitted. Terminal states never change,
// but for a break-glass review. Every transition is one atomic store
// write of the new state together with its audit events. States are
// computed from the clock whenever they are read; Run (or Sweep) records
// expiries in the trail and notifies the requester.
//
// # Approvals
//
// Anyone may request under a policy, unless it names RequesterGroups:
// then only their members may (Entra's eligible assignments, AWS TEAM's
// eligibility policies; beyond Purview). Others are refused with
// ErrForbidden naming the groups, membership is read through the
// Directory at submission, and a directory error refuses the submission.
//
// Approvals do not sit unseen: a policy's RemindAfter notifies the
// approvers who have not decided again, every RemindAfter from
// submission, and EscalateAfter with EscalationGroup escalates a request
// still pending: the group's members are notified, see the request, and
// one of them may then approve or deny it alone (Decision.Escalation).
// Sweep records each (request.reminded, request.escalated) when due,
// through the outbox, once per instant across Managers: the request's
// version decides which Manager records it. Beyond Purview, whose
// pending requests wait silently for 24 hours.
//
// Only members of the policy's approver groups decide, checked through the
// Directory at decision time; never the requester, compared on canonical
// identities (CanonicalIdentity: "Alice", "alice" and full-width
// "ａｌｉｃｅ" are one person); one decision per approver; any deny
// denies. With several approver groups, each needs its own MinApprovals
// of distinct approvers, one person counting for one group only, and an
// approver who has left every group before the quorum is reached no
// longer counts. Approver plug-ins (on-call schedules, ticket systems)
// can settle submissions automatically.
//
// # Audit
//
// Every state change and every Guard outcome on a covered operation is an
// Event with a gapless sequence number, written in the same store
// transaction as the change. Audit searches the trail by actor, task,
// type, outcome, request, policy and time, in pages. WithActorDetail adds
// what a front end knows of where its actor acts from (pamctl records the
// OS user and host) to the Detail of the events that actor's calls commit.
//
// The trail is a hash chain: each event carries the SHA-256 of its own
// fields and of the previous event's hash, computed inside the store's
// serialised commit (see ChainHash for the encoding, versioned and
// written down so that anyone can check a trail without this library).
// Verify recomputes the chain over a range and reports the first event
// that fails and why: altered, broken link, reordered, gap, truncated,
// malformed. A malformed event is one whose stored row does not decode
// strictly (a Detail that is not a JSON object of strings with each key
// once, a cell of the wrong type, a hash of the wrong length, a number
// below 1): stores return it flagged (Event.Malformed) instead of failing
// the read, so such a row is tampering that Verify reports, not an
// outage. Audit returns it flagged, and the audit sinks receive it
// flagged, in its place in the trail.
// Checkpoint signs the head (Ed25519, Options.CheckpointKey) and hands it
// to CheckpointSinks kept outside the database; Run makes one every
// CheckpointInterval (default 5 minutes) and, with CheckpointEvery, every
// N events; Manager.Verify checks against the checkpoints its sinks read
// back. With checkpoints, Verify also catches history that
// was rewritten and re-hashed up to the head, and a trail cut short.
//
// Audit sinks (package sinks: a JSON Lines file, slog, a webhook) are fed
// from the store by a worker each, in sequence order, so nothing committed
// is lost to a sink that was down, a process that restarted or a commit
// whose reply was lost. A required sink makes audit fail closed, as
// Vault's audit devices do: Guard runs fn only once the operation's start
// event reached it, and denies while it is failing (a sink whose worker
// cannot read the trail is failing too). A best-effort sink is
// retried with backoff and never slows anything. Every failure goes to
// Options.OnError, is counted in SinkStatus, and each outage is recorded
// in the trail (sink.failed, sink.recovered).
//
// Operation parameters are recorded on guard events as "param.NAME"
// entries: redacted by default, or in full, or as an HMAC-SHA256 an
// auditor holding the key can match (ParamAudit, per policy or in
// Options).
//
// # Notifications
//
// Approvers hear of a new request and requesters of its outcome through
// Notifiers (package notify/smtp for email, with XOAUTH2; notify/webhook
// for signed webhooks, Standard Webhooks included, and Slack-compatible
// chat; notify/teams for Adaptive Cards in Microsoft Teams). What a
// notifier shows people passes through Request.ForDisplay. A transition writes its
// notifications to the store's outbox in the same commit: one Message per
// recipient and notifier, so nothing is lost to a crash, a restart or a
// mail server that is down. Run delivers them (Deliver makes one pass):
// at least once, each under a lease so that several Managers on one store
// deliver each message once and a Manager that dies mid-delivery leaves
// its messages to the others, with exponential backoff and jitter, and
// parked as MessageFailed after a notifier's MaxAttempts, reported and
// audited (EventNotifyFailed). Each Notification carries the message ID
// for receivers to drop duplicates. A notifier's failure never delays
// Guard or a decision.
//
// # Front ends
//
// Optional packages serve people: pamhttp is an http.Handler with a JSON
// API (described by an OpenAPI 3.1 document it serves, with a Go client,
// pamhttp.Client, that has the Manager's method signatures and maps
// problem answers back to these sentinels) and a server-rendered approver
// page, behind the host's own authentication; cmd/pamctl is the command
// line; examples/server wires them together. The engine authorises reads
// as it does writes: a request and its events are visible to its
// requester, to admins, to members of its policy's approver groups and,
// once it escalated, of its escalation group (others are told it does
// not exist, when they read it and whatever they try to do with it,
// whichever state it is in); lists of everyone's requests, the whole
// trail, the outbox and Verify are for admins; an approver lists the
// requests they decided (RequestFilter.DecidedBy) and pages through what
// waits for them (ReviewableRequests), newest first if they like
// (RequestFilter.Newest), narrowed by a search of requester, ticket,
// policy, scope and ID (RequestFilter.Search). Reviewable, IsAdmin,
// MayView and Request.Allows are hints for what a front end shows.
//
// # Stores
//
// A Store persists and compares versions; it makes no decisions.
// store/sqlite is the embedded default (one file, pure Go);
// store/postgres serves many replicas of a host from one database and
// supplies the database clock as a TimeSource and Guard's reads in one
// round trip as a GuardReader; store/memory keeps
// everything in the process; store/storetest is the conformance suite
// every Store passes. A Guard on one replica commits its run only if the
// grants it read are unchanged (Tx.Unchanged), so no run starts after a
// revocation has committed anywhere.
//
// # Testing with a fake clock
//
// The engine's only time source is Options.Clock. Tests pass
// clock.NewMock() from github.com/benbjohnson/clock and move time with Add
// or Set: expiries, windows and the deadline of fn's context all follow
// it.
//
//	clk := clock.NewMock()
//	m, _ := pam.New(memory.New(), dir, &pam.Options{Clock: clk, AdminGroup: "admins"})
//	...
//	clk.Add(4 * time.Hour) // the grant has ended
//
// A store that keeps its own time (a TimeSource: store/postgres uses the
// database server's clock, so that replicas whose clocks drift decide
// alike) decides expiries and windows on that clock, not on
// Options.Clock; New reports a mock clock over such a store to OnError.
// Tests that move time run on store/memory or store/sqlite.
//
// # Observability
//
// Options.Logger (log/slog), Options.MeterProvider and
// Options.TracerProvider (the OpenTelemetry API; the host chooses the
// SDK) report what the engine does: Guard's decisions and latency,
// request transitions, commits and group commits, audit sinks' health
// and lag (a failing required sink denies every Guard: alert on
// pam.audit.sink.healthy), outbox deliveries and backlog, sweeps and
// checkpoints, and a span per Guard, transition, delivery and sink
// write under the caller's span. Attributes are bounded and never carry
// identities or parameters. Without them nothing is reported, at no
// cost. Manager.Ping and Manager.OldestPending serve readiness probes
// (pamhttp.Health). The README's Observability section has the table.
//
// # Where things live
//
//	pam.go          Options, New, Run, Close, the actor, time, the commit path
//	lifecycle.go    the (state, action) table and the pure transition function
//	policy.go       Policy, Scope and policy CRUD
//	catalog.go      the stored Catalog and SetCatalog; taskparams.go declarations
//	apply.go        policies as code: Config, Plan, Apply
//	request.go      Request, Submit, reads, Sweep
//	approval.go     decisions: Approve, Deny, Cancel, Revoke, Relinquish, Reviewable
//	progress.go     Progress: where a waiting request stands, M of N per group
//	extend.go       Extension and Extend: a longer window, decided as a request is
//	guard.go        Guard and Check: gathering, and the pure decision
//	grantbounds.go  grants bound to parameter values and limited in runs
//	breakglass.go   break-glass: BreakGlass, activation, review, the review list
//	explain.go      what a denial tells the user: a pending request, eligibility
//	grantctx.go     fn's context; grantwatch.go ends it with its grant
//	runend.go       run IDs, each run's one end: deferred, retried, swept
//	policycache.go  the compiled policies and catalog Guard reads (snapshot.go)
//	audit.go        Event, Outcome, Audit search
//	auditfeed.go    audit sinks fed from the store, fail-closed delivery
//	chain.go        the hash chain's encoding; verify.go, checkpoint.go
//	outbox.go       Notifier, Notification, the outbox and its delivery
//	telemetry.go    Options.Logger, MeterProvider, TracerProvider: logs, metrics, spans
//	params.go       operation parameters in the trail
//	store.go        the Store contract; storekit.go what every store shares
//	errors.go       the sentinels
//	display.go      DisplayText, Request.ForDisplay: user text shown as recorded
//	actordetail.go  WithActorDetail: where an actor acts from, in the events
//
// Beside the root: store/memory, store/sqlite, store/postgres (stores);
// sinks (audit sinks, checkpoint files and C2SP signed notes);
// notify/smtp, notify/webhook, notify/teams (notifiers); directory/ldap
// (Active Directory, LDAP); auth/oidc (OpenID Connect sign-in for
// pamhttp); pamhttp (the JSON API, its client, the approver page, health);
// cmd/pamctl (the command line); cmd/pamd (the approver service).
//
// # For store authors
//
// A Store implementation needs Tx, RequestVersion, Grant, the filters'
// Matches methods, Event.Chain (or ChainHash) and, optionally,
// OutboxStore, TimeSource, ChangeNotifier and GuardReader (Guard's reads
// in one round trip, for a store over a network). A durable store groups
// concurrent Commits into one transaction (internal/groupcommit holds the
// queue SQLite and PostgreSQL share), each Tx still all-or-nothing and
// failing alone; storetest.GroupCommit checks it. store/storetest is the
// contract: a store
// passes it with a few lines (see store/memory). A store that reads
// events from a database others can write to decodes each row strictly
// (DecodeDetail for the Detail) and returns a row that does not decode
// as an event with Malformed set, never as an error of the read;
// storetest.Malformed checks it.
//
// # Errors
//
// Every error wraps a sentinel from errors.go (ErrInvalid, ErrNotFound,
// ErrForbidden, ErrNotApproved, ...); test with errors.Is, and use
// errors.As for the detail of *ValidationError, *RegoError,
// *NotApprovedError, *RejectedError and *AmbiguousError. Bad input is
// rejected before anything is written.
package pam
