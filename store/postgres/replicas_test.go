package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/store/postgres"
	"github.com/zerostanding/pam/store/storetest"
)

var epoch = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)

func as(who string) context.Context { return pam.WithActor(context.Background(), who) }

var (
	raceAs = []string{"a1", "a2", "a3", "a4"} // group g1, two approvals needed
	raceBs = []string{"b1", "b2", "b3"}       // group g2, one approval needed
)

func raceManager(t *testing.T, s *postgres.Store, clk clock.Clock) *pam.Manager {
	t.Helper()
	dir, err := pam.NewStaticDirectory(map[string][]string{"admins": {"admin"}, "g1": raceAs, "g2": raceBs})
	if err != nil {
		t.Fatal(err)
	}
	m, err := pam.New(s, dir, &pam.Options{Clock: clk, AdminGroup: "admins"})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestReplicasRace runs two engines on two pools against one database, 32
// goroutines each, racing approvals, denials, cancellations, revocations
// and Guards on the same requests, and then checks the trail.
func TestReplicasRace(t *testing.T) {
	schema := freshSchema(t)
	clk := clock.NewMock()
	clk.Set(epoch)
	ms := []*pam.Manager{raceManager(t, open(t, schema, clk), clk), raceManager(t, open(t, schema, clk), clk)}
	if _, err := ms[0].CreatePolicy(as("admin"), pam.Policy{ID: "p", Scope: pam.TaskScope("Drop-Table"), Approval: pam.Manual,
		ApproverGroups: []pam.ApproverGroup{{Group: "g1", MinApprovals: 2}, {Group: "g2"}}}); err != nil {
		t.Fatal(err)
	}
	rounds := 10
	if testing.Short() {
		rounds = 3
	}
	var ran atomic.Int64
	for round := range rounds {
		var ids []string
		for i := range 8 {
			r, err := ms[i%2].Submit(as(fmt.Sprint("u", i)), pam.RequestInput{Scope: pam.TaskScope("Drop-Table"), Reason: "round " + fmt.Sprint(round)})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, r.ID)
		}
		var wg sync.WaitGroup
		for g := range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m := ms[g%2]
				rng := rand.New(rand.NewPCG(uint64(round), uint64(g)))
				for range 10 {
					i := rng.IntN(len(ids))
					id, requester := ids[i], fmt.Sprint("u", i)
					var err error
					switch x := rng.IntN(100); {
					case x < 45:
						_, err = m.Approve(as(append(raceAs, raceBs...)[rng.IntN(7)]), id, "")
					case x < 52:
						_, err = m.Deny(as(append(raceAs, raceBs...)[rng.IntN(7)]), id, "")
					case x < 60:
						_, err = m.Cancel(as(requester), id, "")
					case x < 70:
						_, err = m.Revoke(as("admin"), id, "")
					default:
						err = m.Guard(as(requester), pam.Op{Task: "Drop-Table"}, func(context.Context) error {
							ran.Add(1)
							return nil
						})
					}
					switch {
					case err == nil, errors.Is(err, pam.ErrWrongState), errors.Is(err, pam.ErrAlreadyDecided),
						errors.Is(err, pam.ErrNotApproved), errors.Is(err, pam.ErrConflict):
					default:
						t.Errorf("unexpected error: %v", err)
					}
				}
			}()
		}
		wg.Wait()
	}
	checkRaceTrail(t, ms[0], ran.Load())
}

