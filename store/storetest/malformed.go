package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/zerostanding/pam"
)

// Exec runs a statement on a store's database around the store, as
// anyone with write access to the database could.
type Exec func(t testing.TB, query string, args ...any)

// MalformedOpener returns a new, empty store and an Exec on its
// database.
type MalformedOpener func(t testing.TB, clk *clock.Mock) (pam.Store, Exec)

// MalformedRow is one way to store an event that does not decode
// strictly.
type MalformedRow struct {
	Name string
	// Do changes the stored event numbered seq through exec.
	Do func(t testing.TB, exec Exec, seq int64)
	// Seq is the number the event has afterwards; nil: seq.
	Seq func(seq int64) int64
}

// set returns a MalformedRow that runs one UPDATE of event $1 setting
// assignment.
func set(name, assignment string) MalformedRow {
	return MalformedRow{Name: name, Do: func(t testing.TB, exec Exec, seq int64) {
		exec(t, `UPDATE pam_events SET `+assignment+` WHERE seq = $1`, seq)
	}}
}

// renumber returns a MalformedRow that gives the event the number to.
func renumber(to int64) MalformedRow {
	r := set(fmt.Sprintf("seq %d", to), fmt.Sprintf("seq = %d", to))
	r.Seq = func(int64) int64 { return to }
	return r
}

// SQLMalformedRows are the malformed rows any SQL store must survive,
// in SQL that SQLite and PostgreSQL both run. A store whose database
// types its columns loosely (SQLite) adds its own.
var SQLMalformedRows = []MalformedRow{
	set("invalid JSON in detail", `detail = '{"n":'`),
	set("a number as a detail value", `detail = '{"n":7}'`),
	set("a key twice in detail", `detail = '{"a":"x","a":"y"}'`),
	set("detail not an object", `detail = '["n","1"]'`),
	set("data after detail", `detail = '{"n":"1"} {}'`),
	renumber(0),
	renumber(-5),
	set("a truncated hash", `hash = substr(hash, 1, 16)`),
	set("no prev_hash", `prev_hash = NULL`),
}

// Malformed checks, for each row on a store of its own, that an event
// stored malformed is tampering and not an outage: the store returns
// it with Malformed set instead of failing the read; Verify reports it
// as ReasonMalformed at its number; Manager.Audit returns it flagged,
// ascending and descending; and a required audit sink takes the trail
// past it, so Guard still runs.
func Malformed(t *testing.T, open MalformedOpener, rows []MalformedRow) {
	for _, row := range rows {
		t.Run(row.Name, func(t *testing.T) {
			clk := clock.NewMock()
			clk.Set(Epoch)
			s, exec := open(t, clk)
			for i := range 3 {
				tx := &pam.Tx{}
				for j := range 2 {
					n := 2*i + j
					tx.Events = append(tx.Events, pam.Event{Time: Epoch.Add(time.Duration(n) * time.Minute), Type: pam.EventGuardAllowed,
						Actor: "alice", PolicyID: "p1", Task: "New-MoveRequest", Outcome: pam.OutcomeGranted, Detail: map[string]string{"n": fmt.Sprint(n)}})
				}
				commit(t, s, tx)
			}
			const at = 3
			row.Do(t, exec, at)
			seq := int64(at)
			if row.Seq != nil {
				seq = row.Seq(at)
			}
			flagged := func(what string, events []pam.Event) {
				t.Helper()
				found := false
				for _, e := range events {
					switch {
					case e.Seq == seq && e.Malformed == "":
						t.Errorf("%s: event %d is not flagged: %+v", what, seq, e)
					case e.Seq == seq:
						found = true
					case e.Malformed != "":
						t.Errorf("%s: event %d is flagged: %s", what, e.Seq, e.Malformed)
					}
				}
				if !found {
					t.Errorf("%s: event %d is missing", what, seq)
				}
			}

			all, err := s.Events(ctx, pam.EventFilter{After: math.MinInt64})
			if err != nil {
				t.Fatalf("Events: %v", err)
			}
			flagged("Events", all)
			t.Logf("event %d: %s", seq, malformedOf(all, seq))

			_, err = pam.Verify(ctx, s, pam.VerifyOptions{PageSize: 2})
			var te *pam.TamperError
			if !errors.As(err, &te) || !errors.Is(err, pam.ErrTampered) || te.Seq != seq || te.Reason != pam.ReasonMalformed {
				t.Fatalf("Verify = %v; want %s at %d", err, pam.ReasonMalformed, seq)
			}

			sink := &trailSink{}
			dir, err := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin"}, "approvers": {"bob", "carol"}})
			if err != nil {
				t.Fatal(err)
			}
			m, err := pam.New(s, dir, &pam.Options{Clock: clk, AdminGroup: "pam-admins", SystemAccounts: []string{"svc"},
				AuditSinks:   []pam.SinkConfig{{Name: "required", Sink: sink, Required: true, MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond}},
				AuditTimeout: 10 * time.Second, OnError: func(error) {}})
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				if err := m.Close(cctx); err != nil {
					t.Errorf("Close: %v", err)
				}
			}()
			for _, desc := range []bool{false, true} {
				page, _, err := m.Audit(As("admin"), pam.EventFilter{Descending: desc})
				if err != nil {
					t.Fatalf("Audit (descending %t): %v", desc, err)
				}
				flagged(fmt.Sprintf("Audit (descending %t)", desc), page)
			}

			// The required sink takes the trail past the malformed event:
			// Guard's start event reaches it and fn runs.
			if _, err := m.CreatePolicy(As("admin"), TwoApprovals); err != nil {
				t.Fatal(err)
			}
			ran := false
			started := time.Now()
			if err := m.Guard(As("svc"), pam.Op{Task: "New-MoveRequest"}, func(context.Context) error { ran = true; return nil }); err != nil || !ran {
				t.Fatalf("Guard after %v: ran %t, %v; sinks %+v", time.Since(started), ran, err, m.SinkStatus())
			}
			if st := m.SinkStatus()[0]; !st.Healthy {
				t.Errorf("sink status %+v", st)
			}
			got := sink.all()
			if seq >= 1 {
				flagged("the sink", got)
			}
			for i := 1; i < len(got); i++ {
				if got[i].Seq <= got[i-1].Seq {
					t.Fatalf("the sink got event %d after %d", got[i].Seq, got[i-1].Seq)
				}
			}
		})
	}
}

func malformedOf(events []pam.Event, seq int64) string {
	for _, e := range events {
		if e.Seq == seq {
			return e.Malformed
		}
	}
	return ""
}

// trailSink keeps the events it is given, once each, and asks for the
// trail from its start.
type trailSink struct {
	mu     sync.Mutex
	events []pam.Event
}

func (s *trailSink) Write(_ context.Context, events []pam.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range events {
		if n := len(s.events); n == 0 || e.Seq > s.events[n-1].Seq {
			s.events = append(s.events, e)
		}
	}
	return nil
}

func (s *trailSink) LastSeq(context.Context) (int64, error) { return 0, nil }

func (s *trailSink) all() []pam.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]pam.Event(nil), s.events...)
}
