package main

import (
	"context"
	"time"

	"github.com/spf13/pflag"

	"github.com/zerostanding/pam"
)

var breakGlassCommands = []command{
	{noun: "breakglass", summary: "Act at once in an emergency, without approval, under a policy whose break-glass group you are in; approvers review it afterwards.",
		examples: "  pamctl breakglass --policy drop --reason \"INC-77: disk full\"\n  pamctl breakglass --policy drop --reason \"INC-77\" --hours 0.5\n",
		flags: func(fs *pflag.FlagSet) action {
			var n pam.RequestInput
			var h float64
			fs.StringVar(&n.PolicyID, "policy", "", "the policy's ID (required)")
			fs.StringVar(&n.Reason, "reason", "", "why (required)")
			fs.Float64Var(&h, "hours", 0, "how long (default and most: the policy's break-glass duration)")
			fs.StringVar(&n.Ticket, "ticket", "", "incident ticket")
			return func(ctx context.Context, c *cli, _ []string) error {
				if n.PolicyID == "" {
					return usagef("give --policy")
				}
				n.Duration = hours(h)
				r, err := c.api.BreakGlass(ctx, n)
				if err != nil {
					return err
				}
				return c.printRequest(r)
			}
		}},
	{noun: "review", verb: "list", summary: "List the break-glass activations to review (pending and flagged), or those in the states given.",
		examples: "  pamctl review list\n  pamctl review list --state confirmed --json\n",
		flags: func(fs *pflag.FlagSet) action {
			var states []string
			enumVar(fs, &states, "state", true, "pending, confirmed or flagged (repeat for several)", reviewStates...)
			return func(ctx context.Context, c *cli, _ []string) error {
				var sts []pam.ReviewState
				for _, s := range states {
					sts = append(sts, pam.ReviewState(s))
				}
				rs, err := c.api.BreakGlassReviews(ctx, sts...)
				if err != nil {
					return err
				}
				return c.printReviews(rs)
			}
		}},
	review("confirm", pam.ReviewConfirmed, "Confirm a break-glass activation: it was justified.", "  pamctl review confirm bg_... --comment \"INC-77 was real\"\n"),
	review("flag", pam.ReviewFlagged, "Flag a break-glass activation: it was not justified (an active grant is revoked).", "  pamctl review flag bg_... --comment \"no incident\"\n"),
}

func review(verb string, verdict pam.ReviewState, summary, example string) command {
	return command{noun: "review", verb: verb, args: "ID", summary: summary, examples: example,
		flags: func(fs *pflag.FlagSet) action {
			var comment string
			fs.StringVar(&comment, "comment", "", "comment recorded with the review")
			return func(ctx context.Context, c *cli, args []string) error {
				id, err := one(args, "request ID")
				if err != nil {
					return err
				}
				r, err := c.api.ReviewBreakGlass(ctx, id, verdict, comment)
				if err != nil {
					return err
				}
				return c.printReviews([]pam.Request{r})
			}
		}}
}

// printReviews writes break-glass requests with their reviews: a table,
// or a JSON array.
func (c *cli) printReviews(rs []pam.Request) error {
	if c.json {
		return c.printJSON(nonNil(rs))
	}
	var rows [][]string
	for _, r := range rs {
		review, due, by := "", "", ""
		if v := r.BreakGlass; v != nil {
			review, due, by = string(v.State), v.DueAt.UTC().Format(time.RFC3339), v.By
		}
		rows = append(rows, []string{r.ID, pam.DisplayText(r.Requester), pam.DisplayText(r.Scope.String()), string(r.State), review, due, pam.DisplayText(by), pam.DisplayText(r.Reason)})
	}
	return c.table("ID\tREQUESTER\tSCOPE\tSTATE\tREVIEW\tDUE\tBY\tREASON", rows)
}
