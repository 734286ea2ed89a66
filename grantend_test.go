package pam_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/zerostanding/pam"
)

// runningFn is a guarded fn that runs until its context ends or it is
// released, and records when and why its context ended.
type runningFn struct {
	release chan struct{}
	ended   chan struct{} // closed when fn saw ctx.Done()
	at      time.Time
	cause   error
	done    chan struct{} // closed when Guard returned
	err     error         // Guard's result
}

// startGuarded starts Guard of task as who on m in a goroutine, and
// returns once fn runs.
func startGuarded(t *testing.T, m *pam.Manager, who, task string) *runningFn {
	t.Helper()
	r := &runningFn{release: make(chan struct{}), ended: make(chan struct{}), done: make(chan struct{})}
	started := make(chan struct{})
	go func() {
		defer close(r.done)
		r.err = m.Guard(pam.WithActor(context.Background(), who), pam.Op{Task: task}, func(ctx context.Context) error {
			close(started)
			select {
			case <-ctx.Done():
				r.at, r.cause = time.Now(), context.Cause(ctx)
				close(r.ended)
				return ctx.Err()
			case <-r.release:
				return nil
			}
		})
	}()
	select {
	case <-started:
	case <-r.done:
		t.Fatalf("Guard did not run fn: %v", r.err)
	}
	t.Cleanup(func() {
		close(r.release)
		<-r.done
	})
	return r
}

// endedWithin waits for fn's context to end and checks that it did within
// bound of since, for reason.
func (r *runningFn) endedWithin(t *testing.T, since time.Time, bound time.Duration, reason pam.GrantEndReason, requestID string) time.Duration {
	t.Helper()
	select {
	case <-r.ended:
	case <-time.After(bound + 5*time.Second):
		t.Fatalf("fn's context still live %v after the grant ended", bound+5*time.Second)
	}
	d := max(r.at.Sub(since), 0)
	if d > bound {
		t.Errorf("fn's context ended %v after the grant, want within %v", d, bound)
	}
	var ge *pam.GrantEndedError
	if !errors.As(r.cause, &ge) || !errors.Is(r.cause, pam.ErrGrantEnded) || ge.Reason != reason || ge.RequestID != requestID {
		t.Errorf("context.Cause = %v, want a GrantEndedError %q of %s", r.cause, reason, requestID)
	}
	return d
}

// stillRunning checks that fn's context has not ended.
func (r *runningFn) stillRunning(t *testing.T) {
	t.Helper()
	select {
	case <-r.ended:
		t.Errorf("fn under an unaffected grant was ended: %v", r.cause)
	case <-time.After(20 * time.Millisecond):
	}
}

var journalPolicy = pam.Policy{ID: "journal", Scope: pam.RoleScope("Journaling"), Approval: pam.Manual,
	ApproverGroups: []pam.ApproverGroup{{Group: "mailbox-managers"}}}

