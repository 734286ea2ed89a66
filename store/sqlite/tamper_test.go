package sqlite_test

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/store/sqlite"
	"github.com/zerostanding/pam/store/storetest"
)

// TestTamperingIsDetected writes a real trail to a SQLite file, signs a
// checkpoint of its head, and then, in each trial, changes one copy of the
// file the way someone with write access to the database could — alter
// an event, re-hash it, rewrite history, delete, renumber, reorder,
// insert, truncate, store it malformed — and checks that Verify reports
// the first bad sequence number with the right reason. The untouched
// file verifies.
func TestTamperingIsDetected(t *testing.T) {
	trials := 1000
	if testing.Short() {
		trials = 100
	}
	dir := t.TempDir()
	pristine := filepath.Join(dir, "pristine.db")
	s, err := sqlite.Open(context.Background(), pristine)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 11))
	types := []pam.EventType{pam.EventRequestSubmitted, pam.EventRequestDecision, pam.EventRequestApproved, pam.EventGuardAllowed, pam.EventGuardFinished, pam.EventPolicyUpdated}
	for range 40 {
		tx := &pam.Tx{}
		for range rng.IntN(3) + 1 {
			e := pam.Event{
				Time: storetest.Epoch.Add(time.Duration(rng.Int64N(1e12))), Type: types[rng.IntN(len(types))],
				Actor: fmt.Sprint("user", rng.IntN(5)), RequestID: fmt.Sprint("req_", rng.IntN(50)), PolicyID: "p1",
				Task: "New-MoveRequest", Outcome: "ok", Detail: map[string]string{"n": fmt.Sprint(rng.IntN(100))},
			}
			if e.Type == pam.EventGuardAllowed || e.Type == pam.EventGuardFinished {
				e.Run = fmt.Sprint("run_", rng.IntN(20)) // the chain covers it
			}
			tx.Events = append(tx.Events, e)
		}
		if err := s.Commit(context.Background(), tx); err != nil {
			t.Fatal(err)
		}
	}
	last, err := s.Events(context.Background(), pam.EventFilter{Descending: true, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	head := last[0].Seq
	pub, key, _ := ed25519.GenerateKey(nil)
	cp := pam.Checkpoint{Seq: head, Hash: last[0].Hash, Time: storetest.Epoch}
	if err := cp.Sign(key); err != nil {
		t.Fatal(err)
	}
	s.Close()
	opts := pam.VerifyOptions{Checkpoints: []pam.Checkpoint{cp}, PublicKeys: []ed25519.PublicKey{pub}}

	type tamper struct {
		name   string
		do     func(db *sql.DB, k int64) // changes event k (or from k on)
		seq    func(k int64) int64       // the first bad Seq Verify must report
		reason func(k int64) pam.TamperReason
	}
	at := func(d int64) func(int64) int64 { return func(k int64) int64 { return k + d } }
	atHead := func(int64) int64 { return head }
	always := func(r pam.TamperReason) func(int64) pam.TamperReason {
		return func(int64) pam.TamperReason { return r }
	}
	tampers := []tamper{
		{"alter a field", func(db *sql.DB, k int64) {
			col := []string{"actor = 'mallory'", "type = 'guard.denied'", "outcome = 'error'", "task = 'Other'", `detail = '{"n":"x"}'`, "detail = NULL", "time = time + 1", "request_id = ''", "run = run || 'x'"}[rng.IntN(9)]
			sqlExec(t, db, `UPDATE pam_events SET `+col+` WHERE seq = $1`, k)
		}, at(0), always(pam.ReasonAltered)},
		{"alter and re-hash one event", func(db *sql.DB, k int64) {
			sqlExec(t, db, `UPDATE pam_events SET actor = 'mallory' WHERE seq = $1`, k)
			rechain(t, db, k, k)
		}, func(k int64) int64 { return min(k+1, head) }, func(k int64) pam.TamperReason {
			if k == head {
				return pam.ReasonCheckpointMismatch
			}
			return pam.ReasonBrokenLink
		}},
		{"rewrite history to the head", func(db *sql.DB, k int64) {
			sqlExec(t, db, `UPDATE pam_events SET actor = 'mallory' WHERE seq = $1`, k)
			rechain(t, db, k, head)
		}, atHead, always(pam.ReasonCheckpointMismatch)},
		{"delete an event", func(db *sql.DB, k int64) {
			sqlExec(t, db, `DELETE FROM pam_events WHERE seq = $1`, k)
		}, at(0), func(k int64) pam.TamperReason {
			if k == head {
				return pam.ReasonTruncated
			}
			return pam.ReasonGap
		}},
		{"delete an event and renumber the rest", func(db *sql.DB, k int64) {
			sqlExec(t, db, `DELETE FROM pam_events WHERE seq = $1`, k)
			renumber(t, db, k+1, -1)
		}, at(0), func(k int64) pam.TamperReason {
			if k == head {
				return pam.ReasonTruncated
			}
			return pam.ReasonBrokenLink
		}},
		{"swap two events", func(db *sql.DB, k int64) {
			k = min(k, head-1)
			sqlExec(t, db, `UPDATE pam_events SET seq = -1 WHERE seq = $1`, k)
			sqlExec(t, db, `UPDATE pam_events SET seq = $1 WHERE seq = $2`, k, k+1)
			sqlExec(t, db, `UPDATE pam_events SET seq = $1 WHERE seq = -1`, k+1)
		}, func(k int64) int64 { return min(k, head-1) }, always(pam.ReasonReordered)},
		{"insert a forged event", func(db *sql.DB, k int64) {
			renumber(t, db, k, +1)
			var prev []byte
			if k > 1 {
				if err := db.QueryRow(`SELECT hash FROM pam_events WHERE seq = $1`, k-1).Scan(&prev); err != nil {
					t.Fatal(err)
				}
			} else {
				prev = make([]byte, 32)
			}
			e := pam.Event{Time: storetest.Epoch, Type: pam.EventRequestApproved, Actor: "mallory", RequestID: "req_1"}
			if err := e.Chain(k, hex.EncodeToString(prev)); err != nil {
				t.Fatal(err)
			}
			p, _ := hex.DecodeString(e.PrevHash)
			h, _ := hex.DecodeString(e.Hash)
			sqlExec(t, db, `INSERT INTO pam_events (seq, time, type, actor, request_id, policy_id, task, outcome, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, '', '', '', $6, $7)`,
				k, e.Time.UnixNano(), string(e.Type), e.Actor, e.RequestID, p, h)
		}, func(k int64) int64 { return min(k+1, head) }, func(k int64) pam.TamperReason {
			if k == head { // the forged event now sits where the checkpoint vouches for another
				return pam.ReasonCheckpointMismatch
			}
			return pam.ReasonBrokenLink
		}},
		{"truncate the tail", func(db *sql.DB, k int64) {
			sqlExec(t, db, `DELETE FROM pam_events WHERE seq >= $1`, k)
		}, at(0), always(pam.ReasonTruncated)},
		{"malform an event", func(db *sql.DB, k int64) {
			col := []string{`detail = '{"n":'`, `detail = '{"n":1}'`, `detail = '{"n":"1","n":"2"}'`, "hash = substr(hash, 1, 16)", "prev_hash = NULL"}[rng.IntN(5)]
			sqlExec(t, db, `UPDATE pam_events SET `+col+` WHERE seq = $1`, k)
		}, at(0), always(pam.ReasonMalformed)},
	}

	// Each trial tampers with the file through a connection of its own,
	// verifies through the store, and then puts the trail back.
	s = open(t, pristine)
	db, err := sql.Open("sqlite", "file:"+pristine+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	sqlExec(t, db, `CREATE TABLE backup AS SELECT * FROM pam_events`)
	counts := map[string]int{}
	for i := range trials {
		tp := tampers[rng.IntN(len(tampers))]
		k := rng.Int64N(head) + 1
		tp.do(db, k)
		_, err = pam.Verify(context.Background(), s, opts)
		var te *pam.TamperError
		if !errors.As(err, &te) || !errors.Is(err, pam.ErrTampered) {
			t.Fatalf("trial %d, %s at %d: Verify = %v, want tampering detected", i, tp.name, k, err)
		}
		if want, reason := tp.seq(k), tp.reason(k); te.Seq != want || te.Reason != reason {
			t.Fatalf("trial %d, %s at %d of %d: Verify = %v; want %s at %d", i, tp.name, k, head, err, reason, want)
		}
		counts[tp.name]++
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{`DELETE FROM pam_events`, `INSERT INTO pam_events SELECT * FROM backup`} {
			if _, err := tx.Exec(q); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 {
			if _, err := pam.Verify(context.Background(), s, opts); err != nil {
				t.Fatalf("the restored trail: %v", err)
			}
		}
	}
	t.Logf("%d trials on a %d-event trail, all detected: %v", trials, head, counts)
}

func sqlExec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// renumber moves events from seq on by delta, from the far end so the
// primary key never collides.
func renumber(t *testing.T, db *sql.DB, from, delta int64) {
	t.Helper()
	sqlExec(t, db, `UPDATE pam_events SET seq = -seq WHERE seq >= $1`, from)
	sqlExec(t, db, `UPDATE pam_events SET seq = -seq + $1 WHERE seq < 0`, delta)
}

// rechain recomputes the hashes of events from..to as the library would,
// from the stored hash before from: what an attacker who knows the
// encoding does.
func rechain(t *testing.T, db *sql.DB, from, to int64) {
	t.Helper()
	s := &rawEvents{db: db}
	prev := pam.GenesisHash
	if from > 1 {
		var p []byte
		if err := db.QueryRow(`SELECT hash FROM pam_events WHERE seq = $1`, from-1).Scan(&p); err != nil {
			t.Fatal(err)
		}
		prev = hex.EncodeToString(p)
	}
	for seq := from; seq <= to; seq++ {
		e := s.event(t, seq)
		if err := e.Chain(seq, prev); err != nil {
			t.Fatal(err)
		}
		p, _ := hex.DecodeString(e.PrevHash)
		h, _ := hex.DecodeString(e.Hash)
		sqlExec(t, db, `UPDATE pam_events SET prev_hash = $1, hash = $2 WHERE seq = $3`, p, h, seq)
		prev = e.Hash
	}
}

type rawEvents struct{ db *sql.DB }

func (r *rawEvents) event(t *testing.T, seq int64) pam.Event {
	t.Helper()
	var e pam.Event
	var ns int64
	var typ string
	var detail sql.NullString
	err := r.db.QueryRow(`SELECT time, type, actor, request_id, policy_id, task, outcome, detail, run FROM pam_events WHERE seq = $1`, seq).
		Scan(&ns, &typ, &e.Actor, &e.RequestID, &e.PolicyID, &e.Task, &e.Outcome, &detail, &e.Run)
	if err != nil {
		t.Fatal(err)
	}
	e.Time, e.Type = time.Unix(0, ns), pam.EventType(typ)
	if detail.Valid {
		if err := json.Unmarshal([]byte(detail.String), &e.Detail); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// TestMalformedEventsAreTampering stores events that do not decode
// strictly, writing to the file around the store, and checks that each
// is reported as tampering rather than breaking the reads: see
// storetest.Malformed. SQLite keeps whatever type a writer gives a cell
// once the table is no longer STRICT, which the file's owner can undo
// (loosen); those rows are SQLite's own.
func TestMalformedEventsAreTampering(t *testing.T) {
	loose := func(name, assignment string) storetest.MalformedRow {
		return storetest.MalformedRow{Name: name, Do: func(t testing.TB, exec storetest.Exec, seq int64) {
			loosen(t, exec)
			exec(t, `UPDATE pam_events SET `+assignment+` WHERE seq = $1`, seq)
		}}
	}
	rows := append(slices.Clone(storetest.SQLMalformedRows),
		loose("a text in the time column", `time = 'yesterday'`),
		loose("a real in the time column", `time = 0.5`),
		loose("a blob in the type column", `type = CAST(type AS BLOB)`),
		loose("an integer hash", `hash = 7`),
		loose("a blob detail", `detail = CAST(detail AS BLOB)`),
		loose("a text hash", `hash = hex(hash)`),
		loose("a blob run", `run = CAST('run_1' AS BLOB)`),
	)
	storetest.Malformed(t, func(t testing.TB, _ *clock.Mock) (pam.Store, storetest.Exec) {
		path := filepath.Join(t.TempDir(), "pam.db")
		s := open(t, path)
		db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
		if err != nil {
			t.Fatal(err)
		}
		db.SetMaxOpenConns(1)
		t.Cleanup(func() { db.Close() })
		return s, func(t testing.TB, q string, args ...any) {
			t.Helper()
			if _, err := db.Exec(q, args...); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}, rows)
}

// loosen drops STRICT from pam_events, as the owner of the file can:
// its cells then take any type.
func loosen(t testing.TB, exec storetest.Exec) {
	t.Helper()
	exec(t, `PRAGMA writable_schema = ON`)
	exec(t, `UPDATE sqlite_schema SET sql = replace(sql, ') STRICT', ')') WHERE name = 'pam_events'`)
	// Other connections reload the schema when its version changes.
	exec(t, `PRAGMA schema_version = 1000`)
	exec(t, `PRAGMA writable_schema = OFF`)
}
