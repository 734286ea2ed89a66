package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/spf13/pflag"

	"github.com/zerostanding/pam"
)

var grantCommands = []command{
	{noun: "grant", verb: "list", summary: "List grants (Get-ElevatedAccessAuthorization): your requests approved and not yet ended; everyone's with --all (admins); ended ones with --state.",
		examples: "  pamctl grant list\n  pamctl grant list --all\n  pamctl grant list --all --state revoked --state relinquished --json\n",
		flags: func(fs *pflag.FlagSet) action {
			var all bool
			var holder string
			var states []string
			fs.BoolVar(&all, "all", false, "everyone's grants (admins)")
			fs.StringVar(&holder, "requester", "", "someone's grants (admins)")
			enumVar(fs, &states, "state", true, "approved (the default: in force or scheduled), revoked, relinquished or expired (repeat for several)", grantStates...)
			return func(ctx context.Context, c *cli, args []string) error {
				if len(args) > 0 {
					return usagef("grant list takes no arguments")
				}
				if len(states) == 0 {
					states = []string{string(pam.Approved)}
				}
				// States are stored as recorded: an approved grant whose
				// window has passed reads as expired before its expiry
				// is recorded, so approved ones are read for every state.
				recorded := []pam.State{pam.Approved}
				ended := false
				for _, s := range states {
					if s != string(pam.Approved) {
						recorded = append(recorded, pam.State(s))
						ended = true
					}
				}
				rs, err := c.requests(ctx, all, holder, recorded)
				if err != nil {
					return err
				}
				rs = slices.DeleteFunc(rs, func(r pam.Request) bool {
					return r.ApprovedAt.IsZero() || !slices.Contains(states, string(r.State))
				})
				return c.printGrants(ctx, rs, ended)
			}
		}},
}

// printGrants writes grants: a table, or a JSON array of the requests.
// OPENS and ENDS are the window (ENDS as granted, extensions included);
// with ended, ENDED, ENDED BY and COMMENT say when a grant ended early,
// by whom and why (the comment, from the audit trail, for admins).
func (c *cli) printGrants(ctx context.Context, rs []pam.Request, ended bool) error {
	if c.json {
		return c.printJSON(nonNil(rs))
	}
	now := time.Now()
	header := "ID\tHOLDER\tSCOPE\tSTATE\tOPENS\tENDS\tUSES\tEXTENSION\tREASON"
	if ended {
		header += "\tENDED\tENDED BY\tCOMMENT"
	}
	hidden := false
	var rows [][]string
	for _, r := range rs {
		uses := ""
		if r.MaxUses > 0 {
			uses = fmt.Sprintf("%d/%d", r.Uses, r.MaxUses)
		}
		extension := ""
		if r.State == pam.Approved && r.ExtensionPending(now) {
			extension = "+" + r.Extension.By.String() + " asked"
		}
		row := []string{r.ID, pam.DisplayText(r.Requester), pam.DisplayText(r.Scope.String()), string(r.State), stamp(r.ApprovedAt), stamp(r.ExpiresAt), uses, extension, pam.DisplayText(r.Reason)}
		if ended {
			var at, comment string
			if r.State == pam.Revoked || r.State == pam.Relinquished {
				at = stamp(r.ClosedAt)
				var err error
				comment, err = c.closingComment(ctx, r)
				switch {
				case errors.Is(err, pam.ErrForbidden):
					hidden = true
				case err != nil:
					return err
				}
			}
			row = append(row, at, pam.DisplayText(r.ClosedBy), pam.DisplayText(comment))
		}
		rows = append(rows, row)
	}
	if err := c.table(header, rows); err != nil {
		return err
	}
	if hidden {
		fmt.Fprintln(c.errOut, "pamctl: the comments of revocations are in the audit trail, which only admins may search.")
	}
	return nil
}

// closingComment is the comment of the event that ended r early.
func (c *cli) closingComment(ctx context.Context, r pam.Request) (string, error) {
	typ := pam.EventRequestRevoked
	if r.State == pam.Relinquished {
		typ = pam.EventRequestRelinquished
	}
	events, _, err := c.api.Audit(ctx, pam.EventFilter{RequestID: r.ID, Types: []pam.EventType{typ}, Limit: 1})
	if err != nil || len(events) == 0 {
		return "", err
	}
	return events[0].Detail["comment"], nil
}
