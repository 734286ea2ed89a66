package pam

import (
	"context"
	"fmt"
	"maps"
)

// ActorDetailPrefix starts the event Detail keys under which
// WithActorDetail's detail is recorded, so that it cannot be taken for
// the engine's own.
const ActorDetailPrefix = "actor."

// maxActorDetail bounds WithActorDetail's entries.
const maxActorDetail = 16

// actorDetailKey carries WithActorDetail's detail in a context.
type actorDetailKey struct{}

type actorDetail struct {
	detail map[string]string // keys with ActorDetailPrefix
	err    error
}

// WithActorDetail returns a context whose calls record detail about
// where the actor acts from (the operating-system user and host a command
// line runs as, say) in every event they commit for that actor: each
// key, prefixed with ActorDetailPrefix, goes into the event's Detail,
// beside the engine's own keys, and so into the hash chain. Events of
// other actors in the same commit (an automatic approval) are left as
// they are, and so are the ends of Guard's runs, which may be committed
// with another call's events: a run's end is linked to its start, which
// carries the detail, by Event.Run.
//
// The detail is what the caller says, recorded as said: it is evidence
// of what the caller claimed, not an authentication. Keys are 1 to 64
// bytes of a-z, 0-9, '_' and '-', at most 16 of them; values are cleaned
// as free text is (valid UTF-8, no NUL, cut to MaxReasonLen). A context
// whose detail breaks these rules fails every commit with ErrInvalid,
// so nothing is written without the detail it was meant to carry.
func WithActorDetail(ctx context.Context, detail map[string]string) context.Context {
	d := &actorDetail{detail: make(map[string]string, len(detail))}
	if len(detail) > maxActorDetail {
		d.err = fmt.Errorf("%w: actor detail has %d entries, more than %d", ErrInvalid, len(detail), maxActorDetail)
	}
	for k, v := range detail {
		if !detailKey(k) {
			d.err = fmt.Errorf("%w: actor detail key %q: want 1 to 64 bytes of a-z, 0-9, _ and -", ErrInvalid, k)
		}
		d.detail[ActorDetailPrefix+k] = cleanText(v)
	}
	return context.WithValue(ctx, actorDetailKey{}, d)
}

func detailKey(k string) bool {
	if k == "" || len(k) > 64 {
		return false
	}
	for _, r := range k {
		if !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// addActorDetail puts ctx's actor detail, if any, into the Detail of
// tx's events of ctx's actor. A key the engine set already keeps the
// engine's value.
func addActorDetail(ctx context.Context, tx *Tx) error {
	d, ok := ctx.Value(actorDetailKey{}).(*actorDetail)
	if !ok {
		return nil
	}
	if d.err != nil {
		return d.err
	}
	actor, ok := ActorFrom(ctx)
	if !ok {
		return nil
	}
	for i := range tx.Events {
		e := &tx.Events[i]
		if e.Actor != actor || len(d.detail) == 0 || e.Type == EventGuardFinished || e.Type == EventGuardFinishedLate {
			continue // a run's end may ride with another call's commit; its start has the detail
		}
		detail := make(map[string]string, len(e.Detail)+len(d.detail))
		maps.Copy(detail, d.detail)
		maps.Copy(detail, e.Detail)
		e.Detail = detail
	}
	return nil
}
