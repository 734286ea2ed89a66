// Pamctl manages privileged access from a terminal, in the terms of the
// Purview cmdlets: policies (New-/Get-/Set-/Remove-ElevatedAccessApprovalPolicy),
// requests (New-/Get-/Approve-/Deny-ElevatedAccessRequest, plus revoke,
// cancel, end, which ends one's own grant early, and extend, which asks for
// more time on it; new takes --start to schedule the window), the audit trail, and what-if checks; and policies as code:
// apply -f FILE makes the catalog and the policies what a YAML or JSON
// file says (examples/pam.yaml), showing the plan first.
//
// It talks to a pamhttp server (--url and --token, or PAM_URL and
// PAM_TOKEN), or opens a SQLite file (--sqlite, PAM_SQLITE) or a
// PostgreSQL database (--postgres, PAM_POSTGRES) directly, acting as
// --as (or $USER): whoever can open the database is trusted to say who
// they are. Either way the commands run the same code, on a
// pamhttp.API: a *pamhttp.Client or a *pam.Manager.
//
// Output is a table for people, JSON with --json. Exit codes:
//
//	0 done            4 not found                 7 the audit trail does not verify
//	1 other error     5 conflict or wrong state   8 invalid input
//	2 usage           6 check: not allowed
//	3 not signed in or forbidden
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// command is one noun-verb pair, or a noun alone (apply).
type command struct {
	noun, verb, args, summary, examples string
	// flags defines the command's own flags on fs, and returns the
	// command, which reads them.
	flags func(fs *flag.FlagSet) action
}

// action runs a command with its arguments.
type action func(ctx context.Context, c *cli, args []string) error

// name is the command as typed: "policy new", "apply".
func (c *command) name() string { return strings.TrimSpace(c.noun + " " + c.verb) }

// commands are every command, by noun (in apply.go, catalog.go,
// policy.go, request.go, audit.go and check.go).
var commands = slices.Concat(applyCommands, catalogCommands, policyCommands, requestCommands, breakGlassCommands, auditCommands, checkCommands)

func run(ctx context.Context, args []string, stdout, stderr io.Writer, env func(string) string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "--help" || args[0] == "-h" {
		overview(stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	if args[0] == "check" && (len(args) < 2 || args[1] != "task") {
		args = append([]string{"check", "task"}, args[1:]...) // pamctl check TASK
	}
	i := slices.IndexFunc(commands, func(c command) bool { return c.noun == args[0] && c.verb == "" })
	if i >= 0 {
		args = slices.Insert(args, 1, "") // a noun alone: its arguments follow it
	} else {
		if len(args) < 2 {
			fmt.Fprintf(stderr, "pamctl: %s needs a verb; see pamctl --help\n", args[0])
			return exitUsage
		}
		i = slices.IndexFunc(commands, func(c command) bool { return c.noun == args[0] && c.verb == args[1] })
		if i < 0 {
			fmt.Fprintf(stderr, "pamctl: no command %q; see pamctl --help\n", args[0]+" "+args[1])
			return exitUsage
		}
	}
	cmd := commands[i]
	fs := flag.NewFlagSet("pamctl "+cmd.name(), flag.ContinueOnError)
	fs.SetOutput(stderr)
	var conn connection
	conn.define(fs, env)
	c := &cli{in: os.Stdin, out: stdout}
	fs.BoolVar(&c.json, "json", false, "print JSON")
	act := cmd.flags(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: pamctl %s [flags] %s\n\n%s\n\nExamples:\n%s\nFlags:\n", cmd.name(), cmd.args, cmd.summary, cmd.examples)
		fs.PrintDefaults()
	}
	// Flags may come before or after the arguments.
	var rest []string
	for in := args[2:]; ; {
		if err := fs.Parse(in); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return exitOK
			}
			return exitUsage
		}
		if fs.NArg() == 0 {
			break
		}
		rest = append(rest, fs.Arg(0))
		in = fs.Args()[1:]
	}
	ctx, e, err := conn.open(ctx)
	if err == nil {
		defer e.close()
		c.api, c.me = e.api, e.me
		err = act(ctx, c, rest)
	}
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "pamctl:", err)
	return exitCode(err)
}

// noFlags is the flags of a command that has none of its own.
func noFlags(a action) func(*flag.FlagSet) action {
	return func(*flag.FlagSet) action { return a }
}

func overview(out io.Writer) {
	fmt.Fprint(out, `pamctl manages just-in-time privileged access (github.com/zerostanding/pam).

Usage: pamctl <noun> [<verb>] [flags] [args]     pamctl <noun> [<verb>] --help for each

`)
	for _, c := range commands {
		fmt.Fprintf(out, "  %-16s %-22s %s\n", c.name(), c.args, c.summary)
	}
	fmt.Fprint(out, `
Connect with --url and --token (PAM_URL, PAM_TOKEN) to a pamhttp server, or
open a database directly with --sqlite FILE or --postgres DSN, acting as --as.

Examples:
  pamctl apply -f examples/pam.yaml --dry-run
  pamctl request new --task New-MoveRequest --reason "INC-4711: leaver" --hours 2
  pamctl request list --state pending --json
  pamctl request approve req_06h1... --comment "ticket checked"
  pamctl audit verify --sqlite pam.db --as auditor
  pamctl check New-MoveRequest --param identity=ceo@contoso.com

Exit codes: 0 done, 1 error, 2 usage, 3 forbidden, 4 not found, 5 conflict,
6 check not allowed, 7 audit trail does not verify, 8 invalid input.
`)
}