func TestGuardContextEndsWithGrant(t *testing.T) {
	const bound = 10 * time.Millisecond
	setup := func(t *testing.T) (e *env, alice, zoe pam.Request, other pam.Request) {
		e = newEnv(t)
		e.policy(movePolicy())
		e.policy(journalPolicy)
		alice = e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Duration: 2 * time.Hour})
		zoe = e.grant("zoe", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Duration: 2 * time.Hour})
		other = e.grant("alice", pam.RequestInput{Scope: pam.RoleScope("Journaling"), Duration: 3 * time.Hour})
		return e, alice, zoe, other
	}

	t.Run("revoked", func(t *testing.T) {
		e, alice, _, _ := setup(t)
		fn := startGuarded(t, e.m, "alice", "New-MoveRequest")
		same := startGuarded(t, e.m, "alice", "New-MoveRequest")
		zoe := startGuarded(t, e.m, "zoe", "New-MoveRequest")
		if _, err := e.m.Revoke(e.admin(), alice.ID, "incident over"); err != nil {
			t.Fatal(err)
		}
		revoked := time.Now()
		fn.endedWithin(t, revoked, bound, pam.GrantRevoked, alice.ID)
		same.endedWithin(t, revoked, bound, pam.GrantRevoked, alice.ID)
		zoe.stillRunning(t)
		<-fn.done
		if !errors.Is(fn.err, context.Canceled) {
			t.Errorf("Guard = %v, want fn's ctx.Err(), context.Canceled", fn.err)
		}
	})
	t.Run("cut by a policy update", func(t *testing.T) {
		e, alice, zoe, _ := setup(t)
		fn := startGuarded(t, e.m, "alice", "New-MoveRequest")
		fz := startGuarded(t, e.m, "zoe", "New-MoveRequest")
		journal := startGuarded(t, e.m, "alice", "Set-JournalRule")
		p, _ := e.m.Policy(e.admin(), "move")
		p.PendingTTL = time.Hour // does not change access
		if p, _ = e.m.UpdatePolicy(e.admin(), p); p.Version == 0 {
			t.Fatal("update failed")
		}
		fn.stillRunning(t)
		p.ApproverGroups = []pam.ApproverGroup{{Group: "mailbox-managers", MinApprovals: 2}}
		if _, err := e.m.UpdatePolicy(e.admin(), p); err != nil {
			t.Fatal(err)
		}
		cut := time.Now()
		fn.endedWithin(t, cut, bound, pam.GrantCut, alice.ID)
		fz.endedWithin(t, cut, bound, pam.GrantCut, zoe.ID)
		journal.stillRunning(t)
	})
	t.Run("cut by a catalog change", func(t *testing.T) {
		e, alice, _, other := setup(t)
		fn := startGuarded(t, e.m, "alice", "New-MoveRequest")
		journal := startGuarded(t, e.m, "alice", "Set-JournalRule")
		cat := testCatalog.Clone()
		cat.Roles["Journaling"] = append(cat.Roles["Journaling"], "Set-Mailbox")
		if err := e.m.SetCatalog(e.admin(), cat); err != nil {
			t.Fatal(err)
		}
		journal.endedWithin(t, time.Now(), bound, pam.GrantCut, other.ID)
		fn.stillRunning(t)
		_ = alice
	})
	t.Run("cut by Apply", func(t *testing.T) {
		e, alice, _, _ := setup(t)
		fn := startGuarded(t, e.m, "alice", "New-MoveRequest")
		journal := startGuarded(t, e.m, "alice", "Set-JournalRule")
		move := movePolicy()
		move.ApproverGroups = []pam.ApproverGroup{{Group: "security"}}
		if _, err := e.m.Apply(e.admin(), pam.Config{Policies: map[string]pam.Policy{"move": move, "journal": journalPolicy}}, pam.ApplyOptions{}); err != nil {
			t.Fatal(err)
		}
		fn.endedWithin(t, time.Now(), bound, pam.GrantCut, alice.ID)
		journal.stillRunning(t)
	})
	t.Run("policy deleted", func(t *testing.T) {
		e, alice, _, _ := setup(t)
		fn := startGuarded(t, e.m, "alice", "New-MoveRequest")
		journal := startGuarded(t, e.m, "alice", "Set-JournalRule")
		if err := e.m.DeletePolicy(e.admin(), "move"); err != nil {
			t.Fatal(err)
		}
		fn.endedWithin(t, time.Now(), bound, pam.GrantCut, alice.ID)
		journal.stillRunning(t)
	})
	t.Run("expired", func(t *testing.T) {
		e, alice, _, other := setup(t)
		fn := startGuarded(t, e.m, "alice", "New-MoveRequest")
		journal := startGuarded(t, e.m, "alice", "Set-JournalRule")
		e.clk.Add(2 * time.Hour)
		fn.endedWithin(t, time.Now(), bound, pam.GrantExpired, alice.ID)
		if !errors.Is(fn.cause, context.DeadlineExceeded) {
			t.Errorf("cause %v does not match context.DeadlineExceeded", fn.cause)
		}
		journal.stillRunning(t)
		// Sweep records the other's expiry; its fn ends with it.
		e.clk.Add(time.Hour - time.Nanosecond)
		journal.stillRunning(t)
		e.clk.Add(time.Nanosecond)
		journal.endedWithin(t, time.Now(), bound, pam.GrantExpired, other.ID)
	})
}

// TestGrantWatcherStopsWithClose: the goroutine that watches running
// grants ends with Close even while fns still run.
func TestGrantWatcherStopsWithClose(t *testing.T) {
	e := newEnv(t, func(o *pam.Options) { o.AuditPollInterval = 5 * time.Millisecond })
	e.policy(movePolicy())
	e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	startGuarded(t, e.m, "alice", "New-MoveRequest")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.m.Close(ctx); err != nil {
		t.Fatal(err)
	}
}
