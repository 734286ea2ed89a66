package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/pamhttp"
	"github.com/zerostanding/pam/sinks"
)

var auditCommands = []command{
	{noun: "audit", verb: "search", summary: "Search the audit trail, newest first with --desc. Admins only.",
		examples: "  pamctl audit search --actor alice --since 2026-11-01T00:00:00Z\n  pamctl audit search --type policy.updated --desc --limit 20 --json\n",
		flags: func(fs *pflag.FlagSet) action {
			var f pam.EventFilter
			var since, until string
			var types, outcome []string
			fs.StringVar(&f.Actor, "actor", "", "who")
			fs.StringVar(&f.Task, "task", "", "which task")
			enumVar(fs, &types, "type", true, "event type, such as request.approved or guard.allowed (repeat for several)", eventTypes...)
			fs.StringVar(&f.RequestID, "request", "", "request ID")
			fs.StringVar(&f.PolicyID, "policy", "", "policy ID")
			fs.StringVar(&f.Run, "run", "", "a guarded run's ID: its start and its end")
			enumVar(fs, &outcome, "outcome", false, "outcome, such as granted, not_approved, ok or error", outcomes...)
			fs.StringVar(&since, "since", "", "from this time: a duration back from now (30m, 24h, 7d), a date (2026-11-01, midnight UTC) or an RFC 3339 time")
			fs.StringVar(&until, "until", "", "before this time, in the forms --since takes")
			fs.IntVar(&f.Limit, "limit", 100, "at most this many events")
			fs.BoolVar(&f.Descending, "desc", false, "newest first")
			return func(ctx context.Context, c *cli, _ []string) error {
				if len(outcome) > 0 {
					f.Outcome = pam.Outcome(outcome[0])
				}
				for _, t := range types {
					f.Types = append(f.Types, pam.EventType(t))
				}
				now := time.Now()
				var err error
				if f.Since, err = pastTime("--since", since, now); err != nil {
					return err
				}
				if f.Until, err = pastTime("--until", until, now); err != nil {
					return err
				}
				events, _, err := c.api.Audit(ctx, f)
				if err != nil {
					return err
				}
				if c.json {
					return c.printJSON(nonNil(events))
				}
				var rows [][]string
				for _, e := range events {
					rows = append(rows, []string{strconv.FormatInt(e.Seq, 10), e.Time.UTC().Format(time.RFC3339), string(e.Type), pam.DisplayText(e.Actor), pam.DisplayText(e.Task), string(e.Outcome), e.RequestID})
				}
				return c.table("SEQ\tTIME\tTYPE\tACTOR\tTASK\tOUTCOME\tREQUEST", rows)
			}
		}},
	{noun: "audit", verb: "verify", summary: "Check the audit trail's hash chain, against checkpoints and a sink's copy when given. Exit code 7 when it does not verify. Admins only.",
		examples: "  pamctl audit verify\n" +
			"  pamctl audit verify --sqlite pam.db --as auditor --checkpoints pam.db.checkpoints.jsonl --public-key MCowBQYDK2VwAyEA...\n" +
			"  pamctl audit verify --sink-file audit.jsonl --json\n",
		flags: func(fs *pflag.FlagSet) action {
			var checkpoints, sinkFile string
			var keys multi
			fs.StringVar(&checkpoints, "checkpoints", "", "a checkpoint file (JSON Lines, as sinks.CheckpointFile writes): the trail must reach each and match its hash")
			fs.Var(&keys, "public-key", "an Ed25519 public key, base64, that must have signed the checkpoints (repeat for several)")
			fs.StringVar(&sinkFile, "sink-file", "", "a JSON Lines audit sink file: every event in it must be in the store, with its hash (a store cut short answers truncated)")
			return func(ctx context.Context, c *cli, _ []string) error {
				runs, err := verifyRuns(checkpoints, sinkFile, keys)
				if err != nil {
					return err
				}
				var a pamhttp.VerifyAnswer
				for _, o := range runs {
					if a, err = pamhttp.NewVerifyAnswer(c.api.Verify(ctx, o)); err != nil || !a.OK {
						break
					}
				}
				if err != nil {
					return err
				}
				if c.json {
					err = c.printJSON(a)
				} else if a.OK {
					_, err = fmt.Fprintf(c.out, "the trail verifies: events %d..%d, head %s, %d checkpoints\n", a.Result.From, a.Result.To, a.Result.Head, a.Result.Checkpoints)
				} else {
					_, err = fmt.Fprintf(c.out, "the trail does NOT verify at event %d: %s: %s\n", a.Failure.Seq, a.Failure.Reason, a.Failure.Detail)
				}
				if err == nil && !a.OK {
					return fmt.Errorf("%w at event %d", pam.ErrTampered, a.Failure.Seq)
				}
				return err
			}
		}},
}

// verifyRuns returns the verifications audit verify makes: against the
// checkpoint file (with the keys), and against the sink file's events,
// each of which vouches for its own hash; with neither, one plain run
// (the server checks against the checkpoints its sinks keep).
func verifyRuns(checkpoints, sinkFile string, keys []string) ([]pam.VerifyOptions, error) {
	var runs []pam.VerifyOptions
	if checkpoints != "" || len(keys) > 0 {
		o := pam.VerifyOptions{Checkpoints: []pam.Checkpoint{}}
		if checkpoints != "" {
			cps, err := sinks.ReadCheckpoints(checkpoints)
			if err != nil {
				return nil, usagef("--checkpoints: %v", err)
			}
			o.Checkpoints = append(o.Checkpoints, cps...)
		}
		for _, k := range keys {
			b, err := base64.StdEncoding.DecodeString(k)
			if err != nil || len(b) != ed25519.PublicKeySize {
				return nil, usagef("--public-key %q is not a base64 Ed25519 public key", k)
			}
			o.PublicKeys = append(o.PublicKeys, ed25519.PublicKey(b))
		}
		runs = append(runs, o)
	}
	if sinkFile != "" {
		events, err := sinks.ReadFile(sinkFile)
		if err != nil {
			return nil, usagef("--sink-file: %v", err)
		}
		o := pam.VerifyOptions{Checkpoints: make([]pam.Checkpoint, 0, len(events))}
		for _, e := range events {
			o.Checkpoints = append(o.Checkpoints, pam.Checkpoint{Seq: e.Seq, Hash: e.Hash, Time: e.Time})
		}
		runs = append(runs, o)
	}
	if len(runs) == 0 {
		runs = append(runs, pam.VerifyOptions{})
	}
	return runs, nil
}

// pastTime reads flag's time, zero when empty: a duration back from now
// (Go's, such as 90m or 24h, or whole days such as 7d), a date
// (2026-11-01, which is midnight UTC that day), or an RFC 3339 time.
func pastTime(flag, s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 && n <= 100*366 {
			return now.AddDate(0, 0, -n), nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, failf(pam.ErrInvalid, "%s %q is not a time: give a duration back from now (30m, 24h, 7d), a date (2026-11-01, midnight UTC) or an RFC 3339 time (2026-11-01T09:00:00Z)", flag, s)
}
