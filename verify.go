package pam

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"math"
	"sort"
)

// VerifyOptions select what Verify checks.
type VerifyOptions struct {
	// From and To bound the sequence numbers checked. From defaults to 1,
	// which also looks for events stored with a number below 1; a later
	// From trusts the stored hash of event From-1 as its anchor.
	// To defaults to the trail's head.
	From, To int64
	// Checkpoints are compared with the trail: the event at each
	// checkpoint's Seq must have its Hash, and the trail must reach it.
	// Checkpoints past an explicit To are skipped.
	Checkpoints []Checkpoint
	// PublicKeys, when given, must verify every checkpoint's signature:
	// an unsigned checkpoint or one signed by another key fails. Without
	// keys, signatures are not checked.
	PublicKeys []ed25519.PublicKey
	// PageSize is how many events are read per store call. Default 5000.
	PageSize int
}

// VerifyResult describes a verified range.
type VerifyResult struct {
	From        int64  `json:"from"`
	To          int64  `json:"to"`
	Events      int64  `json:"events"`      // events checked
	Head        string `json:"head"`        // the hash of event To
	Checkpoints int    `json:"checkpoints"` // checkpoints checked
}

// Verify checks the audit trail in s over a range: sequence numbers
// without gaps, each event's hash recomputed from its fields (see
// ChainHash), each event linked to the one before it, and the trail
// against checkpoints kept elsewhere. It stops at the first event that
// fails and returns a *TamperError (matching ErrTampered) naming it and
// the reason; other errors are the store's.
//
// A stored event that does not decode strictly (Event.Malformed) fails
// as ReasonMalformed before its hash is checked, and so, when the range
// starts at 1, does a stored event numbered below 1, which no store
// writes: such events are tampering, not an error of the store.
//
// Verify works on any Store, without a Manager, so an auditor can run it
// with nothing but read access and the checkpoints.
func Verify(ctx context.Context, s Store, o VerifyOptions) (VerifyResult, error) {
	if o.From < 0 || o.To < 0 || o.PageSize < 0 || o.To > 0 && o.To < o.From {
		return VerifyResult{}, invalid("VerifyOptions", "From, To and PageSize must not be negative, and To must not be before From")
	}
	if o.From == 0 {
		o.From = 1
	}
	if o.PageSize == 0 {
		o.PageSize = 5000
	}
	last, err := s.Events(ctx, EventFilter{Descending: true, Limit: 1})
	if err != nil {
		return VerifyResult{}, err
	}
	var headSeq int64
	if len(last) == 1 {
		headSeq = last[0].Seq
	}
	explicitTo := o.To > 0
	if !explicitTo {
		o.To = headSeq
	}

	cps := make([]Checkpoint, 0, len(o.Checkpoints))
	for _, c := range o.Checkpoints {
		if explicitTo && c.Seq > o.To || c.Seq < o.From-1 {
			continue
		}
		if len(o.PublicKeys) > 0 {
			if err := c.CheckSignature(o.PublicKeys...); err != nil {
				return VerifyResult{}, err
			}
		}
		cps = append(cps, c)
	}
	sort.Slice(cps, func(i, j int) bool { return cps[i].Seq < cps[j].Seq })
	res := VerifyResult{From: o.From, To: o.To, Checkpoints: len(cps)}

	// The anchor: H(From-1), or, from the start, no event before it.
	prev := GenesisHash
	if o.From > 1 {
		ev, err := s.Events(ctx, EventFilter{After: o.From - 2, Limit: 1})
		if err != nil {
			return res, err
		}
		if len(ev) == 0 || ev[0].Seq != o.From-1 {
			return res, &TamperError{Seq: o.From - 1, Reason: ReasonGap, Detail: "the event before the range is missing"}
		}
		if ev[0].Malformed != "" {
			return res, malformed(&ev[0])
		}
		prev = ev[0].Hash
	} else if err := belowOne(ctx, s); err != nil {
		return res, err
	}
	for len(cps) > 0 && cps[0].Seq == o.From-1 {
		if cps[0].Hash != prev {
			return res, mismatch(&cps[0], prev)
		}
		cps = cps[1:]
	}

	next := o.From
	for next <= o.To {
		page, err := s.Events(ctx, EventFilter{After: next - 1, Before: o.To + 1, Limit: o.PageSize})
		if err != nil {
			return res, err
		}
		if len(page) == 0 {
			break
		}
		for i := range page {
			e := &page[i]
			if e.Seq != next {
				return res, &TamperError{Seq: next, Reason: ReasonGap, Detail: fmt.Sprintf("event %d is missing; the next stored event is %d", next, e.Seq)}
			}
			if e.Malformed != "" {
				return res, malformed(e)
			}
			if e.PrevHash != prev {
				return res, diagnose(e, prev, page[i+1:], ReasonBrokenLink, "its prev_hash is not the hash of the event before it")
			}
			if err := e.CheckHash(); err != nil {
				return res, diagnose(e, prev, page[i+1:], ReasonAltered, "its fields do not match its hash")
			}
			for len(cps) > 0 && cps[0].Seq == e.Seq {
				if cps[0].Hash != e.Hash {
					return res, mismatch(&cps[0], e.Hash)
				}
				cps = cps[1:]
			}
			prev = e.Hash
			next++
			res.Events++
		}
	}
	switch {
	case next <= o.To && next <= headSeq:
		return res, &TamperError{Seq: next, Reason: ReasonGap, Detail: fmt.Sprintf("event %d is missing", next)}
	case next <= o.To:
		return res, &TamperError{Seq: next, Reason: ReasonTruncated, Detail: fmt.Sprintf("the trail ends at event %d, before %d", next-1, o.To)}
	case len(cps) > 0:
		return res, &TamperError{Seq: next, Reason: ReasonTruncated, Detail: fmt.Sprintf("the trail ends at event %d; a checkpoint of %s vouches for event %d", next-1, cps[0].Time.UTC().Format("2006-01-02T15:04:05Z"), cps[0].Seq)}
	}
	res.Head = prev
	return res, nil
}

