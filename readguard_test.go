package pam_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/store/memory"
)

// readingStore is a memory store that is a GuardReader, and counts the
// reads Guard makes.
type readingStore struct {
	pam.OutboxStore
	readGuards, revisions, grants atomic.Int64
	fail                          atomic.Pointer[error] // ReadGuard's error, when set
}

func (s *readingStore) PolicyRevision(ctx context.Context) (int64, error) {
	s.revisions.Add(1)
	return s.OutboxStore.PolicyRevision(ctx)
}

func (s *readingStore) Grants(ctx context.Context, requester string, policyIDs []string) ([]pam.Grant, error) {
	s.grants.Add(1)
	return s.OutboxStore.Grants(ctx, requester, policyIDs)
}

func (s *readingStore) ReadGuard(ctx context.Context, requester string, policyIDs []string) (pam.GuardRead, error) {
	s.readGuards.Add(1)
	if err := s.fail.Load(); err != nil {
		return pam.GuardRead{}, *err
	}
	var r pam.GuardRead
	var err error
	if r.PolicyRevision, err = s.OutboxStore.PolicyRevision(ctx); err != nil || len(policyIDs) == 0 {
		return r, err
	}
	r.Grants, err = s.OutboxStore.Grants(ctx, requester, policyIDs)
	return r, err
}

// reads returns the counts since the last call.
func (s *readingStore) reads() (readGuards, revisions, grants int64) {
	return s.readGuards.Swap(0), s.revisions.Swap(0), s.grants.Swap(0)
}

// TestGuardOverAGuardReader: over a store that is a GuardReader, Guard
// reads once per decision (no Grants, and no PolicyRevision of its own), sees a policy
// written by another Manager through the revision it read, and does not
// run fn when the read fails.
func TestGuardOverAGuardReader(t *testing.T) {
	store := &readingStore{OutboxStore: memory.New()}
	e := newEnv(t)
	dir, clk := e.dir, e.clk
	open := func() *pam.Manager {
		m, err := pam.New(store, dir, &pam.Options{Clock: clk, Catalog: testCatalog, AdminGroup: "pam-admins", SystemAccounts: []string{"svc-backup"}, SyncRunEnds: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close(context.Background()) })
		return m
	}
	m1, m2 := open(), open()
	guard := func(who string) (ran bool, err error) {
		err = m1.Guard(e.as(who), pam.Op{Task: "New-MoveRequest"}, func(context.Context) error { ran = true; return nil })
		return ran, err
	}

	if ran, err := guard("alice"); !ran || err != nil {
		t.Fatalf("uncovered Guard: ran %v, %v", ran, err)
	}
	store.reads()
	if ran, err := guard("alice"); !ran || err != nil {
		t.Fatalf("uncovered Guard: ran %v, %v", ran, err)
	}
	if rg, rev, gr := store.reads(); rg != 1 || rev != 0 || gr != 0 {
		t.Errorf("an uncovered Guard made %d ReadGuard, %d PolicyRevision and %d Grants calls; want 1, 0, 0", rg, rev, gr)
	}

	// Another Manager covers the task: m1's next Guard reads the new
	// revision, reloads and decides on the policy.
	if _, err := m2.CreatePolicy(e.admin(), movePolicy()); err != nil {
		t.Fatal(err)
	}
	ran, err := guard("alice")
	if ran || !errors.Is(err, pam.ErrNotApproved) {
		t.Fatalf("Guard after another Manager's policy: ran %v, %v; want ErrNotApproved", ran, err)
	}

	r, err := m2.Submit(e.as("alice"), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "a leaver's mailbox"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m2.Approve(e.as("bob"), r.ID, "ok"); err != nil {
		t.Fatal(err)
	}
	store.reads()
	if ran, err := guard("alice"); !ran || err != nil {
		t.Fatalf("granted Guard: ran %v, %v", ran, err)
	}
	// (The watcher of running grants reads the revision on its own.)
	if rg, _, gr := store.reads(); rg != 1 || gr != 0 {
		t.Errorf("a granted Guard made %d ReadGuard and %d Grants calls; want 1 and 0", rg, gr)
	}
	// Grants read with the revision are the requester's own.
	if ran, err := guard("carol"); ran || !errors.Is(err, pam.ErrNotApproved) {
		t.Errorf("Guard of someone else: ran %v, %v; want ErrNotApproved", ran, err)
	}
	// A system account's Guard reads no grants, and runs.
	if ran, err := guard("svc-backup"); !ran || err != nil {
		t.Errorf("system account's Guard: ran %v, %v", ran, err)
	}

	// Revoked through the other Manager: denied at once.
	if _, err := m2.Revoke(e.as("bob"), r.ID, "done"); err != nil {
		t.Fatal(err)
	}
	if ran, err := guard("alice"); ran || !errors.Is(err, pam.ErrNotApproved) {
		t.Errorf("Guard after a revocation elsewhere: ran %v, %v; want ErrNotApproved", ran, err)
	}

	boom := errors.New("store down")
	store.fail.Store(&boom)
	if ran, err := guard("alice"); ran || !errors.Is(err, boom) {
		t.Errorf("Guard when the read fails: ran %v, %v; want the store's error", ran, err)
	}
	if _, err := m1.Check(e.as("alice"), pam.Op{Task: "New-MoveRequest"}); !errors.Is(err, boom) {
		t.Errorf("Check when the read fails: %v; want the store's error", err)
	}
}
