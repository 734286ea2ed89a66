package pam_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/store/memory"
)

// A host builds one Manager at start-up: a store, a directory that says
// who is in which group, and the policies its admins create.
func ExampleNew() {
	dir, err := pam.NewStaticDirectory(map[string][]string{
		"pam-admins":       {"admin@contoso.com"},
		"mailbox-managers": {"bob@contoso.com", "carol@contoso.com"},
	})
	if err != nil {
		log.Fatal(err)
	}
	m, err := pam.New(memory.New(), dir, nil) // nil: the defaults (wall clock, admin group "pam-admins")
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close(context.Background())

	admin := pam.WithActor(context.Background(), "admin@contoso.com")
	p, err := m.CreatePolicy(admin, pam.Policy{
		ID:             "move-mailboxes",
		Scope:          pam.TaskScope("New-MoveRequest"),
		Approval:       pam.Manual,
		ApproverGroups: []pam.ApproverGroup{{Group: "mailbox-managers"}},
		MaxDuration:    8 * time.Hour,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(p.ID, p.Scope, p.Approval, p.ApproverGroups[0].Group, "version", p.Version)
	// Output: move-mailboxes task:New-MoveRequest manual mailbox-managers version 1
}

func ExampleManager_Submit() {
	clk := clock.NewMock()
	dir, _ := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin@contoso.com"}, "mailbox-managers": {"bob@contoso.com"}})
	m, _ := pam.New(memory.New(), dir, &pam.Options{Clock: clk})
	_, err := m.CreatePolicy(pam.WithActor(context.Background(), "admin@contoso.com"), pam.Policy{
		ID: "move-mailboxes", Scope: pam.TaskScope("New-MoveRequest"), Approval: pam.Manual,
		ApproverGroups: []pam.ApproverGroup{{Group: "mailbox-managers"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	alice := pam.WithActor(context.Background(), "alice@contoso.com")
	bob := pam.WithActor(context.Background(), "Bob@Contoso.com") // any spelling: identities are canonicalised

	r, err := m.Submit(alice, pam.RequestInput{
		Scope:    pam.TaskScope("New-MoveRequest"),
		Reason:   "move the mailbox of a leaver to the archive database",
		Duration: 2 * time.Hour,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("submitted:", r.State, "bound to", r.PolicyID)

	_, err = m.Approve(alice, r.ID, "")
	fmt.Println("self-approval:", errors.Is(err, pam.ErrSelfApproval))

	clk.Add(30 * time.Minute) // the window opens at approval, not submission
	r, err = m.Approve(bob, r.ID, "ticket checked")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("approved by:", r.Decisions[0].Approver, "for", r.ExpiresAt.Sub(r.ApprovedAt))
	// Output:
	// submitted: pending bound to move-mailboxes
	// self-approval: true
	// approved by: bob@contoso.com for 2h0m0s
}

func ExampleManager_Guard() {
	clk := clock.NewMock()
	dir, _ := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin@contoso.com"}, "mailbox-managers": {"carol@contoso.com"}})
	m, _ := pam.New(memory.New(), dir, &pam.Options{Clock: clk})
	_, err := m.CreatePolicy(pam.WithActor(context.Background(), "admin@contoso.com"), pam.Policy{
		ID: "move-mailboxes", Scope: pam.TaskScope("New-MoveRequest"), Approval: pam.Manual,
		ApproverGroups: []pam.ApproverGroup{{Group: "mailbox-managers"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	alice := pam.WithActor(context.Background(), "alice@contoso.com")
	op := pam.Op{Task: "New-MoveRequest", Params: map[string]any{"identity": "leaver@contoso.com", "target": "DB-Archive"}}
	move := func(ctx context.Context) error {
		deadline, _ := ctx.Deadline()
		fmt.Println("moving", op.Params["identity"], "- access ends in", deadline.Sub(clk.Now()))
		return nil
	}

	err = m.Guard(alice, op, move)
	var na *pam.NotApprovedError
	if errors.As(err, &na) {
		fmt.Printf("denied: request access to %s under policy %s\n", na.Task, na.PolicyID)
	}

	r, err := m.Submit(alice, pam.RequestInput{Scope: pam.TaskScope(na.Task), Reason: "leaver", Duration: time.Hour})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := m.Approve(pam.WithActor(context.Background(), "carol@contoso.com"), r.ID, ""); err != nil {
		log.Fatal(err)
	}
	if err := m.Guard(alice, op, move); err != nil {
		log.Fatal(err)
	}

	clk.Add(time.Hour) // the window ends
	err = m.Guard(alice, op, move)
	fmt.Println("after the window:", errors.Is(err, pam.ErrNotApproved))
	// Output:
	// denied: request access to New-MoveRequest under policy move-mailboxes
	// moving leaver@contoso.com - access ends in 1h0m0s
	// after the window: true
}

// What Guard's error says about the work: fn did not run (ErrAudit and
// the other sentinels Guard returns: a retry is safe), or it ran and its
// end is not stored yet (ErrAuditIncomplete, only with SyncRunEnds: do not
// repeat it). Each run's start and end share Event.Run.
func ExampleOptions_syncRunEnds() {
	dir, _ := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin@contoso.com"}})
	m, _ := pam.New(memory.New(), dir, &pam.Options{SystemAccounts: []string{"svc-backup"}, SyncRunEnds: true})
	admin := pam.WithActor(context.Background(), "admin@contoso.com")
	if _, err := m.CreatePolicy(admin, pam.Policy{ID: "keys", Scope: pam.TaskScope("Rotate-Key"), Approval: pam.Auto}); err != nil {
		log.Fatal(err)
	}
	err := m.Guard(pam.WithActor(context.Background(), "svc-backup"), pam.Op{Task: "Rotate-Key"}, func(context.Context) error {
		return nil // rotate the key
	})
	switch {
	case errors.Is(err, pam.ErrAuditIncomplete):
		fmt.Println("rotated; the end is recorded later: do not rotate again")
	case err != nil:
		fmt.Println("not rotated:", err)
	default:
		fmt.Println("rotated")
	}
	// With SyncRunEnds the run's end is in the trail once Guard returns.
	starts, _, _ := m.Audit(admin, pam.EventFilter{Types: []pam.EventType{pam.EventGuardExempt}})
	run, _, _ := m.Audit(admin, pam.EventFilter{Run: starts[0].Run})
	for _, e := range run {
		fmt.Println(e.Type, e.Outcome)
	}
	// Output:
	// rotated
	// guard.exempt exempt
	// guard.finished ok
}

// Check answers what Guard would decide, without running anything: a
// front end uses it to offer a request form before the user tries.
func ExampleManager_Check() {
	dir, _ := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin@contoso.com"}, "mailbox-managers": {"bob@contoso.com"}})
	m, _ := pam.New(memory.New(), dir, &pam.Options{SystemAccounts: []string{"svc-backup@contoso.com"}})
	_, err := m.CreatePolicy(pam.WithActor(context.Background(), "admin@contoso.com"), pam.Policy{
		ID: "move-mailboxes", Scope: pam.TaskScope("New-MoveRequest"), Approval: pam.Manual,
		ApproverGroups: []pam.ApproverGroup{{Group: "mailbox-managers"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	alice := pam.WithActor(context.Background(), "alice@contoso.com")

	res, err := m.Check(alice, pam.Op{Task: "New-MoveRequest"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Allowed, res.Outcome, res.Policies[0].PolicyID, "-", res.Policies[0].Missing)

	res, _ = m.Check(alice, pam.Op{Task: "Get-Mailbox"})
	fmt.Println(res.Allowed, res.Outcome)

	res, _ = m.Check(pam.WithActor(context.Background(), "svc-backup@contoso.com"), pam.Op{Task: "New-MoveRequest"})
	fmt.Println(res.Allowed, res.Outcome)
	// Output:
	// false not_approved move-mailboxes - no approved request
	// true uncovered
	// true exempt
}

// A condition narrows a policy to some operations: here, moves of VIP
// mailboxes only. A parameter the condition needs but the host did not
// pass counts as covered: the policy fails closed.
func ExamplePolicy_condition() {
	dir, _ := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin"}, "security": {"erin"}})
	m, _ := pam.New(memory.New(), dir, &pam.Options{
		Catalog: pam.Catalog{Data: map[string]any{"vip": []string{"ceo@contoso.com", "cfo@contoso.com"}}},
	})
	_, err := m.CreatePolicy(pam.WithActor(context.Background(), "admin"), pam.Policy{
		ID: "vip-moves", Scope: pam.TaskScope("New-MoveRequest"), Approval: pam.Manual,
		ApproverGroups: []pam.ApproverGroup{{Group: "security"}},
		Condition:      "input.op.params.identity in data.pam.vip",
	})
	if err != nil {
		log.Fatal(err)
	}
	alice := pam.WithActor(context.Background(), "alice")
	for _, params := range []map[string]any{{"identity": "intern@contoso.com"}, {"identity": "ceo@contoso.com"}, {}} {
		res, _ := m.Check(alice, pam.Op{Task: "New-MoveRequest", Params: params})
		fmt.Printf("%v: condition %s, allowed %v\n", params, res.Policies[0].Condition, res.Allowed)
	}
	// Output:
	// map[identity:intern@contoso.com]: condition false, allowed true
	// map[identity:ceo@contoso.com]: condition true, allowed false
	// map[]: condition undefined, allowed false
}

// Verify recomputes the hash chain, here against a signed checkpoint of
// the head kept outside the store.
func ExampleManager_Verify() {
	pub, key, _ := ed25519.GenerateKey(nil)
	dir, _ := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin"}})
	m, err := pam.New(memory.New(), dir, &pam.Options{CheckpointKey: key})
	if err != nil {
		log.Fatal(err)
	}
	admin := pam.WithActor(context.Background(), "admin")
	for _, task := range []string{"New-MoveRequest", "Set-Mailbox"} {
		if _, err := m.CreatePolicy(admin, pam.Policy{Scope: pam.TaskScope(task), Approval: pam.Auto}); err != nil {
			log.Fatal(err)
		}
	}
	cp, err := m.Checkpoint(context.Background()) // also written to Options.CheckpointSinks
	if err != nil {
		log.Fatal(err)
	}
	res, err := m.Verify(admin, pam.VerifyOptions{Checkpoints: []pam.Checkpoint{cp}, PublicKeys: []ed25519.PublicKey{pub}})
	var te *pam.TamperError
	switch {
	case errors.As(err, &te):
		fmt.Println("tampered at event", te.Seq, te.Reason)
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Println(res.Events, "events verify against", res.Checkpoints, "signed checkpoint")
	}
	// Output: 2 events verify against 1 signed checkpoint
}

// Notifications go to the outbox with the transition that causes them;
// Run delivers them in the background, Deliver makes one pass.
func ExampleManager_Deliver() {
	dir, _ := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin"}, "mailbox-managers": {"bob", "carol"}})
	m, err := pam.New(memory.New(), dir, &pam.Options{
		Notifier: pam.NotifierFunc(func(_ context.Context, n pam.Notification) error {
			fmt.Println("to", n.Recipients[0]+":", n.Type, n.Request.Scope)
			return nil
		}),
	})
	if err != nil {
		log.Fatal(err)
	}
	admin := pam.WithActor(context.Background(), "admin")
	if _, err := m.CreatePolicy(admin, pam.Policy{Scope: pam.TaskScope("New-MoveRequest"),
		Approval: pam.Manual, ApproverGroups: []pam.ApproverGroup{{Group: "mailbox-managers"}}}); err != nil {
		log.Fatal(err)
	}
	if _, err := m.Submit(pam.WithActor(context.Background(), "alice"), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "leaver"}); err != nil {
		log.Fatal(err)
	}
	msgs, _, err := m.Messages(admin, pam.MessageFilter{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(msgs), "messages waiting")
	n, err := m.Deliver(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(n, "delivered")
	// Unordered output:
	// 2 messages waiting
	// to bob: request.submitted task:New-MoveRequest
	// to carol: request.submitted task:New-MoveRequest
	// 2 delivered
}

// Allows reads the lifecycle table: which actions a request's state
// allows at a time, whoever takes them. A front end shows only those
// buttons; the Manager still checks who acts.
func ExampleRequest_Allows() {
	clk := clock.NewMock()
	dir, _ := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin"}, "mailbox-managers": {"bob"}})
	m, _ := pam.New(memory.New(), dir, &pam.Options{Clock: clk})
	_, err := m.CreatePolicy(pam.WithActor(context.Background(), "admin"), pam.Policy{
		Scope: pam.TaskScope("New-MoveRequest"), Approval: pam.Manual,
		ApproverGroups: []pam.ApproverGroup{{Group: "mailbox-managers"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	alice := pam.WithActor(context.Background(), "alice")
	show := func(id string) {
		r, err := m.Request(alice, id) // the requester may read her request
		if err != nil {
			log.Fatal(err)
		}
		now := clk.Now()
		fmt.Printf("%s: approve %v, cancel %v, revoke %v\n", r.StateAt(now),
			r.Allows(pam.ActionApprove, now), r.Allows(pam.ActionCancel, now), r.Allows(pam.ActionRevoke, now))
	}

	r, err := m.Submit(alice, pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "leaver", Duration: time.Hour})
	if err != nil {
		log.Fatal(err)
	}
	show(r.ID)
	if _, err := m.Approve(pam.WithActor(context.Background(), "bob"), r.ID, ""); err != nil {
		log.Fatal(err)
	}
	show(r.ID)
	clk.Add(time.Hour)
	show(r.ID)
	// Output:
	// pending: approve true, cancel true, revoke false
	// approved: approve false, cancel false, revoke true
	// expired: approve false, cancel false, revoke false
}

// The holder of a grant ends it when the work is done, before its window
// closes: the request is relinquished, and work still running under the
// grant sees its context end, with the reason as its cause.
func ExampleManager_Relinquish() {
	dir, _ := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin"}, "mailbox-managers": {"bob"}})
	m, _ := pam.New(memory.New(), dir, nil)
	defer m.Close(context.Background())
	_, err := m.CreatePolicy(pam.WithActor(context.Background(), "admin"), pam.Policy{
		ID: "move-mailboxes", Scope: pam.TaskScope("New-MoveRequest"), Approval: pam.Manual,
		ApproverGroups: []pam.ApproverGroup{{Group: "mailbox-managers"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	alice := pam.WithActor(context.Background(), "alice")
	r, err := m.Submit(alice, pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "INC-4711", Duration: 4 * time.Hour})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := m.Approve(pam.WithActor(context.Background(), "bob"), r.ID, ""); err != nil {
		log.Fatal(err)
	}

	err = m.Guard(alice, pam.Op{Task: "New-MoveRequest"}, func(ctx context.Context) error {
		// The last mailbox is moved: alice gives the access back while
		// the run is still going.
		if _, err := m.Relinquish(alice, r.ID, "all moved"); err != nil {
			return err
		}
		var ended *pam.GrantEndedError
		if errors.As(context.Cause(ctx), &ended) && ended.RequestID == r.ID {
			fmt.Println("run's context ended:", ended.Reason)
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	r, _ = m.Request(alice, r.ID)
	fmt.Println("request:", r.State, "by", r.ClosedBy)
	err = m.Guard(alice, pam.Op{Task: "New-MoveRequest"}, func(context.Context) error { return nil })
	fmt.Println("next run:", errors.Is(err, pam.ErrNotApproved))
	// Output:
	// run's context ended: relinquished by its holder
	// request: relinquished by alice
	// next run: true
}

// A grant as precise as the work: bound to one mailbox and good for one
// run. The policy requires the binding, so no grant under it covers
// more than one mailbox.
func ExampleRequestInput_bind() {
	dir, _ := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin"}, "mailbox-managers": {"bob"}})
	m, _ := pam.New(memory.New(), dir, &pam.Options{Catalog: pam.Catalog{Tasks: map[string]pam.TaskSpec{
		"New-MoveRequest": {Params: []pam.ParamSpec{{Name: "identity", Type: pam.ParamString, Required: true}}},
	}}})
	defer m.Close(context.Background())
	_, err := m.CreatePolicy(pam.WithActor(context.Background(), "admin"), pam.Policy{
		ID: "move-mailboxes", Scope: pam.TaskScope("New-MoveRequest"), Approval: pam.Manual,
		ApproverGroups: []pam.ApproverGroup{{Group: "mailbox-managers"}},
		RequireBind:    []string{"identity"},
	})
	if err != nil {
		log.Fatal(err)
	}
	alice := pam.WithActor(context.Background(), "alice")
	r, err := m.Submit(alice, pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "INC-4711: the CEO's mailbox",
		Bind: map[string]any{"identity": "ceo@contoso.com"}, MaxUses: 1})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("bob reads:", r.Bounds())
	if _, err := m.Approve(pam.WithActor(context.Background(), "bob"), r.ID, ""); err != nil {
		log.Fatal(err)
	}

	move := func(mailbox string) string {
		err := m.Guard(alice, pam.Op{Task: "New-MoveRequest", Params: map[string]any{"identity": mailbox}},
			func(context.Context) error { return nil })
		var nae *pam.NotApprovedError
		if errors.As(err, &nae) {
			return strings.ReplaceAll(nae.Reason, r.ID, "req_…")
		}
		return fmt.Sprint(err)
	}
	fmt.Println("another mailbox:", move("cfo@contoso.com"))
	fmt.Println("the CEO's:", move("ceo@contoso.com"))
	fmt.Println("again:", move("ceo@contoso.com"))
	// Output:
	// bob reads: bound to identity = "ceo@contoso.com"; 1 run (0 used)
	// another mailbox: request req_… is bound to identity = "ceo@contoso.com", which this operation's parameters do not match
	// the CEO's: <nil>
	// again: request req_… has used its 1 run
}

// Approvals that do not sit unseen: the approvers are reminded after an
// hour, and after four the request escalates to a group whose members
// may decide it alone.
func ExamplePolicy_escalation() {
	dir, _ := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin"}, "dba": {"bob", "carol"}, "dba-leads": {"dana"}})
	clk := clock.NewMock()
	m, _ := pam.New(memory.New(), dir, &pam.Options{Clock: clk})
	defer m.Close(context.Background())
	_, err := m.CreatePolicy(pam.WithActor(context.Background(), "admin"), pam.Policy{
		ID: "drop", Scope: pam.TaskScope("Drop-Table"), Approval: pam.Manual,
		ApproverGroups: []pam.ApproverGroup{{Group: "dba", MinApprovals: 2}},
		RemindAfter:    time.Hour, EscalateAfter: 4 * time.Hour, EscalationGroup: "dba-leads",
	})
	if err != nil {
		log.Fatal(err)
	}
	r, err := m.Submit(pam.WithActor(context.Background(), "alice"), pam.RequestInput{Scope: pam.TaskScope("Drop-Table"), Reason: "CHG-12"})
	if err != nil {
		log.Fatal(err)
	}
	for _, after := range []time.Duration{time.Hour, 3 * time.Hour, 4 * time.Hour} {
		clk.Set(r.CreatedAt.Add(after))
		n, _ := m.Sweep(context.Background()) // Run sweeps on its own
		fmt.Printf("after %v: %d recorded\n", after, n)
	}
	r, err = m.Approve(pam.WithActor(context.Background(), "dana"), r.ID, "both DBAs are out")
	fmt.Println(r.State, err)
	// Output:
	// after 1h0m0s: 1 recorded
	// after 3h0m0s: 1 recorded
	// after 4h0m0s: 2 recorded
	// approved <nil>
}

// A request may name its start: approved ahead of it, the grant is
// scheduled, Guard says when it opens, and the window lasts the duration
// from the start.
func ExampleRequestInput_start() {
	clk := clock.NewMock()
	clk.Set(time.Date(2026, 11, 6, 17, 0, 0, 0, time.UTC)) // Friday evening
	dir, _ := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin"}, "mailbox-managers": {"bob"}})
	m, _ := pam.New(memory.New(), dir, &pam.Options{Clock: clk})
	defer m.Close(context.Background())
	_, err := m.CreatePolicy(pam.WithActor(context.Background(), "admin"), pam.Policy{
		ID: "move-mailboxes", Scope: pam.TaskScope("New-MoveRequest"), Approval: pam.Manual,
		ApproverGroups: []pam.ApproverGroup{{Group: "mailbox-managers"}}, MaxStartDelay: 7 * 24 * time.Hour,
	})
	if err != nil {
		log.Fatal(err)
	}
	alice := pam.WithActor(context.Background(), "alice")
	r, err := m.Submit(alice, pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "CHG-7: weekend migration",
		Duration: 4 * time.Hour, Start: time.Date(2026, 11, 7, 22, 0, 0, 0, time.UTC)})
	if err != nil {
		log.Fatal(err)
	}
	r, _ = m.Approve(pam.WithActor(context.Background(), "bob"), r.ID, "")
	fmt.Println("window:", r.ApprovedAt.Format(time.RFC3339), "to", r.ExpiresAt.Format(time.RFC3339))

	err = m.Guard(alice, pam.Op{Task: "New-MoveRequest"}, func(context.Context) error { return nil })
	var na *pam.NotApprovedError
	if errors.As(err, &na) {
		fmt.Println("now:", strings.Replace(na.Reason, r.ID, "req", 1))
	}
	clk.Set(r.ApprovedAt)
	err = m.Guard(alice, pam.Op{Task: "New-MoveRequest"}, func(context.Context) error { return nil })
	fmt.Println("at the start:", err)

	_, err = m.Submit(alice, pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "later", Start: clk.Now().Add(8 * 24 * time.Hour)})
	fmt.Println("eight days ahead:", errors.Is(err, pam.ErrInvalid))
	// Output:
	// window: 2026-11-07T22:00:00Z to 2026-11-08T02:00:00Z
	// now: request req is approved and opens at 2026-11-07T22:00:00Z
	// at the start: <nil>
	// eight days ahead: true
}

// The holder asks for more time; the approvers decide it as they did the
// request, and work already running follows the new end.
func ExampleManager_Extend() {
	clk := clock.NewMock()
	dir, _ := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin"}, "mailbox-managers": {"bob", "carol"}})
	m, _ := pam.New(memory.New(), dir, &pam.Options{Clock: clk})
	defer m.Close(context.Background())
	_, err := m.CreatePolicy(pam.WithActor(context.Background(), "admin"), pam.Policy{
		ID: "move-mailboxes", Scope: pam.TaskScope("New-MoveRequest"), Approval: pam.Manual,
		ApproverGroups: []pam.ApproverGroup{{Group: "mailbox-managers", MinApprovals: 2}},
		MaxDuration:    4 * time.Hour, MaxExtendedDuration: 6 * time.Hour, // renewals up to 6 hours in all
	})
	if err != nil {
		log.Fatal(err)
	}
	alice := pam.WithActor(context.Background(), "alice")
	bob, carol := pam.WithActor(context.Background(), "bob"), pam.WithActor(context.Background(), "carol")
	r, _ := m.Submit(alice, pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "INC-4711", Duration: 4 * time.Hour})
	m.Approve(bob, r.ID, "")
	r, _ = m.Approve(carol, r.ID, "")
	start := r.ApprovedAt

	err = m.Guard(alice, pam.Op{Task: "New-MoveRequest"}, func(ctx context.Context) error {
		deadline, _ := ctx.Deadline()
		fmt.Println("run's deadline:", deadline.Sub(start))
		_, err := m.Extend(alice, r.ID, 3*time.Hour, "the archive is slow")
		fmt.Println("3h more:", errors.Is(err, pam.ErrDurationTooLong))
		if r, err = m.Extend(alice, r.ID, 2*time.Hour, "the archive is slow"); err != nil {
			return err
		}
		fmt.Println("asked:", r.Extension.State, r.Extension.By)
		m.Approve(bob, r.ID, "")
		if r, err = m.Approve(carol, r.ID, "ok"); err != nil {
			return err
		}
		deadline, _ = ctx.Deadline()
		fmt.Println("extension:", r.Extension.State, "- run's deadline:", deadline.Sub(start))
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	// Output:
	// run's deadline: 4h0m0s
	// 3h more: true
	// asked: pending 2h0m0s
	// extension: approved - run's deadline: 6h0m0s
}

// ExampleManager_BreakGlass: an on-call engineer acts at once in an
// emergency; every run is marked in the trail, and an approver reviews
// the activation afterwards.
func ExampleManager_BreakGlass() {
	dir, _ := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin"}, "dba": {"bob"}, "oncall": {"alice"}, "security": {"sec"}})
	m, _ := pam.New(memory.New(), dir, &pam.Options{Clock: clock.NewMock()})
	defer m.Close(context.Background())
	_, err := m.CreatePolicy(pam.WithActor(context.Background(), "admin"), pam.Policy{
		ID: "drop", Scope: pam.TaskScope("Drop-Table"), Approval: pam.Manual,
		ApproverGroups: []pam.ApproverGroup{{Group: "dba"}},
		// An hour at most, once a day per person, reviewed within a day.
		BreakGlass: &pam.BreakGlass{Group: "oncall", AlertGroup: "security"},
	})
	if err != nil {
		log.Fatal(err)
	}
	alice := pam.WithActor(context.Background(), "alice")
	r, err := m.BreakGlass(alice, pam.RequestInput{PolicyID: "drop", Reason: "INC-77 disk full"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.State, r.Duration, r.BreakGlass.State)
	err = m.Guard(alice, pam.Op{Task: "Drop-Table"}, func(ctx context.Context) error { return nil })
	fmt.Println("run:", err)
	_, err = m.BreakGlass(alice, pam.RequestInput{PolicyID: "drop", Reason: "again"})
	fmt.Println(errors.Is(err, pam.ErrLimit))

	bob := pam.WithActor(context.Background(), "bob")
	todo, _ := m.BreakGlassReviews(bob)
	fmt.Println("to review:", len(todo))
	r, err = m.ReviewBreakGlass(bob, r.ID, pam.ReviewConfirmed, "the disk was full")
	fmt.Println(r.BreakGlass.State, err)
	events, _, _ := m.Audit(pam.WithActor(context.Background(), "admin"), pam.EventFilter{RequestID: r.ID, Types: []pam.EventType{
		pam.EventRequestBreakGlass, pam.EventRequestApproved, pam.EventGuardAllowed, pam.EventRequestBreakGlassConfirmed}})
	for _, e := range events {
		fmt.Println(e.Type, e.Detail["break_glass"] != "")
	}
	// Output:
	// approved 1h0m0s pending
	// run: <nil>
	// true
	// to review: 1
	// confirmed <nil>
	// request.break_glass false
	// request.approved false
	// guard.allowed true
	// request.break_glass_confirmed false
}

// Only the helpdesk may ask: anyone else is refused, and Check tells them
// that they cannot request rather than what to request.
func ExamplePolicy_requesterGroups() {
	dir, _ := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin"}, "mailbox-managers": {"bob"}, "helpdesk": {"alice"}})
	m, _ := pam.New(memory.New(), dir, nil)
	defer m.Close(context.Background())
	_, err := m.CreatePolicy(pam.WithActor(context.Background(), "admin"), pam.Policy{
		ID: "move-mailboxes", Scope: pam.TaskScope("New-MoveRequest"), Approval: pam.Manual,
		ApproverGroups:  []pam.ApproverGroup{{Group: "mailbox-managers"}},
		RequesterGroups: []string{"helpdesk"},
	})
	if err != nil {
		log.Fatal(err)
	}
	in := pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "INC-4711"}
	_, err = m.Submit(pam.WithActor(context.Background(), "mallory"), in)
	fmt.Println("mallory:", errors.Is(err, pam.ErrForbidden))
	res, _ := m.Check(pam.WithActor(context.Background(), "mallory"), pam.Op{Task: "New-MoveRequest"})
	fmt.Println("mallory is told:", res.Policies[0].Ineligible)
	_, err = m.Submit(pam.WithActor(context.Background(), "alice"), in)
	fmt.Println("alice:", err)
	// Output:
	// mallory: true
	// mallory is told: true
	// alice: <nil>
}
