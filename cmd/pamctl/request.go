package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/pamhttp"
)

var requestCommands = []command{
	{noun: "request", verb: "new", summary: "Request access (New-ElevatedAccessRequest).",
		examples: "  pamctl request new --task New-MoveRequest --reason \"INC-4711: leaver\" --hours 2\n  pamctl request new --policy drop --reason \"CHG-12\" --ticket CHG-12\n" +
			"  pamctl request new --task New-MoveRequest --reason \"CHG-7: weekend migration\" --start 2026-11-07T22:00:00Z --hours 4\n" +
			"  pamctl request new --task New-MoveRequest --bind identity=ceo@contoso.com --uses 1 --reason \"INC-4711\"\n  pamctl request new --task Set-Quota --bind quota_gb:=50 --reason \"INC-4712\"\n",
		flags: func(fs *pflag.FlagSet) action {
			var task, role, start string
			var n pam.RequestInput
			var h float64
			var binds multi
			fs.StringVar(&task, "task", "", "the task to run")
			fs.StringVar(&role, "role", "", "or a role")
			fs.StringVar(&n.PolicyID, "policy", "", "or a policy ID")
			fs.StringVar(&n.Reason, "reason", "", "why (required)")
			fs.Float64Var(&h, "hours", 0, "how long (default: the policy's)")
			fs.StringVar(&n.Ticket, "ticket", "", "change or incident ticket")
			fs.Var(&binds, "bind", "bind the grant to operations whose parameter NAME is VALUE: NAME=VALUE (a string) or NAME:=JSON (a number, true or false); repeat for several")
			fs.IntVar(&n.MaxUses, "uses", 0, "allow at most this many runs (default: the policy's, or no limit)")
			fs.StringVar(&start, "start", "", "when the window is to open, once approved: an RFC 3339 time, or a duration from now such as 2h (default: at approval)")
			return func(ctx context.Context, c *cli, _ []string) error {
				var err error
				if n.Bind, err = parseBinds(binds); err != nil {
					return err
				}
				if start != "" {
					t, err := startTime(start, time.Now())
					if err != nil {
						return err
					}
					n.Start = t
				}
				switch {
				case task != "":
					n.Scope = pam.TaskScope(task)
				case role != "":
					n.Scope = pam.RoleScope(role)
				case n.PolicyID == "":
					return usagef("give --task, --role or --policy")
				}
				n.Duration = hours(h)
				r, err := c.api.Submit(ctx, n)
				if err != nil {
					return err
				}
				return c.printRequest(r)
			}
		}},
	{noun: "request", verb: "list", summary: "List requests (Get-ElevatedAccessRequest): yours, everyone's with --all (admins), or with --reviewable those waiting for you to decide.",
		examples: "  pamctl request list\n  pamctl request list --reviewable\n  pamctl request list --all --state pending --state approved --json\n",
		flags: func(fs *pflag.FlagSet) action {
			var all, reviewable bool
			var requester string
			var states []string
			fs.BoolVar(&all, "all", false, "everyone's requests (admins)")
			fs.StringVar(&requester, "requester", "", "someone's requests (admins)")
			fs.BoolVar(&reviewable, "reviewable", false, "the requests waiting for you to decide: pending, or with an extension pending, under a policy whose approver you are")
			enumVar(fs, &states, "state", true, "pending, approved, denied, canceled, revoked, relinquished or expired (repeat for several)", requestStates...)
			return func(ctx context.Context, c *cli, args []string) error {
				if len(args) > 0 {
					return usagef("request list takes no arguments")
				}
				if reviewable {
					if all || requester != "" || len(states) > 0 {
						return usagef("--reviewable lists what waits for you; it does not go with --all, --requester or --state")
					}
					rs, err := c.api.Reviewable(ctx)
					if err != nil {
						return err
					}
					return c.printRequests(rs)
				}
				var sts []pam.State
				for _, s := range states {
					sts = append(sts, pam.State(s))
				}
				rs, err := c.requests(ctx, all, requester, sts)
				if err != nil {
					return err
				}
				return c.printRequests(rs)
			}
		}},
	{noun: "request", verb: "get", args: "ID", summary: "Show one request with its decisions.", examples: "  pamctl request get req_06h1... --json\n",
		flags: noFlags(func(ctx context.Context, c *cli, args []string) error {
			id, err := one(args, "request ID")
			if err != nil {
				return err
			}
			r, err := c.api.Request(ctx, id)
			if err != nil {
				return err
			}
			if err := c.printRequest(r); err != nil || c.json {
				return err
			}
			if r.Ticket != "" {
				fmt.Fprintf(c.out, "  ticket: %s\n", pam.DisplayText(r.Ticket))
			}
			if b := r.Bounds(); b != "" {
				fmt.Fprintf(c.out, "  limits: %s\n", pam.DisplayText(b))
			}
			for _, d := range r.Decisions {
				fmt.Fprintf(c.out, "  %s %s at %s: %s\n", pam.DisplayText(d.Approver), d.Verdict, stamp(d.At), pam.DisplayText(d.Comment))
			}
			if r.ClosedBy != "" {
				fmt.Fprintf(c.out, "  %s by %s at %s\n", r.State, pam.DisplayText(r.ClosedBy), stamp(r.ClosedAt))
			}
			return nil
		})},
	decision("approve", "approve", "Approve a request (Approve-ElevatedAccessRequest).", "  pamctl request approve req_06h1... --comment \"ticket checked\"\n"),
	decision("deny", "deny", "Deny a request (Deny-ElevatedAccessRequest).", "  pamctl request deny req_06h1... --comment \"no ticket\"\n"),
	decision("revoke", "revoke", "End an approved request's access now (Revoke-ElevatedAccessAuthorization).", "  pamctl request revoke req_06h1... --comment \"incident over\"\n"),
	decision("end", "relinquish", "End your own approved access now, as its holder (recorded as relinquished).", "  pamctl request end req_06h1... --comment \"done early\"\n"),
	decision("cancel", "cancel", "Withdraw your pending request.", "  pamctl request cancel req_06h1...\n"),
	{noun: "request", verb: "extend", args: "ID", summary: "Ask for more time on your active grant; its approvers decide it as they did the request.",
		examples: "  pamctl request extend req_06h1... --by 2h --reason \"the move is slow\"\n",
		flags: func(fs *pflag.FlagSet) action {
			var by time.Duration
			var reason string
			fs.DurationVar(&by, "by", 0, "how much longer, such as 2h or 30m (required)")
			fs.StringVar(&reason, "reason", "", "why (required)")
			return func(ctx context.Context, c *cli, args []string) error {
				id, err := one(args, "request ID")
				if err != nil {
					return err
				}
				if by <= 0 {
					return usagef("give --by, a positive duration such as 2h")
				}
				r, err := c.api.Extend(ctx, id, by, reason)
				if err != nil {
					return err
				}
				return c.printRequest(r)
			}
		}},
}