func checkRaceTrail(t *testing.T, m *pam.Manager, ran int64) {
	var events []pam.Event
	f := pam.EventFilter{Limit: pam.MaxPageSize}
	for {
		page, next, err := m.Audit(storetest.As("admin"), f)
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, page...)
		if next == 0 {
			break
		}
		f.After = next
	}
	byRequest := map[string][]pam.Event{}
	allowed := int64(0)
	for i, e := range events {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has Seq %d: the sequence has a gap", i, e.Seq)
		}
		if e.RequestID != "" {
			byRequest[e.RequestID] = append(byRequest[e.RequestID], e)
		}
		if e.Type == pam.EventGuardAllowed {
			allowed++
		}
	}
	if allowed != ran {
		t.Errorf("%d guard.allowed events, %d runs", allowed, ran)
	}
	counts := map[pam.State]int{}
	for id, evs := range byRequest {
		r, err := m.Request(storetest.As("admin"), id)
		if err != nil {
			t.Fatal(err)
		}
		counts[r.State]++
		var states []pam.EventType
		approvers := map[string]bool{}
		as, bs := 0, 0
		quorumAt := int64(0)
		approvedAt, revokedAt := int64(0), int64(0)
		for _, e := range evs {
			switch e.Type {
			case pam.EventRequestDecision:
				if len(states) > 0 {
					t.Errorf("%s: decision by %s after %v", id, e.Actor, states)
				}
				if approvers[e.Actor] {
					t.Errorf("%s: %s decided twice", id, e.Actor)
				}
				approvers[e.Actor] = true
				if e.Outcome == pam.OutcomeApprove {
					if e.Actor[0] == 'a' {
						as++
					} else {
						bs++
					}
					if as >= 2 && bs >= 1 && quorumAt == 0 {
						quorumAt = e.Seq
					}
				}
			case pam.EventRequestApproved:
				approvedAt = e.Seq
				states = append(states, e.Type)
			case pam.EventRequestRevoked:
				revokedAt = e.Seq
				states = append(states, e.Type)
			case pam.EventRequestDenied, pam.EventRequestCanceled, pam.EventRequestExpired:
				states = append(states, e.Type)
			case pam.EventGuardAllowed:
				if approvedAt == 0 || e.Seq < approvedAt {
					t.Errorf("%s: guard.allowed %d before the approval", id, e.Seq)
				}
				if revokedAt != 0 && e.Seq > revokedAt {
					t.Errorf("%s: guard.allowed %d after the revocation %d", id, e.Seq, revokedAt)
				}
			}
		}
		switch fmt.Sprint(states) {
		case "[]", "[request.approved]", "[request.approved request.revoked]", "[request.denied]", "[request.canceled]":
		default:
			t.Errorf("%s: state events %v", id, states)
		}
		// Approved exactly when the quorum was reached, by the approval
		// that reached it.
		if (approvedAt != 0) != (quorumAt != 0) || (approvedAt != 0 && approvedAt != quorumAt+1) {
			t.Errorf("%s: quorum reached at %d, approved at %d", id, quorumAt, approvedAt)
		}
		if len(r.Decisions) != len(approvers) {
			t.Errorf("%s: %d decisions stored, %d audited", id, len(r.Decisions), len(approvers))
		}
	}
	t.Logf("%d events, %d runs; requests by final state: %v", len(events), ran, counts)
}

