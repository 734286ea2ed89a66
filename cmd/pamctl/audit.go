package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"time"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/pamhttp"
)

var auditCommands = []command{
	{noun: "audit", verb: "search", summary: "Search the audit trail, newest first with --desc. Admins only.",
		examples: "  pamctl audit search --actor alice --since 2026-11-01T00:00:00Z\n  pamctl audit search --type policy.updated --desc --limit 20 --json\n",
		flags: func(fs *flag.FlagSet) action {
			var f pam.EventFilter
			var outcome, since, until string
			var types multi
			fs.StringVar(&f.Actor, "actor", "", "who")
			fs.StringVar(&f.Task, "task", "", "which task")
			fs.Var(&types, "type", "event type (repeat for several)")
			fs.StringVar(&f.RequestID, "request", "", "request ID")
			fs.StringVar(&f.PolicyID, "policy", "", "policy ID")
			fs.StringVar(&outcome, "outcome", "", "outcome")
			fs.StringVar(&since, "since", "", "from this RFC 3339 time")
			fs.StringVar(&until, "until", "", "before this RFC 3339 time")
			fs.IntVar(&f.Limit, "limit", 100, "at most this many events")
			fs.BoolVar(&f.Descending, "desc", false, "newest first")
			return func(ctx context.Context, c *cli, _ []string) error {
				f.Outcome = pam.Outcome(outcome)
				for _, t := range types {
					f.Types = append(f.Types, pam.EventType(t))
				}
				var err error
				if f.Since, err = rfc3339("--since", since); err != nil {
					return err
				}
				if f.Until, err = rfc3339("--until", until); err != nil {
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
					rows = append(rows, []string{strconv.FormatInt(e.Seq, 10), e.Time.UTC().Format(time.RFC3339), string(e.Type), e.Actor, e.Task, string(e.Outcome), e.RequestID})
				}
				return c.table("SEQ\tTIME\tTYPE\tACTOR\tTASK\tOUTCOME\tREQUEST", rows)
			}
		}},
	{noun: "audit", verb: "verify", summary: "Check the audit trail's hash chain. Exit code 7 when it does not verify. Admins only.",
		examples: "  pamctl audit verify\n  pamctl audit verify --sqlite pam.db --json\n",
		flags: noFlags(func(ctx context.Context, c *cli, _ []string) error {
			a, err := pamhttp.NewVerifyAnswer(c.api.Verify(ctx, pam.VerifyOptions{}))
			if err != nil {
				return err
			}
			if c.json {
				err = c.printJSON(a)
			} else if a.OK {
				_, err = fmt.Fprintf(c.out, "the trail verifies: events %d..%d, head %s\n", a.Result.From, a.Result.To, a.Result.Head)
			} else {
				_, err = fmt.Fprintf(c.out, "the trail does NOT verify at event %d: %s: %s\n", a.Failure.Seq, a.Failure.Reason, a.Failure.Detail)
			}
			if err == nil && !a.OK {
				return fmt.Errorf("%w at event %d", pam.ErrTampered, a.Failure.Seq)
			}
			return err
		})},
}

// rfc3339 reads flag's time, zero when empty.
func rfc3339(flag, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return t, fmt.Errorf("%w: %s %q is not an RFC 3339 time", pam.ErrInvalid, flag, s)
	}
	return t, nil
}
