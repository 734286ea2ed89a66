// Quickstart runs the whole just-in-time story in the terms Exchange
// Online administrators know from Privileged Access Management:
//
//  1. An admin applies pam.yaml, policies as code: a policy on
//     New-MoveRequest with an approver group
//     (New-ElevatedAccessApprovalPolicy -Task 'Exchange\New-MoveRequest'
//     -ApprovalType Manual -ApproverGroup 'mailbox-managers').
//  2. Alice, with no standing rights, tries to move a mailbox: denied.
//  3. She requests access with a reason for two hours
//     (New-ElevatedAccessRequest -Task ... -Reason ... -DurationHours 2).
//  4. Bob, an approver, approves (Approve-ElevatedAccessRequest).
//  5. Alice moves the mailbox: allowed, and audited.
//  6. Two hours pass; the window ends; the next move is denied.
//  7. The audit trail is printed, checkpointed and verified. It also went
//     to a JSON Lines file beside the database, a required sink.
//
// State lives in a SQLite file (-db, or $PAM_QUICKSTART_DB; by default
// pam-quickstart.db in the temporary directory): run it twice and the
// second run's audit trail still holds the first run's events. The clock
// is a fake one started at the wall clock's time, so the two hours pass at
// once.
//
// The policy is in pam.yaml beside this file, embedded in the program, so
// it runs from any directory.
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/benbjohnson/clock"
	"sigs.k8s.io/yaml"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/sinks"
	"github.com/zerostanding/pam/store/sqlite"
)

