// Pamctl manages privileged access from a terminal, in the terms of the
// Purview cmdlets: policies (New-/Get-/Set-/Remove-ElevatedAccessApprovalPolicy),
// requests (New-/Get-/Approve-/Deny-ElevatedAccessRequest, plus revoke,
// cancel, end, which ends one's own grant early, and extend, which asks
// for more time on it; new takes --start to schedule the window), what
// waits for the caller to decide (request list --reviewable), the grants
// in force (grant list, as Get-ElevatedAccessAuthorization), the audit
// trail, and what-if checks; and policies as code: apply -f FILE makes
// the catalog and the policies what a YAML or JSON file says
// (examples/pam.yaml), showing the plan first.
//
// Flags are GNU-style (--flag value, --flag=value, -f for --file), as in
// kubectl and gh; pamctl --version prints the build's module version and
// VCS revision, and pamctl completion bash|zsh|fish prints a shell
// completion script, which completes the values of enum flags such as
// --state and --type too.
//
// # Connecting
//
// It talks to a pamhttp server (--url and --token, or $PAM_URL and
// $PAM_TOKEN), or opens a SQLite file (--sqlite, $PAM_SQLITE) or a
// PostgreSQL database (--postgres, $PAM_POSTGRES) directly. Either way
// the commands run the same code, on a pamhttp.API: a *pamhttp.Client or
// a *pam.Manager. Defaults from the environment are read after the flags
// are parsed, so that no help or usage message prints a token, or a URL
// or DSN with a password.
//
// Opened directly, there is no server to sign the caller in: pamctl acts
// as the identity --as names, which must be given, and is trusted, since
// whoever can open the database can write it anyway. Every event it
// writes records the operating-system user and host it ran as, in the
// event's detail (actor.os_user, actor.host; see pam.WithActorDetail).
// A --sqlite file that does not exist is refused, so that a typo does not
// make a new, empty database; --create makes one.
//
// # Output
//
// Listings and get commands print a table for people, and with --json the
// JSON the API answers with (the field names of pam.Request, pam.Policy,
// pam.Event), for scripts. Each table column means one thing, and is blank
// where it does not apply: DECIDE BY is when a pending request expires
// undecided, OPENS and ENDS the window of an approved one.
//
// # Exit codes
//
//	0  done
//	1  other error
//	2  usage: a wrong command, flag or argument
//	3  forbidden: signed in, but not allowed to do this (HTTP 403)
//	4  not found (a request, a policy, a --sqlite file)
//	5  conflict, or the request is in the wrong state for this
//	6  check: the operation is not allowed now
//	7  the audit trail does not verify
//	8  invalid input: a value the command or the engine refuses
//	9  not signed in: no or a bad token (HTTP 401), or no --as opening a database directly
//	10 cannot reach the server at --url
//
// The table is exitCodes in exit.go; pamctl help exit-codes prints it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// command is one noun-verb pair, or a noun alone (apply).
type command struct {
	noun, verb, args, summary, examples string
	// flags defines the command's own flags on fs, and returns the
	// command, which reads them.
	flags func(fs *pflag.FlagSet) action
}

// action runs a command with its arguments.
type action func(ctx context.Context, c *cli, args []string) error

// name is the command as typed: "policy new", "apply".
func (c *command) name() string { return strings.TrimSpace(c.noun + " " + c.verb) }

// commands are every command, by noun (in apply.go, catalog.go,
// policy.go, request.go, grant.go, audit.go and check.go).
var commands = slices.Concat(applyCommands, catalogCommands, policyCommands, requestCommands, grantCommands, breakGlassCommands, auditCommands, checkCommands)

// nouns describes each noun that has verbs, for its help.
var nouns = map[string]string{
	"catalog": "The catalog: roles, role groups, task declarations and data.",
	"policy":  "Privileged access policies (the *-ElevatedAccessApprovalPolicy cmdlets).",
	"request": "Access requests (the *-ElevatedAccessRequest cmdlets).",
	"grant":   "Grants: approved requests, in force or ended (Get-ElevatedAccessAuthorization).",
	"review":  "Reviews of break-glass activations.",
	"audit":   "The audit trail: search it, verify its hash chain.",
	"check":   "What-if checks: would Guard let you run a task now.",
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, env func(string) string) int {
	if len(args) > 0 && args[0] == "check" && (len(args) < 2 || args[1] != "task" && !strings.HasPrefix(args[1], "-")) {
		args = append([]string{"check", "task"}, args[1:]...) // pamctl check TASK
	}
	var conn connection
	c := &cli{in: os.Stdin, out: stdout, errOut: stderr}
	ran := false // a command's action started: errors from here on are not cobra's
	root := newRoot(&conn, c, env, &ran)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	if !ran && !errors.Is(err, errNoCommand) && exitCode(err) != exitInvalid {
		err = &usageError{err.Error()} // an unknown command or flag, a missing argument
	}
	err = explain(err, &conn)
	if !errors.Is(err, errNoCommand) {
		fmt.Fprintln(stderr, "pamctl:", sentence(err.Error()))
	}
	return exitCode(err)
}

// errNoCommand: pamctl was run with no command; the help says the rest.
var errNoCommand = &usageError{"no command"}

