package pam

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
)

// The audit trail is a hash chain. Its encoding, version 1, is specified
// here so that anyone can verify a trail without this library.
//
// Notation: u32(n) and u64(n) are n as 4 and 8 bytes, big-endian
// (two's complement for the signed time); str(s) is u32(len(s)) followed
// by the UTF-8 bytes of s; ‖ is concatenation; SHA-256 is FIPS 180-4.
//
// The content digest of an event covers every field except Seq, PrevHash
// and Hash:
//
//	D = SHA-256( str("pam.event.v1") ‖ u64(Time as Unix nanoseconds)
//	             ‖ str(Type) ‖ str(Actor) ‖ str(RequestID) ‖ str(PolicyID)
//	             ‖ str(Task) ‖ str(Outcome)
//	             ‖ u32(number of Detail entries)
//	             ‖ for each Detail key in ascending byte order: str(key) ‖ str(value) )
//
// An event that carries a Run (a Guard run's start or end) has its own
// content prefix and one more field, so that no event's bytes can read
// as another's:
//
//	D = SHA-256( str("pam.event.v2") ‖ u64(Time as Unix nanoseconds)
//	             ‖ str(Type) ‖ str(Actor) ‖ str(RequestID) ‖ str(PolicyID)
//	             ‖ str(Task) ‖ str(Outcome) ‖ str(Run)
//	             ‖ u32(number of Detail entries)
//	             ‖ for each Detail key in ascending byte order: str(key) ‖ str(value) )
//
// The hash of the event with sequence number n chains it to its
// predecessor:
//
//	H(n) = SHA-256( "pam.chain.v1" ‖ u64(n) ‖ H(n-1) ‖ D )
//
// where "pam.chain.v1" is those 12 ASCII bytes without a length, and H(0)
// is 32 zero bytes. Event.Hash is H(n) and Event.PrevHash is H(n-1), both
// as 64 lowercase hexadecimal digits. A trail is intact when its sequence
// numbers run 1, 2, 3… without a gap, every PrevHash equals the Hash
// before it, and every Hash is H(n) recomputed from the event's fields.
//
// The fields must read back exactly as they were written. A stored event
// that does not (a Detail that is not a JSON object of strings with each
// key once, a column of the wrong type, a hash that is not 32 bytes, a
// sequence number below 1) is malformed: there is no one reading of it
// to hash, so a verifier reports it as tampering before computing
// anything (Event.Malformed, ReasonMalformed).
//
// A later version of the whole encoding would change the chain prefix
// too.
const (
	contentPrefix    = "pam.event.v1"
	contentPrefixRun = "pam.event.v2" // with Run
	chainPrefix      = "pam.chain.v1"
)

// HashSize is the size of an event hash in bytes.
const HashSize = sha256.Size

// GenesisHash is H(0), the PrevHash of the first event: 64 zeros.
var GenesisHash = hex.EncodeToString(make([]byte, HashSize))

// ContentDigest returns D, the digest of e's fields other than Seq,
// PrevHash and Hash (see the encoding above). Stores that compute the
// chain inside their database (store/postgres) take D from here.
func (e *Event) ContentDigest() [HashSize]byte {
	var stack [512]byte
	prefix := contentPrefix
	if e.Run != "" {
		prefix = contentPrefixRun
	}
	b := appendStr(stack[:0], prefix)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time.UnixNano()))
	for _, s := range [...]string{string(e.Type), e.Actor, e.RequestID, e.PolicyID, e.Task, string(e.Outcome)} {
		b = appendStr(b, s)
	}
	if e.Run != "" {
		b = appendStr(b, e.Run)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.Detail)))
	if len(e.Detail) > 0 {
		keys := make([]string, 0, len(e.Detail))
		for k := range e.Detail {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			b = appendStr(appendStr(b, k), e.Detail[k])
		}
	}
	return sha256.Sum256(b)
}

func appendStr(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// ChainHash returns H(seq) from H(seq-1) and the event's content digest.
// A malformed stored event (Event.Malformed) is not hashed: Verify
// reports it as ReasonMalformed first.
func ChainHash(seq int64, prev, content [HashSize]byte) [HashSize]byte {
	var b [len(chainPrefix) + 8 + 2*HashSize]byte
	n := copy(b[:], chainPrefix)
	binary.BigEndian.PutUint64(b[n:], uint64(seq))
	copy(b[n+8:], prev[:])
	copy(b[n+8+HashSize:], content[:])
	return sha256.Sum256(b[:])
}

// Chain sets e's Seq, PrevHash and Hash: it becomes event seq following
// an event whose hash is prev (GenesisHash for the first). Stores call it
// inside their serialised commit. It fails only if prev is not 64
// hexadecimal digits.
func (e *Event) Chain(seq int64, prev string) error {
	p, err := ParseHash(prev)
	if err != nil {
		return err
	}
	h := ChainHash(seq, p, e.ContentDigest())
	e.Seq, e.PrevHash, e.Hash = seq, prev, hexHash(&h)
	return nil
}

// CheckHash reports whether e.Hash is H(e.Seq) recomputed from e's own
// fields and e.PrevHash: the check one line of an exported trail allows
// on its own. It returns an error wrapping ErrTampered when it is not.
func (e *Event) CheckHash() error {
	p, err := ParseHash(e.PrevHash)
	if err != nil {
		return &TamperError{Seq: e.Seq, Reason: ReasonAltered, Detail: "prev_hash: " + err.Error()}
	}
	h := ChainHash(e.Seq, p, e.ContentDigest())
	if !hashEqual(e.Hash, h) {
		return &TamperError{Seq: e.Seq, Reason: ReasonAltered, Detail: "the event's fields do not match its hash"}
	}
	return nil
}

// ParseHash decodes a hash written as 64 hexadecimal digits.
func ParseHash(s string) ([HashSize]byte, error) {
	var h [HashSize]byte
	if len(s) != 2*HashSize {
		return h, fmt.Errorf("%w: a hash is %d hexadecimal digits, not %d characters", ErrInvalid, 2*HashSize, len(s))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("%w: hash: %v", ErrInvalid, err)
	}
	return h, nil
}

// hashEqual compares a hexadecimal hash with raw bytes without allocating.
func hashEqual(s string, h [HashSize]byte) bool {
	const digits = "0123456789abcdef"
	if len(s) != 2*HashSize {
		return false
	}
	for i, c := range h {
		if s[2*i] != digits[c>>4] || s[2*i+1] != digits[c&15] {
			return false
		}
	}
	return true
}
