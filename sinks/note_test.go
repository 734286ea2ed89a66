package sinks_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/sinks"
)

// TestCheckpointNote: a checkpoint of a real trail as a C2SP signed note,
// verified with golang.org/x/mod/sumdb/note alone and read as the
// tlog-checkpoint shape says, for a key made by note.GenerateKey and for
// an Ed25519 key of the host's; a changed note, another key or another
// origin are refused.
func TestCheckpointNote(t *testing.T) {
	events := trail(t, 12)
	head := events[len(events)-1]
	c := pam.Checkpoint{Seq: head.Seq, Hash: head.Hash, Time: head.Time}
	const origin = "pam.example.com/trail"

	skey, vkey, err := note.GenerateKey(rand.Reader, "pam.example.com")
	if err != nil {
		t.Fatal(err)
	}
	generated, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	own, err := sinks.NoteSigner("pam-audit", priv)
	if err != nil {
		t.Fatal(err)
	}
	ownVkey, err := note.NewEd25519VerifierKey("pam-audit", pub)
	if err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string]struct {
		signer note.Signer
		vkey   string
	}{"note.GenerateKey": {generated, vkey}, "the host's Ed25519 key": {own, ownVkey}} {
		t.Run(name, func(t *testing.T) {
			msg, err := sinks.CheckpointNote(c, origin, k.signer)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("the note:\n%s", msg)
			// With the note package alone.
			v, err := note.NewVerifier(k.vkey)
			if err != nil {
				t.Fatal(err)
			}
			n, err := note.Open(msg, note.VerifierList(v))
			if err != nil {
				t.Fatalf("note.Open: %v", err)
			}
			lines := strings.Split(n.Text, "\n")
			hash, _ := hex.DecodeString(head.Hash)
			if lines[0] != origin || lines[1] != fmt.Sprint(head.Seq) || lines[2] != base64.StdEncoding.EncodeToString(hash) || !strings.HasPrefix(lines[3], "time ") {
				t.Errorf("the note's body: %q", n.Text)
			}
			got, err := sinks.OpenCheckpointNote(msg, origin, note.VerifierList(v))
			if err != nil || got.Seq != c.Seq || got.Hash != c.Hash || !got.Time.Equal(c.Time) {
				t.Errorf("OpenCheckpointNote = %+v, %v; want %+v", got, err, c)
			}
			// Changed: the size, the hash, the signature.
			for what, changed := range map[string][]byte{
				"size":      bytes.Replace(msg, []byte("\n12\n"), []byte("\n13\n"), 1),
				"hash":      bytes.Replace(msg, []byte(lines[2]), []byte(base64.StdEncoding.EncodeToString(make([]byte, 32))), 1),
				"signature": append(msg[:len(msg)-6:len(msg)-6], []byte("AAAA=\n")...),
			} {
				if _, err := note.Open(changed, note.VerifierList(v)); err == nil {
					t.Errorf("a note with its %s changed opens", what)
				}
				if _, err := sinks.OpenCheckpointNote(changed, origin, note.VerifierList(v)); !errors.Is(err, pam.ErrTampered) {
					t.Errorf("OpenCheckpointNote with its %s changed: %v", what, err)
				}
			}
			other, _, _ := note.GenerateKey(rand.Reader, "someone-else")
			otherSigner, _ := note.NewSigner(other)
			forged, _ := sinks.CheckpointNote(c, origin, otherSigner)
			if _, err := note.Open(forged, note.VerifierList(v)); err == nil {
				t.Error("a note signed by another key opens")
			}
			if _, err := sinks.OpenCheckpointNote(msg, "another.example/trail", note.VerifierList(v)); !errors.Is(err, pam.ErrTampered) {
				t.Errorf("another origin: %v", err)
			}
		})
	}
	if _, err := sinks.NoteSigner("bad name", priv); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("a key name with a space: %v", err)
	}
	if _, err := sinks.CheckpointNote(c, "two\nlines", own); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("an origin of two lines: %v", err)
	}
}

// TestNoteFile: the sink keeps the latest checkpoint as a signed note,
// each replacing the last, with nothing left beside it.
func TestNoteFile(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := sinks.NoteSigner("pam-audit", priv)
	path := filepath.Join(t.TempDir(), "checkpoint")
	f, err := sinks.NewNoteFile(path, "pam.example.com/trail", signer)
	if err != nil {
		t.Fatal(err)
	}
	events := trail(t, 3)
	for _, e := range events {
		if err := f.WriteCheckpoint(context.Background(), pam.Checkpoint{Seq: e.Seq, Hash: e.Hash, Time: e.Time}); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	vkey, _ := note.NewEd25519VerifierKey("pam-audit", priv.Public().(ed25519.PublicKey))
	v, _ := note.NewVerifier(vkey)
	got, err := sinks.OpenCheckpointNote(b, "pam.example.com/trail", note.VerifierList(v))
	if err != nil || got.Seq != 3 || got.Hash != events[2].Hash {
		t.Errorf("the file after three checkpoints: %+v, %v", got, err)
	}
	// An older checkpoint, late, does not replace the newer one.
	if err := f.WriteCheckpoint(context.Background(), pam.Checkpoint{Seq: events[0].Seq, Hash: events[0].Hash, Time: events[0].Time}); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	if got, err := sinks.OpenCheckpointNote(b, "pam.example.com/trail", note.VerifierList(v)); err != nil || got.Seq != 3 {
		t.Errorf("after an older checkpoint: %+v, %v", got, err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("files left beside the note: %v", entries)
	}
	if _, err := sinks.NewNoteFile(path, "", signer); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("no origin: %v", err)
	}
}