// Verify checks the Manager's store: see the package-level Verify. When
// o.Checkpoints is nil, it checks against the checkpoints that the
// Manager's checkpoint sinks read back (CheckpointReader). Only admins may
// (ErrForbidden); an auditor without a Manager calls Verify on the store.
func (m *Manager) Verify(ctx context.Context, o VerifyOptions) (VerifyResult, error) {
	if _, err := m.requireAdmin(ctx); err != nil {
		return VerifyResult{}, err
	}
	if o.Checkpoints == nil {
		// What is kept outside the store is what catches a trail
		// rewritten to its head, or cut short.
		cps, err := m.ckpt.read(ctx)
		if err != nil {
			return VerifyResult{}, err
		}
		o.Checkpoints = cps
	}
	return Verify(ctx, m.store, o)
}

// belowOne reports the first stored event numbered below 1, if there is
// one, as ReasonMalformed. (An event numbered math.MinInt64 is not read:
// moved there, it leaves a gap where it was.)
func belowOne(ctx context.Context, s Store) error {
	ev, err := s.Events(ctx, EventFilter{After: math.MinInt64, Before: 1, Limit: 1})
	if err != nil || len(ev) == 0 {
		return err
	}
	return malformed(&ev[0])
}

// malformed reports e, which does not decode strictly or is numbered
// below 1, as tampering.
func malformed(e *Event) error {
	detail := e.Malformed
	if detail == "" {
		detail = fmt.Sprintf("sequence numbers start at 1, this event is numbered %d", e.Seq)
	}
	return &TamperError{Seq: e.Seq, Reason: ReasonMalformed, Detail: detail}
}

func mismatch(c *Checkpoint, got string) error {
	return &TamperError{Seq: c.Seq, Reason: ReasonCheckpointMismatch,
		Detail: fmt.Sprintf("a checkpoint of %s says event %d has hash %s, the trail has %s: history up to it was rewritten", c.Time.UTC().Format("2006-01-02T15:04:05Z"), c.Seq, c.Hash, got)}
}

// reorderWindow is how far from its position Verify looks for the
// position an intact event was written at.
const reorderWindow = 64

// diagnose tells a moved event from an altered or unlinked one. An event
// whose hash verifies with its own PrevHash at another sequence number j
// was written there; if the event that belongs at its position (the one
// linked to prev) comes later, the two were reordered, otherwise events
// before it were removed or inserted.
func diagnose(e *Event, prev string, after []Event, reason TamperReason, detail string) error {
	if p, err := ParseHash(e.PrevHash); err == nil {
		d := e.ContentDigest()
		for j := max(1, e.Seq-reorderWindow); j <= e.Seq+reorderWindow; j++ {
			if j == e.Seq || !hashEqual(e.Hash, ChainHash(j, p, d)) {
				continue
			}
			for k := range after[:min(len(after), reorderWindow)] {
				if after[k].PrevHash == prev {
					return &TamperError{Seq: e.Seq, Reason: ReasonReordered, Detail: fmt.Sprintf("the event at %d was written as event %d; event %d's content is at %d", e.Seq, j, e.Seq, after[k].Seq)}
				}
			}
			return &TamperError{Seq: e.Seq, Reason: ReasonBrokenLink, Detail: fmt.Sprintf("the event at %d was written as event %d: events before it were removed or inserted", e.Seq, j)}
		}
	}
	return &TamperError{Seq: e.Seq, Reason: reason, Detail: detail}
}
