package main

import (
	"context"
	"database/sql"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/sinks"
	"github.com/zerostanding/pam/store/sqlite"
)

// trail makes a SQLite database with a short trail, a checkpoint of its
// head in a checkpoint file, and the whole trail in a JSON Lines sink
// file, as a host keeps them; it returns the three paths.
func trail(t *testing.T) (db, checkpoints, sinkFile string) {
	t.Helper()
	dir := t.TempDir()
	db, checkpoints, sinkFile = filepath.Join(dir, "pam.db"), filepath.Join(dir, "checkpoints.jsonl"), filepath.Join(dir, "audit.jsonl")
	ctx := context.Background()
	s, err := sqlite.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	file, err := sinks.OpenFile(sinkFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	dirs, _ := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin"}})
	m, err := pam.New(s, dirs, &pam.Options{CheckpointSinks: []pam.CheckpointSink{sinks.NewCheckpointFile(checkpoints)},
		AuditSinks: []pam.SinkConfig{{Name: "file", Sink: file, Required: true}}})
	if err != nil {
		t.Fatal(err)
	}
	admin := pam.WithActor(ctx, "admin")
	for _, id := range []string{"a", "b", "c", "d"} {
		if _, err := m.CreatePolicy(admin, pam.Policy{ID: id, Scope: pam.TaskScope(id), Approval: pam.Auto}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return db, checkpoints, sinkFile
}

// rewrite changes event 2 and re-hashes the trail from there to its
// head, as someone who can write the database can.
func rewrite(t *testing.T, db string) {
	t.Helper()
	s, err := sqlite.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	events, err := s.Events(context.Background(), pam.EventFilter{})
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	events[1].Actor = "mallory"
	if _, err := (pam.ChainHead{}).Chain(events, nil); err != nil {
		t.Fatal(err)
	}
	sqlDB, err := sql.Open("sqlite", "file:"+db+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer sqlDB.Close()
	for _, e := range events[1:] {
		prev, _ := hex.DecodeString(e.PrevHash)
		hash, _ := hex.DecodeString(e.Hash)
		if _, err := sqlDB.Exec(`UPDATE pam_events SET actor = ?, prev_hash = ?, hash = ? WHERE seq = ?`, e.Actor, prev, hash, e.Seq); err != nil {
			t.Fatal(err)
		}
	}
}

// cut deletes the newest event, as someone who can write the database can.
func cut(t *testing.T, db string) {
	t.Helper()
	sqlDB, err := sql.Open("sqlite", "file:"+db+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer sqlDB.Close()
	if _, err := sqlDB.Exec(`DELETE FROM pam_events WHERE seq = (SELECT max(seq) FROM pam_events)`); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyAgainstWhatIsKeptOutside: a trail rewritten and re-hashed to
// its head, or cut short, is a valid chain on its own; audit verify
// catches the first with the checkpoint file, both with the sink file.
func TestVerifyAgainstWhatIsKeptOutside(t *testing.T) {
	db, checkpoints, sinkFile := trail(t)
	admin := direct(t, db, "admin")
	if out, _ := admin(exitOK, "audit", "verify", "--checkpoints", checkpoints, "--sink-file", sinkFile); !strings.Contains(out, "the trail verifies") {
		t.Fatalf("the untouched trail:\n%s", out)
	}
	rewrite(t, db)
	admin(exitOK, "audit", "verify") // the chain alone cannot tell
	for _, flags := range [][]string{{"--checkpoints", checkpoints}, {"--sink-file", sinkFile}} {
		out, _ := admin(exitTampered, append([]string{"audit", "verify"}, flags...)...)
		if !strings.Contains(out, "checkpoint_mismatch") {
			t.Errorf("a rewritten trail, verify %v:\n%s", flags, out)
		}
	}

	db, checkpoints, sinkFile = trail(t)
	admin = direct(t, db, "admin")
	cut(t, db)
	admin(exitOK, "audit", "verify")
	for _, flags := range [][]string{{"--checkpoints", checkpoints}, {"--sink-file", sinkFile}} {
		out, _ := admin(exitTampered, append([]string{"audit", "verify"}, flags...)...)
		if !strings.Contains(out, "truncated") {
			t.Errorf("a trail cut short, verify %v:\n%s", flags, out)
		}
	}
	if _, errOut := admin(exitUsage, "audit", "verify", "--public-key", "not-a-key"); !strings.Contains(errOut, "--public-key") {
		t.Errorf("a bad key: %s", errOut)
	}
}