// TestClockSkew runs two engines whose own clocks are 10 minutes ahead and
// 10 minutes behind; with the database clock as the time source they
// decide the same expiries.
func TestClockSkew(t *testing.T) {
	schema := freshSchema(t)
	ahead, behind := clock.NewMock(), clock.NewMock()
	ahead.Set(time.Now().Add(10 * time.Minute))
	behind.Set(time.Now().Add(-10 * time.Minute))
	a := raceManager(t, open(t, schema, nil), ahead)
	b := raceManager(t, open(t, schema, nil), behind)
	if _, err := a.CreatePolicy(as("admin"), pam.Policy{ID: "p", Scope: pam.TaskScope("Drop-Table"), Approval: pam.Manual,
		ApproverGroups: []pam.ApproverGroup{{Group: "g2"}}, PendingTTL: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	granted, err := a.Submit(as("u1"), pam.RequestInput{Scope: pam.TaskScope("Drop-Table"), Reason: "r", Duration: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if granted, err = b.Approve(as("b1"), granted.ID, ""); err != nil {
		t.Fatal(err)
	}
	pending, err := b.Submit(as("u2"), pam.RequestInput{Scope: pam.TaskScope("Drop-Table"), Reason: "r"})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(granted.ExpiresAt); d < 0 || d > 3*time.Second {
		t.Fatalf("window ends %v from now: not on the database clock", d)
	}
	decide := func() (string, string) {
		var out [2]string
		for i, m := range []*pam.Manager{a, b} {
			res, err := m.Check(as("u1"), pam.Op{Task: "Drop-Table"})
			if err != nil {
				t.Fatal(err)
			}
			r, err := m.Request(as("u2"), pending.ID)
			if err != nil {
				t.Fatal(err)
			}
			out[i] = fmt.Sprint(res.Outcome, "/", r.State)
		}
		return out[0], out[1]
	}
	if x, y := decide(); x != y || x != "granted/pending" {
		t.Errorf("at the start: %s vs %s, want granted/pending on both", x, y)
	}
	// Both windows end on the database clock: 2 seconds, whatever the
	// engines' own clocks say.
	time.Sleep(time.Until(granted.ExpiresAt.Add(500 * time.Millisecond)))
	if x, y := decide(); x != y || x != "not_approved/expired" {
		t.Errorf("after the end: %s vs %s, want not_approved/expired on both", x, y)
	}
	if n, err := b.Sweep(context.Background()); n != 2 || err != nil {
		t.Errorf("Sweep = %d, %v; want both expiries recorded", n, err)
	}
}

// TestReplicasSeeChanges: a policy change or revocation through one
// replica is seen by the other's next Guard.
func TestReplicasSeeChanges(t *testing.T) {
	schema := freshSchema(t)
	clk := clock.NewMock()
	clk.Set(epoch)
	a := storetest.Manager(t, open(t, schema, clk), clk)
	b := storetest.Manager(t, open(t, schema, clk), clk)
	run := func(m *pam.Manager) error {
		return m.Guard(as("alice"), pam.Op{Task: "New-MoveRequest"}, func(context.Context) error { return nil })
	}
	if err := run(b); err != nil {
		t.Fatalf("uncovered: %v", err)
	}
	p, err := a.CreatePolicy(as("admin"), storetest.TwoApprovals)
	if err != nil {
		t.Fatal(err)
	}
	if err := run(b); !errors.Is(err, pam.ErrNotApproved) {
		t.Fatalf("b after a created the policy: %v", err)
	}
	r, _ := b.Submit(as("alice"), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "r"})
	a.Approve(as("bob"), r.ID, "")
	b.Approve(as("carol"), r.ID, "")
	if err := run(a); err != nil {
		t.Fatalf("a with the grant: %v", err)
	}
	p.ApproverGroups[0].MinApprovals = 3
	if _, err := b.UpdatePolicy(as("admin"), p); err != nil {
		t.Fatal(err)
	}
	if err := run(a); !errors.Is(err, pam.ErrNotApproved) {
		t.Fatalf("a after b raised the quorum: %v", err)
	}
	r, _ = a.Submit(as("alice"), pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "r"})
	for _, who := range []string{"bob", "carol", "dave"} {
		b.Approve(as(who), r.ID, "")
	}
	if err := run(a); err != nil {
		t.Fatalf("a with the new grant: %v", err)
	}
	if _, err := b.Revoke(as("admin"), r.ID, ""); err != nil {
		t.Fatal(err)
	}
	if err := run(a); !errors.Is(err, pam.ErrNotApproved) {
		t.Fatalf("a after b revoked: %v", err)
	}
}

// TestReplicasDeliverEachMessageOnce: two replicas deliver one outbox
// concurrently, and a third that claimed messages and died leaves them to
// the others once its lease ends. Every message is delivered once.
func TestReplicasDeliverEachMessageOnce(t *testing.T) {
	schema := freshSchema(t)
	a, b := open(t, schema, nil), open(t, schema, nil)
	var mu sync.Mutex
	got := map[string][]string{} // message ID → replicas that delivered it
	replica := func(name string, s *postgres.Store) *pam.Manager {
		dir, _ := pam.NewStaticDirectory(map[string][]string{"admins": {"admin"}, "g1": raceAs})
		m, err := pam.New(s, dir, &pam.Options{AdminGroup: "admins", NotifyTimeout: time.Second, OutboxLease: 2 * time.Second,
			Notifiers: []pam.NotifierConfig{{Name: "mail", Notifier: pam.NotifierFunc(func(_ context.Context, n pam.Notification) error {
				time.Sleep(time.Millisecond)
				mu.Lock()
				got[n.ID] = append(got[n.ID], name)
				mu.Unlock()
				return nil
			})}}})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	ma, mb := replica("a", a), replica("b", b)
	if _, err := ma.CreatePolicy(as("admin"), pam.Policy{ID: "p", Scope: pam.TaskScope("t"), Approval: pam.Manual,
		ApproverGroups: []pam.ApproverGroup{{Group: "g1"}}}); err != nil {
		t.Fatal(err)
	}
	for i := range 60 {
		if _, err := mb.Submit(as(fmt.Sprint("user", i)), pam.RequestInput{Scope: pam.TaskScope("t"), Reason: "r"}); err != nil {
			t.Fatal(err)
		}
	}
	// A replica claims ten messages and dies before delivering them.
	now, _ := a.Now(context.Background())
	dead, err := a.ClaimMessages(context.Background(), "dead", now, now.Add(2*time.Second), 10)
	if err != nil || len(dead) != 10 {
		t.Fatalf("dead replica's claim: %d, %v", len(dead), err)
	}
	var wg sync.WaitGroup
	for _, m := range []*pam.Manager{ma, mb} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
				n, err := m.Deliver(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				if n == 0 {
					pending, _, err := m.Messages(as("admin"), pam.MessageFilter{States: []pam.MessageState{pam.MessagePending}, Limit: 1})
					if err != nil {
						t.Error(err)
						return
					}
					if len(pending) == 0 {
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	all, _, err := ma.Messages(as("admin"), pam.MessageFilter{Limit: pam.MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	by := map[string]int{}
	for _, m := range all {
		if m.State != pam.MessageDelivered || len(got[m.ID]) != 1 {
			t.Errorf("message %s: %s, delivered by %v", m.ID, m.State, got[m.ID])
			continue
		}
		by[got[m.ID][0]]++
	}
	if len(all) != 60*len(raceAs) {
		t.Errorf("%d messages, want %d", len(all), 60*len(raceAs))
	}
	t.Logf("%d messages, each delivered once: %d by replica a, %d by b (10 of them taken over from a dead replica's expired lease)", len(all), by["a"], by["b"])
}

// TestGrantEndsAcrossReplicas: two Managers, each on its own pool; a
// revocation through one ends the fn running on the other well within
// the 10 seconds they poll at (a second, on a loaded machine; tens of
// milliseconds usually, as the test logs): through NOTIFY.
func TestGrantEndsAcrossReplicas(t *testing.T) {
	schema := freshSchema(t)
	clk := clock.NewMock()
	clk.Set(epoch)
	storetest.GrantEndsAcross(t, open(t, schema, clk), open(t, schema, clk), clk, 10*time.Second, time.Second, 20)
}

// TestGrantWatchersRestart: with a short poll, each Manager's watcher
// stops whenever no fn runs and starts listening again with the next one;
// no listening connection is left behind (closing the stores would hang).
func TestGrantWatchersRestart(t *testing.T) {
	schema := freshSchema(t)
	clk := clock.NewMock()
	clk.Set(epoch)
	storetest.GrantEndsAcross(t, open(t, schema, clk), open(t, schema, clk), clk, 5*time.Millisecond, time.Second, 20)
}

// TestLastUseAcrossReplicas: 64 Guards over two replicas, each on its
// own pool, race for the runs of use-limited grants; exactly the runs
// allowed start.
func TestLastUseAcrossReplicas(t *testing.T) {
	dsn(t)
	schema := freshSchema(t)
	clk := clock.NewMock()
	clk.Set(storetest.Epoch)
	storetest.LastUseRace(t, []pam.Store{open(t, schema, clk), open(t, schema, clk)}, clk)
}

// TestNudgeOnceAcrossReplicas: two replicas sweeping at once record each
// reminder and escalation once.
func TestNudgeOnceAcrossReplicas(t *testing.T) {
	dsn(t)
	schema := freshSchema(t)
	clk := clock.NewMock()
	clk.Set(storetest.Epoch)
	storetest.NudgeOnce(t, []pam.Store{open(t, schema, clk), open(t, schema, clk)}, clk)
}

// TestBreakGlassOnceAcrossReplicas: two replicas breaking glass at once
// stay within the limit, and record each overdue review notice once.
func TestBreakGlassOnceAcrossReplicas(t *testing.T) {
	dsn(t)
	schema := freshSchema(t)
	clk := clock.NewMock()
	clk.Set(storetest.Epoch)
	storetest.BreakGlassOnce(t, []pam.Store{open(t, schema, clk), open(t, schema, clk)}, clk)
}
