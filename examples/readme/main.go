// Readme is the README's first sketch as a program that runs: an admin
// puts New-MoveRequest under a policy, alice requests access, bob
// approves, and alice moves a VIP's mailbox inside Guard. The state lives
// in a SQLite file in a temporary directory, removed at the end.
//
//	go run ./examples/readme
//
// The lines between "README begin" and "README end" are the README's
// block, character for character after their common indentation;
// readme_test.go in the module root fails when the two differ.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/store/sqlite"
)

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "pam-readme")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	dbFile := filepath.Join(tmp, "pam.db")

	// What the host brings: who is in which group, who acts, data for
	// conditions, and the privileged operation itself.
	dir, err := pam.NewStaticDirectory(map[string][]string{
		"pam-admins":       {"admin@contoso.com"},
		"mailbox-managers": {"bob@contoso.com"},
	})
	if err != nil {
		return err
	}
	admin := pam.WithActor(ctx, "admin@contoso.com")
	alice := pam.WithActor(ctx, "alice@contoso.com")
	bob := pam.WithActor(ctx, "bob@contoso.com")
	catalog := pam.Catalog{Data: map[string]any{"vip": []string{"ceo@contoso.com", "cfo@contoso.com"}}}
	params := map[string]any{"identity": "ceo@contoso.com", "target": "DB-Archive"}
	moveMailbox := func(ctx context.Context, params map[string]any) error {
		deadline, _ := ctx.Deadline()
		fmt.Printf("moved the mailbox of %s to %s; access ends in %v\n",
			params["identity"], params["target"], time.Until(deadline).Round(time.Minute))
		return nil
	}

	// README begin
	store, err := sqlite.Open(ctx, dbFile) // or postgres.Open(ctx, dsn, nil), or memory.New()
	if err != nil {
		return err
	}
	defer store.Close()
	m, err := pam.New(store, dir, &pam.Options{AdminGroup: "pam-admins", Catalog: catalog})
	if err != nil {
		return err
	}
	defer m.Close(ctx) // stops the audit sink workers once they hold the whole trail

	_, err = m.CreatePolicy(admin, pam.Policy{
		Scope:          pam.TaskScope("New-MoveRequest"),
		Approval:       pam.Manual,
		ApproverGroups: []pam.ApproverGroup{{Group: "mailbox-managers"}},
		Condition:      `input.op.params.identity in data.pam.vip`, // optional
	})
	if err != nil {
		return err
	}

	r, err := m.Submit(alice, pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"),
		Reason: "INC-4711: leaver", Duration: 2 * time.Hour})
	if err != nil {
		return err
	}
	if _, err := m.Approve(bob, r.ID, "ok"); err != nil {
		return err
	}

	err = m.Guard(alice, pam.Op{Task: "New-MoveRequest", Params: params}, func(ctx context.Context) error {
		return moveMailbox(ctx, params) // ctx ends with the grant
	})
	var na *pam.NotApprovedError
	switch {
	case errors.As(err, &na):
		fmt.Printf("denied: request access to %s under policy %s\n", na.Task, na.PolicyID)
	case err != nil:
		return err
	}
	// README end

	res, err := m.Verify(admin, pam.VerifyOptions{})
	if err != nil {
		return err
	}
	fmt.Printf("the audit trail holds %d events and its hash chain verifies\n", res.Events)
	return nil
}