// newRoot returns the command tree: the root, a command per noun, and a
// leaf per command, whose actions run on c once conn is open.
func newRoot(conn *connection, c *cli, env func(string) string, ran *bool) *cobra.Command {
	root := &cobra.Command{
		Use:   "pamctl",
		Short: "pamctl manages just-in-time privileged access (github.com/zerostanding/pam).",
		Long: `pamctl manages just-in-time privileged access (github.com/zerostanding/pam).

Connect with --url and --token ($PAM_URL, $PAM_TOKEN) to a pamhttp server,
or open a database directly with --sqlite FILE or --postgres DSN
($PAM_SQLITE, $PAM_POSTGRES), acting as --as NAME: there, --as is required
and trusted, since whoever can open the database can write it; each event
records the OS user and host pamctl ran as. A --sqlite file that does not
exist is refused unless --create is given.

` + exitCodesHelp(),
		Example: `  pamctl apply -f examples/pam.yaml --dry-run
  pamctl request new --task New-MoveRequest --reason "INC-4711: leaver" --hours 2
  pamctl request list --reviewable
  pamctl request approve req_06h1... --comment "ticket checked"
  pamctl grant list --all
  pamctl audit search --since 24h --type request.approved
  pamctl audit verify --sqlite pam.db --as auditor
  pamctl check New-MoveRequest --param identity=ceo@contoso.com`,
		Version:       version(),
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SetOut(cmd.ErrOrStderr())
			cmd.Help()
			return errNoCommand
		},
	}
	root.SetVersionTemplate("pamctl {{.Version}}\n")
	root.SetFlagErrorFunc(flagError)
	conn.define(root.PersistentFlags(), env)
	root.PersistentFlags().BoolVar(&c.json, "json", false, "print JSON, with the API's field names")

	parents := map[string]*cobra.Command{}
	for _, cmd := range commands {
		parent := root
		if cmd.verb != "" {
			parent = parents[cmd.noun]
			if parent == nil {
				parent = nounCommand(cmd.noun)
				parents[cmd.noun] = parent
				root.AddCommand(parent)
			}
		}
		parent.AddCommand(leaf(cmd, conn, c, ran))
	}
	root.AddCommand(&cobra.Command{
		Use:   "exit-codes",
		Short: "The exit codes pamctl returns, for scripts.",
		Long:  exitCodesHelp(),
	})
	return root
}

// nounCommand is the command of a noun: it only holds its verbs.
func nounCommand(noun string) *cobra.Command {
	return &cobra.Command{
		Use:   noun,
		Short: nouns[noun],
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("%s needs a verb; see pamctl %s --help", noun, noun)
			}
			return usagef("there is no command %q; see pamctl %s --help", noun+" "+args[0], noun)
		},
	}
}

// leaf is the cobra command of cmd.
func leaf(cmd command, conn *connection, c *cli, ran *bool) *cobra.Command {
	use := cmd.verb
	if use == "" {
		use = cmd.noun
	}
	if cmd.args != "" {
		use += " " + cmd.args
	}
	cc := &cobra.Command{
		Use:     use,
		Short:   cmd.summary,
		Example: strings.TrimRight(cmd.examples, "\n"),
	}
	act := cmd.flags(cc.Flags())
	cc.Flags().VisitAll(func(f *pflag.Flag) {
		if e, ok := f.Value.(*enum); ok {
			cc.RegisterFlagCompletionFunc(f.Name, func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
				return e.allowed, cobra.ShellCompDirectiveNoFileComp
			})
		}
	})
	cc.RunE = func(cmd *cobra.Command, args []string) error {
		*ran = true
		ctx, e, err := conn.open(cmd.Context())
		if err != nil {
			return err
		}
		defer e.close()
		c.api, c.me = e.api, e.me
		return act(ctx, c, args)
	}
	return cc
}

// flagError is the error of a flag that does not parse: a value an enum
// flag refuses is invalid input (its own sentence), anything else usage.
func flagError(_ *cobra.Command, err error) error {
	var iv *pflag.InvalidValueError
	if errors.As(err, &iv) && exitCode(iv.Unwrap()) == exitInvalid {
		return iv.Unwrap()
	}
	return &usageError{err.Error()}
}

// noFlags is the flags of a command that has none of its own.
func noFlags(a action) func(*pflag.FlagSet) action {
	return func(*pflag.FlagSet) action { return a }
}

// version is the module version pamctl was built from, "(devel)" when
// unknown, and the VCS revision when the build recorded one.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(devel)"
	}
	return versionOf(bi)
}

func versionOf(bi *debug.BuildInfo) string {
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = ", modified"
			}
		}
	}
	if rev != "" {
		v += " (revision " + rev + modified + ")"
	}
	return v
}

// sentence makes msg a sentence, ended by a full stop; the engine's
// texts are lower case by convention, and stay so.
func sentence(msg string) string {
	msg = strings.TrimPrefix(strings.TrimSpace(msg), "pam: ") // pamctl: says whose it is
	if msg == "" || strings.HasSuffix(msg, ".") || strings.HasSuffix(msg, "?") || strings.HasSuffix(msg, "!") || strings.Contains(msg, "\n") {
		return msg
	}
	return msg + "."
}
