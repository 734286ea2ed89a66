package sinks

import (
	"context"
	"log/slog"

	"github.com/zerostanding/pam"
)

// Slog is an AuditSink that writes each event as one log record through
// a slog.Handler: message "pam audit event", the event's time, and
// attributes seq, type, actor, request_id, policy_id, task, run (for a
// Guard run's start and end), outcome, detail (a group), prev_hash and
// hash, and malformed for an event the
// store could not read strictly (pam.Event.Malformed). It calls the Handler directly, so
// the Handler's errors reach the engine (a slog.Logger would drop them).
type Slog struct {
	h     slog.Handler
	level slog.Level
}

var _ pam.AuditSink = (*Slog)(nil)

// NewSlog returns a sink writing to h at level Info.
func NewSlog(h slog.Handler) *Slog { return &Slog{h: h, level: slog.LevelInfo} }

// Write implements pam.AuditSink.
func (s *Slog) Write(ctx context.Context, events []pam.Event) error {
	if !s.h.Enabled(ctx, s.level) {
		return nil
	}
	for i := range events {
		e := &events[i]
		r := slog.NewRecord(e.Time, s.level, "pam audit event", 0)
		r.AddAttrs(slog.Int64("seq", e.Seq), slog.String("type", string(e.Type)), slog.String("actor", e.Actor),
			slog.String("request_id", e.RequestID), slog.String("policy_id", e.PolicyID), slog.String("task", e.Task),
			slog.String("outcome", string(e.Outcome)))
		if e.Run != "" {
			r.AddAttrs(slog.String("run", e.Run))
		}
		if len(e.Detail) > 0 {
			attrs := make([]any, 0, len(e.Detail))
			for k, v := range e.Detail {
				attrs = append(attrs, slog.String(k, v))
			}
			r.AddAttrs(slog.Group("detail", attrs...))
		}
		r.AddAttrs(slog.String("prev_hash", e.PrevHash), slog.String("hash", e.Hash))
		if e.Malformed != "" {
			r.AddAttrs(slog.String("malformed", e.Malformed))
		}
		if err := s.h.Handle(ctx, r); err != nil {
			return err
		}
	}
	return nil
}