// policyFile is the policies as code that the admin applies.
//
//go:embed pam.yaml
var policyFile []byte

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	def := os.Getenv("PAM_QUICKSTART_DB")
	if def == "" {
		def = filepath.Join(os.TempDir(), "pam-quickstart.db")
	}
	path := flag.String("db", def, "SQLite file that keeps the state between runs")
	flag.Parse()

	ctx := context.Background()
	clk := clock.NewMock()
	clk.Set(time.Now().UTC().Truncate(time.Minute))

	store, err := sqlite.Open(ctx, *path)
	if err != nil {
		return err
	}
	defer store.Close()
	fmt.Printf("state in %s\n", *path)
	// Earlier runs moved their fake clocks ahead; carry on from there.
	if last, err := store.Events(ctx, pam.EventFilter{Descending: true, Limit: 1}); err == nil && len(last) == 1 && last[0].Time.After(clk.Now()) {
		clk.Set(last[0].Time.Add(time.Minute))
	}

	dir, err := pam.NewStaticDirectory(map[string][]string{
		"pam-admins":       {"admin@contoso.com"},
		"mailbox-managers": {"bob@contoso.com"},
	})
	if err != nil {
		return err
	}
	// The trail also goes to a JSON Lines file, as a required sink: no
	// guarded operation runs unless its start is in the file. Checkpoints
	// of the trail's head go to a file of their own.
	trailFile, err := sinks.OpenFile(*path+".audit.jsonl", nil)
	if err != nil {
		return err
	}
	defer trailFile.Close()
	checkpoints := sinks.NewCheckpointFile(*path + ".checkpoints.jsonl")
	m, err := pam.New(store, dir, &pam.Options{
		Clock:           clk,
		AdminGroup:      "pam-admins",
		SystemAccounts:  []string{"svc-backup@contoso.com"},
		AuditSinks:      []pam.SinkConfig{{Name: "file", Sink: trailFile, Required: true}},
		CheckpointSinks: []pam.CheckpointSink{checkpoints},
		// Parameters are redacted unless a policy or this says otherwise.
		ParamAudit: pam.ParamAudit{Params: map[string]pam.ParamMode{"identity": pam.ParamFull, "target_database": pam.ParamFull}},
		Notifier: pam.NotifierFunc(func(_ context.Context, n pam.Notification) error {
			fmt.Printf("  ✉ to %s: %s (%s)\n", strings.Join(n.Recipients, ", "), n.Type, n.Request.Scope.Name)
			return nil
		}),
	})
	if err != nil {
		return err
	}
	admin := pam.WithActor(ctx, "admin@contoso.com")
	alice := pam.WithActor(ctx, "alice@contoso.com")
	bob := pam.WithActor(ctx, "bob@contoso.com")

	step("Admin applies pam.yaml: New-MoveRequest needs approval from mailbox-managers")
	var cfg pam.Config
	if err := yaml.UnmarshalStrict(policyFile, &cfg); err != nil {
		return fmt.Errorf("pam.yaml: %w", err)
	}
	plan, err := m.Apply(admin, cfg, pam.ApplyOptions{})
	if err != nil {
		return fmt.Errorf("pam.yaml: %w", err)
	}
	for _, c := range plan.Policies {
		fmt.Printf("  plan: %s %s\n", c.Action, c.PolicyID)
	}
	if plan.Empty() {
		fmt.Print("  plan: no changes (an earlier run applied it)\n")
	}
	p, err := m.Policy(admin, "mailbox-moves")
	if err != nil {
		return err
	}
	fmt.Printf("  policy %s, version %d\n", p.ID, p.Version)

	op := pam.Op{Task: "New-MoveRequest", Params: map[string]any{"identity": "leaver@contoso.com", "target_database": "DB-Archive"}}
	move := func(ctx context.Context) error {
		deadline, _ := ctx.Deadline()
		fmt.Printf("  moving %s to %s (access ends %s)\n", op.Params["identity"], op.Params["target_database"], deadline.Format("15:04"))
		return nil
	}

	step("Alice tries to move a mailbox without standing rights")
	err = m.Guard(alice, op, move)
	var na *pam.NotApprovedError
	if !errors.As(err, &na) {
		return fmt.Errorf("expected a denial, got %v", err)
	}
	fmt.Printf("  denied: %v\n", err)

	step("Alice requests access for 2 hours, with a reason")
	r, err := m.Submit(alice, pam.RequestInput{
		Scope:    pam.TaskScope(na.Task),
		Reason:   "INC-4711: move the mailbox of a leaver to the archive database",
		Duration: 2 * time.Hour,
	})
	if err != nil {
		return err
	}
	fmt.Printf("  request %s is %s\n", r.ID, r.State)
	// The notifications were written to the outbox with the request;
	// Run(ctx) delivers them in the background, Deliver does it now.
	if _, err := m.Deliver(ctx); err != nil {
		return err
	}

	step("Bob approves")
	r, err = m.Approve(bob, r.ID, "ticket checked")
	if err != nil {
		return err
	}
	fmt.Printf("  request is %s until %s\n", r.State, r.ExpiresAt.Format("15:04"))
	if _, err := m.Deliver(ctx); err != nil {
		return err
	}

	step("Alice moves the mailbox")
	if err := m.Guard(alice, op, move); err != nil {
		return err
	}

	step("Two hours later the window has ended")
	clk.Add(2 * time.Hour)
	err = m.Guard(alice, op, move)
	if !errors.Is(err, pam.ErrNotApproved) {
		return fmt.Errorf("expected a denial after the window, got %v", err)
	}
	fmt.Printf("  denied: %v\n", err)
	if _, err := m.Sweep(ctx); err != nil { // Run(ctx) does this in the background
		return err
	}
	if _, err := m.Deliver(ctx); err != nil {
		return err
	}

	step("The audit trail")
	// The newest 30 events, printed oldest first.
	events, _, err := m.Audit(admin, pam.EventFilter{Descending: true, Limit: 30})
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "  SEQ\tTIME\tEVENT\tACTOR\tTASK\tOUTCOME\tHASH")
	for i := len(events) - 1; i >= 0; i-- {
		e := events[i]
		fmt.Fprintf(w, "  %d\t%s\t%s\t%s\t%s\t%s\t%s…\n", e.Seq, e.Time.Format("Jan 2 15:04"), e.Type, e.Actor, e.Task, e.Outcome, e.Hash[:12])
	}
	if err := w.Flush(); err != nil {
		return err
	}

	step("A checkpoint of the trail's head, and the whole trail verified against every checkpoint so far")
	cp, err := m.Checkpoint(ctx)
	if err != nil {
		return err
	}
	all, err := sinks.ReadCheckpoints(*path + ".checkpoints.jsonl")
	if err != nil {
		return err
	}
	res, err := m.Verify(admin, pam.VerifyOptions{Checkpoints: all})
	if err != nil {
		return err
	}
	fmt.Printf("  checkpoint at event %d, hash %s…\n", cp.Seq, cp.Hash[:12])
	fmt.Printf("  %d events verify against %d checkpoints; the same trail is in %s.audit.jsonl\n", res.Events, res.Checkpoints, *path)
	return m.Close(ctx)
}

func step(s string) { fmt.Printf("\n▶ %s\n", s) }
