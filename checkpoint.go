package pam

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"
)

// Checkpoint vouches for the audit trail up to Seq: the hash of event Seq
// (the head at Time), optionally signed with Ed25519. Checkpoints are kept
// outside the store, by a CheckpointSink; Verify checks the trail against
// them.
//
// What a checkpoint protects against depends on where it is kept and
// whether it is signed. The hash chain alone catches any change to an
// event that is not followed by re-hashing every later event; someone who
// can write the database can do that re-hashing, and can also delete the
// newest events. A checkpoint held where that person cannot write (a
// write-once bucket, another team's log, a printout) catches both: the
// rewritten trail no longer reaches the checkpoint's hash, and a cut trail
// no longer reaches its sequence number. Unsigned, a checkpoint is only as
// trustworthy as the place it is kept: whoever can write there can forge
// one to match a rewritten trail. Signed with a key the database's
// writers do not hold, a forged checkpoint fails verification wherever it
// is kept — but deleting checkpoints is still possible where they are
// stored, so keep them append-only.
type Checkpoint struct {
	Seq  int64     `json:"seq"`
	Hash string    `json:"hash"` // hexadecimal, as Event.Hash
	Time time.Time `json:"time"`
	// KeyID names the signing key: the first 8 bytes of the SHA-256 of
	// the Ed25519 public key, in hexadecimal. Empty when unsigned.
	KeyID string `json:"key_id,omitempty"`
	// Signature is the Ed25519 signature of Message(). Empty when
	// unsigned.
	Signature []byte `json:"signature,omitempty"`
}

// CheckpointSink keeps checkpoints outside the store.
type CheckpointSink interface {
	// WriteCheckpoint stores c durably, or returns an error.
	WriteCheckpoint(ctx context.Context, c Checkpoint) error
}

// CheckpointReader is an optional interface of a CheckpointSink that can
// read back what it keeps: Manager.Verify then checks the trail against
// it.
type CheckpointReader interface {
	// ReadCheckpoints returns the checkpoints kept, oldest first.
	ReadCheckpoints(ctx context.Context) ([]Checkpoint, error)
}

// DefaultCheckpointInterval is Options.CheckpointInterval's default: the
// tail a database writer could cut undetected is at most this old.
const DefaultCheckpointInterval = 5 * time.Minute

// Message returns the bytes a checkpoint's signature covers (notation as
// for the hash chain, see ChainHash):
//
//	str("pam.checkpoint.v1") ‖ u64(Seq) ‖ the 32 bytes of Hash ‖ u64(Time as Unix nanoseconds)
func (c *Checkpoint) Message() ([]byte, error) {
	h, err := ParseHash(c.Hash)
	if err != nil {
		return nil, err
	}
	b := appendStr(nil, "pam.checkpoint.v1")
	b = binary.BigEndian.AppendUint64(b, uint64(c.Seq))
	b = append(b, h[:]...)
	return binary.BigEndian.AppendUint64(b, uint64(c.Time.UnixNano())), nil
}

// KeyID returns the key ID of an Ed25519 public key.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// Sign signs c with key, setting KeyID and Signature.
func (c *Checkpoint) Sign(key ed25519.PrivateKey) error {
	msg, err := c.Message()
	if err != nil {
		return err
	}
	c.KeyID = KeyID(key.Public().(ed25519.PublicKey))
	c.Signature = ed25519.Sign(key, msg)
	return nil
}

// CheckSignature verifies c's signature with the key among keys whose
// KeyID matches. It fails with a *TamperError (ReasonBadSignature) when c
// is unsigned, signed by another key, or altered.
func (c *Checkpoint) CheckSignature(keys ...ed25519.PublicKey) error {
	bad := func(why string) error {
		return &TamperError{Seq: c.Seq, Reason: ReasonBadSignature, Detail: "checkpoint of " + c.Time.UTC().Format(time.RFC3339) + ": " + why}
	}
	if len(c.Signature) == 0 {
		return bad("unsigned")
	}
	msg, err := c.Message()
	if err != nil {
		return bad(err.Error())
	}
	for _, k := range keys {
		if len(k) == ed25519.PublicKeySize && KeyID(k) == c.KeyID {
			if !ed25519.Verify(k, msg, c.Signature) {
				return bad("the signature does not match")
			}
			return nil
		}
	}
	return bad("signed by key " + c.KeyID + ", which is not among the given keys")
}