// startTime reads --start: an RFC 3339 time, or a Go duration after now.
func startTime(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, usagef("--start %q: give an RFC 3339 time such as 2026-11-07T22:00:00Z, or a duration from now such as 2h", s)
	}
	return now.Add(d), nil
}

// decision is the command verb of an action on a request, named by its
// word in the API (pamhttp.Act).
func decision(verb, word, summary, example string) command {
	return command{noun: "request", verb: verb, args: "ID", summary: summary, examples: example,
		flags: func(fs *pflag.FlagSet) action {
			var comment string
			fs.StringVar(&comment, "comment", "", "comment recorded with the decision")
			return func(ctx context.Context, c *cli, args []string) error {
				id, err := one(args, "request ID")
				if err != nil {
					return err
				}
				r, err := pamhttp.Act(ctx, c.api, id, word, comment)
				if err != nil {
					return err
				}
				return c.printRequest(r)
			}
		}}
}

// printRequest writes one request: a table of one row, or a JSON object.
func (c *cli) printRequest(r pam.Request) error {
	if c.json {
		return c.printJSON(r)
	}
	return c.printRequests([]pam.Request{r})
}

// parseBinds parses --bind flags: NAME=VALUE binds a string, NAME:=JSON
// a number or a boolean.
func parseBinds(binds []string) (map[string]any, error) {
	if len(binds) == 0 {
		return nil, nil
	}
	out := make(map[string]any, len(binds))
	for _, b := range binds {
		name, v, ok := strings.Cut(b, "=")
		var val any = v
		if typed, isJSON := strings.CutSuffix(name, ":"); ok && isJSON {
			name = typed
			if err := json.Unmarshal([]byte(v), &val); err != nil {
				return nil, usagef("--bind %q: the value after := is not JSON: %v", b, err)
			}
		}
		if !ok || name == "" {
			return nil, usagef("--bind %q: want NAME=VALUE or NAME:=JSON", b)
		}
		if _, dup := out[name]; dup {
			return nil, usagef("--bind %q: %s is bound twice", b, name)
		}
		out[name] = val
	}
	return out, nil
}

// requests returns the requests of requester, or the caller's, or with
// all everyone's, in the states given as recorded, oldest first.
func (c *cli) requests(ctx context.Context, all bool, requester string, states []pam.State) ([]pam.Request, error) {
	f := pam.RequestFilter{Requester: requester, States: states, Limit: pam.MaxPageSize}
	switch {
	case all:
		f.Requester = ""
	case requester == "":
		me, err := c.me(ctx)
		if err != nil {
			return nil, err
		}
		f.Requester = me
	}
	var rs []pam.Request
	for {
		page, next, err := c.api.Requests(ctx, f)
		if err != nil {
			return nil, err
		}
		rs = append(rs, page...)
		if next == "" {
			break
		}
		f.After = next
	}
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].CreatedAt.Before(rs[j].CreatedAt) })
	return rs, nil
}

// printRequests writes a table, or a JSON array. DECIDE BY is when a
// pending request expires undecided; OPENS and ENDS are an approved
// request's window; EXTENSION the more time its holder asked for, while
// undecided. Each is blank where it does not apply.
func (c *cli) printRequests(rs []pam.Request) error {
	if c.json {
		return c.printJSON(nonNil(rs))
	}
	now := time.Now()
	var rows [][]string
	for _, r := range rs {
		var decideBy, opens, ends, extension string
		switch r.State {
		case pam.Pending:
			decideBy = stamp(r.PendingUntil)
		case pam.Approved:
			opens, ends = stamp(r.ApprovedAt), stamp(r.ExpiresAt)
			if r.ExtensionPending(now) {
				extension = "+" + r.Extension.By.String() + " asked"
			}
		}
		rows = append(rows, []string{r.ID, pam.DisplayText(r.Requester), pam.DisplayText(r.Scope.String()), string(r.State), r.Duration.String(), decideBy, opens, ends, extension, pam.DisplayText(r.Reason)})
	}
	return c.table("ID\tREQUESTER\tSCOPE\tSTATE\tDURATION\tDECIDE BY\tOPENS\tENDS\tEXTENSION\tREASON", rows)
}

// stamp is t in UTC, to the second; blank for the zero time.
func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
