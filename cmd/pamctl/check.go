package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/pamhttp"
)

var checkCommands = []command{
	{noun: "check", verb: "task", args: "TASK", summary: "What-if: would Guard let you run TASK now, and why. Exit code 6 when not.",
		examples: "  pamctl check task New-MoveRequest --param identity=ceo@contoso.com\n",
		flags: func(fs *pflag.FlagSet) action {
			var params multi
			fs.Var(&params, "param", "operation parameter NAME=VALUE (repeat for several)")
			return func(ctx context.Context, c *cli, args []string) error {
				task, err := one(args, "task")
				if err != nil {
					return err
				}
				op := pam.Op{Task: task, Params: map[string]any{}}
				for _, p := range params {
					k, v, ok := strings.Cut(p, "=")
					if !ok {
						return usagef("--param %q: want NAME=VALUE", p)
					}
					op.Params[k] = v
				}
				res, err := c.api.Check(ctx, op)
				if err != nil {
					return err
				}
				if c.json {
					err = c.printJSON(pamhttp.NewCheckAnswer(res))
				} else {
					_, err = fmt.Fprintf(c.out, "%s: %s\n", task, res.Outcome)
					for _, p := range res.Policies {
						if p.Covered {
							fmt.Fprintf(c.out, "  policy %s: grant %q %s\n", p.PolicyID, p.Grant, p.Missing)
						}
					}
					if res.Err != nil {
						fmt.Fprintln(c.out, " ", res.Err)
					}
				}
				if err == nil && !res.Allowed {
					return fmt.Errorf("%s is %w (%s)", task, errNotAllowed, res.Outcome)
				}
				return err
			}
		}},
}