// Checkpoint makes a checkpoint of the trail's current head, signed when
// Options.CheckpointKey is set, and hands it to every
// Options.CheckpointSinks. It returns the checkpoint, with an error when a
// sink failed (the others still got it). An empty trail has no head: the
// checkpoint then has Seq 0 and the GenesisHash.
func (m *Manager) Checkpoint(ctx context.Context) (Checkpoint, error) {
	c, err := m.checkpoint(ctx)
	m.tel.checkpoints.Add(ctx, 1, result(err))
	m.tel.log.Debug("pam: checkpoint", "seq", c.Seq, "error", err)
	return c, err
}

func (m *Manager) checkpoint(ctx context.Context) (Checkpoint, error) {
	head, err := m.store.Events(ctx, EventFilter{Descending: true, Limit: 1})
	if err != nil {
		return Checkpoint{}, err
	}
	now, err := m.now(ctx)
	if err != nil {
		return Checkpoint{}, err
	}
	return m.ckpt.make(ctx, head, now)
}

// checkpointer signs checkpoints and hands them to the checkpoint sinks.
type checkpointer struct {
	key     ed25519.PrivateKey // nil: unsigned
	sinks   []CheckpointSink
	every   time.Duration // Options.CheckpointInterval
	events  int           // Options.CheckpointEvery; 0: by time only
	timeout time.Duration // Options.AuditTimeout, per sink write
	last    atomic.Int64  // the Seq of the last checkpoint made
	wake    chan struct{} // CheckpointEvery events were committed
}

// published wakes Run once the trail has grown by CheckpointEvery events
// since the last checkpoint, as the Seq of events just committed shows
// (other Managers' events included).
func (cp *checkpointer) published(events []Event) {
	if cp.events <= 0 || len(cp.sinks) == 0 || len(events) == 0 {
		return
	}
	if events[len(events)-1].Seq-cp.last.Load() >= int64(cp.events) {
		select {
		case cp.wake <- struct{}{}:
		default:
		}
	}
}

// newCheckpointer validates the checkpoint options and applies their
// defaults.
func newCheckpointer(opts *Options) (*checkpointer, error) {
	if opts.CheckpointInterval < 0 || opts.AuditTimeout < 0 || opts.CheckpointEvery < 0 {
		return nil, invalid("Options", "CheckpointInterval, CheckpointEvery and AuditTimeout must not be negative")
	}
	c := &checkpointer{sinks: slices.Clone(opts.CheckpointSinks), every: opts.CheckpointInterval, events: opts.CheckpointEvery,
		timeout: opts.AuditTimeout, wake: make(chan struct{}, 1)}
	if opts.CheckpointKey != nil {
		if len(opts.CheckpointKey) != ed25519.PrivateKeySize {
			return nil, invalid("Options.CheckpointKey", "is not an Ed25519 private key")
		}
		c.key = opts.CheckpointKey
	}
	if c.every == 0 {
		c.every = DefaultCheckpointInterval
	}
	if c.timeout == 0 {
		c.timeout = 5 * time.Second
	}
	return c, nil
}

// read returns the checkpoints the sinks that can read back hold.
func (cp *checkpointer) read(ctx context.Context) ([]Checkpoint, error) {
	var out []Checkpoint
	for i, s := range cp.sinks {
		r, ok := s.(CheckpointReader)
		if !ok {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, cp.timeout)
		cps, err := r.ReadCheckpoints(rctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("pam: read checkpoint sink %d: %w", i, err)
		}
		out = append(out, cps...)
	}
	return out, nil
}

// make checkpoints head (none: the empty trail) at now.
func (cp *checkpointer) make(ctx context.Context, head []Event, now time.Time) (Checkpoint, error) {
	c := Checkpoint{Hash: GenesisHash, Time: now.UTC()}
	if len(head) == 1 {
		c.Seq, c.Hash = head[0].Seq, head[0].Hash
	}
	if cp.key != nil {
		if err := c.Sign(cp.key); err != nil {
			return Checkpoint{}, fmt.Errorf("pam: checkpoint of event %d: %w", c.Seq, err)
		}
	}
	var errs []error
	for i, s := range cp.sinks {
		sctx, cancel := context.WithTimeout(ctx, cp.timeout)
		if err := s.WriteCheckpoint(sctx, c); err != nil {
			errs = append(errs, fmt.Errorf("pam: checkpoint sink %d: %w", i, err))
		}
		cancel()
	}
	cp.last.Store(c.Seq)
	return c, errors.Join(errs...)
}
