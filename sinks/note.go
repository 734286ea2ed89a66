package sinks

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"

	"github.com/zerostanding/pam"
)

// Checkpoints as C2SP signed notes (https://c2sp.org/signed-note), in the
// shape of a transparency log checkpoint (https://c2sp.org/tlog-checkpoint):
//
//	<origin>
//	<size>
//	<root hash, base64>
//	time <RFC 3339>
//
//	— <key name> <base64 of key hash and signature>
//
// The trail is a hash chain, not a Merkle tree, and the note says so only
// through its origin: size is the sequence number of the last event
// (events 1 to size), and the "root hash" is that event's chain hash
// (pam.Event.Hash), the head of the chain. A verifier holding only
// golang.org/x/mod/sumdb/note can check who signed the note and read
// which event it vouches for and its hash; with the trail it can check
// that event's hash (pam.Verify, or Event.CheckHash and the chain) and so
// everything before it. It cannot ask for a Merkle inclusion or
// consistency proof: tools that expect one must not be pointed at these
// notes. The time line is an extension line: when the checkpoint was
// taken.

// NoteSigner returns a signer of C2SP signed notes with an Ed25519 key
// (algorithm 0x01), named name: the key's verifier is
// note.NewEd25519VerifierKey(name, key.Public()).
func NoteSigner(name string, key ed25519.PrivateKey) (note.Signer, error) {
	if name == "" || strings.ContainsAny(name, "+ \t\n") || !utf8.ValidString(name) {
		return nil, fmt.Errorf("%w: signed note key name %q: want a non-empty name without +, spaces or newlines", pam.ErrInvalid, name)
	}
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: signed note key: not an Ed25519 private key", pam.ErrInvalid)
	}
	pub := key.Public().(ed25519.PublicKey)
	// The key hash of c2sp.org/signed-note: the first four bytes of
	// SHA-256(name || 0x0A || 0x01 || public key), big-endian.
	h := sha256.New()
	h.Write([]byte(name + "\n"))
	h.Write([]byte{0x01})
	h.Write(pub)
	return &noteSigner{name: name, hash: binary.BigEndian.Uint32(h.Sum(nil)), key: key}, nil
}

type noteSigner struct {
	name string
	hash uint32
	key  ed25519.PrivateKey
}

func (s *noteSigner) Name() string                    { return s.name }
func (s *noteSigner) KeyHash() uint32                 { return s.hash }
func (s *noteSigner) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.key, msg), nil }

// CheckpointNote returns c as a signed note of origin, signed by signer.
func CheckpointNote(c pam.Checkpoint, origin string, signer note.Signer) ([]byte, error) {
	if origin == "" || strings.ContainsAny(origin, "\n") || !utf8.ValidString(origin) {
		return nil, fmt.Errorf("%w: checkpoint note origin %q: want one non-empty line", pam.ErrInvalid, origin)
	}
	h, err := pam.ParseHash(c.Hash)
	if err != nil {
		return nil, fmt.Errorf("%w: checkpoint hash: %v", pam.ErrInvalid, err)
	}
	if c.Seq < 0 {
		return nil, fmt.Errorf("%w: checkpoint sequence %d", pam.ErrInvalid, c.Seq)
	}
	text := fmt.Sprintf("%s\n%d\n%s\ntime %s\n", origin, c.Seq, base64.StdEncoding.EncodeToString(h[:]), c.Time.UTC().Format(time.RFC3339Nano))
	return note.Sign(&note.Note{Text: text}, signer)
}

// OpenCheckpointNote verifies a signed note with verifiers
// (note.Open) and reads the checkpoint it carries, which must be of
// origin. The checkpoint returned carries no pam signature: the note's
// is checked here.
func OpenCheckpointNote(msg []byte, origin string, verifiers note.Verifiers) (pam.Checkpoint, error) {
	n, err := note.Open(msg, verifiers)
	if err != nil {
		return pam.Checkpoint{}, fmt.Errorf("%w: checkpoint note: %v", pam.ErrTampered, err)
	}
	lines := strings.Split(strings.TrimSuffix(n.Text, "\n"), "\n")
	if len(lines) < 3 || lines[0] != origin {
		return pam.Checkpoint{}, fmt.Errorf("%w: checkpoint note: not a checkpoint of %q", pam.ErrTampered, origin)
	}
	seq, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || seq < 0 || strconv.FormatInt(seq, 10) != lines[1] {
		return pam.Checkpoint{}, fmt.Errorf("%w: checkpoint note: size %q", pam.ErrTampered, lines[1])
	}
	h, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(h) != pam.HashSize {
		return pam.Checkpoint{}, fmt.Errorf("%w: checkpoint note: root hash %q", pam.ErrTampered, lines[2])
	}
	c := pam.Checkpoint{Seq: seq, Hash: hex.EncodeToString(h)}
	for _, ext := range lines[3:] {
		if v, ok := strings.CutPrefix(ext, "time "); ok {
			if c.Time, err = time.Parse(time.RFC3339Nano, v); err != nil {
				return pam.Checkpoint{}, fmt.Errorf("%w: checkpoint note: time %q", pam.ErrTampered, v)
			}
		}
	}
	return c, nil
}

// NoteFile is a pam.CheckpointSink keeping the latest checkpoint as a
// signed note in a file, replaced atomically (written beside it, synced,
// renamed): what a transparency log serves as its checkpoint, for a web
// server or a bucket to publish.
type NoteFile struct {
	mu     sync.Mutex
	path   string
	origin string
	signer note.Signer
	last   int64 // the Seq of the note written last; none older replaces it
}

var _ pam.CheckpointSink = (*NoteFile)(nil)

// NewNoteFile returns a sink writing signed notes of origin, signed by
// signer, to path.
func NewNoteFile(path, origin string, signer note.Signer) (*NoteFile, error) {
	if signer == nil {
		return nil, fmt.Errorf("%w: NewNoteFile needs a signer", pam.ErrInvalid)
	}
	if _, err := CheckpointNote(pam.Checkpoint{Hash: strings.Repeat("0", 2*pam.HashSize)}, origin, signer); err != nil {
		return nil, err
	}
	return &NoteFile{path: path, origin: origin, signer: signer}, nil
}

// WriteCheckpoint implements pam.CheckpointSink.
func (f *NoteFile) WriteCheckpoint(ctx context.Context, c pam.Checkpoint) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	msg, err := CheckpointNote(c, f.origin, f.signer)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if c.Seq < f.last {
		return nil // an older checkpoint than the one published: the newer stays
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.path), "."+filepath.Base(f.path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename, nothing is there
	if _, err := tmp.Write(msg); err != nil {
		tmp.Close()
		return err
	}
	if err := errors.Join(tmp.Chmod(0o644), tmp.Sync(), tmp.Close()); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), f.path); err != nil {
		return err
	}
	if dir, err := os.Open(filepath.Dir(f.path)); err == nil { // the rename, durable
		dir.Sync()
		dir.Close()
	}
	f.last = c.Seq
	return nil
}

// ReadNote returns the note the file holds.
func (f *NoteFile) ReadNote() ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := os.ReadFile(f.path)
	return bytes.Clone(b), err
}
