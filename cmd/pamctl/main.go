// Pamctl manages privileged access from a terminal, in the terms of the
// Purview cmdlets: policies (New-/Get-/Set-/Remove-ElevatedAccessApprovalPolicy),
// requests (New-/Get-/Approve-/Deny-ElevatedAccessRequest, plus revoke and
// cancel), the audit trail, and what-if checks.
//
// It talks to a pamhttp server (--url and --token, or PAM_URL and
// PAM_TOKEN), or opens a SQLite file (--sqlite, PAM_SQLITE) or a
// PostgreSQL database (--postgres, PAM_POSTGRES) directly, acting as
// --as (or $USER): whoever can open the database is trusted to say who
// they are.
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
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/pamhttp"
	"github.com/zerostanding/pam/store/postgres"
	"github.com/zerostanding/pam/store/sqlite"
)

// Exit codes scripts can rely on.
const (
	exitOK = iota
	exitError
	exitUsage
	exitForbidden
	exitNotFound
	exitConflict
	exitNotAllowed
	exitTampered
	exitInvalid
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// command is one noun-verb pair.
type command struct {
	noun, verb, args, summary, examples string
	flags                               func(fs *flag.FlagSet, o *opts)
	run                                 func(ctx context.Context, b backend, o *opts, args []string, out io.Writer) error
}

// opts are every command's flags.
type opts struct {
	url, token, sqlite, postgres, as string
	json                             bool

	id, name, task, role, roleGroup, approval, condition, file string
	groups                                                     multi
	maxHours, defaultHours, hours                              float64
	policyID, reason, ticket, comment                          string
	all                                                        bool
	requester                                                  string
	states, types, params                                      multi
	actor, outcome, requestID, since, until                    string
	limit                                                      int
	desc                                                       bool
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

// usageError is a mistake on the command line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

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
	if len(args) < 2 {
		fmt.Fprintf(stderr, "pamctl: %s needs a verb; see pamctl --help\n", args[0])
		return exitUsage
	}
	var cmd *command
	for i := range commands {
		if commands[i].noun == args[0] && commands[i].verb == args[1] {
			cmd = &commands[i]
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "pamctl: no command %q; see pamctl --help\n", args[0]+" "+args[1])
		return exitUsage
	}
	o := &opts{}
	fs := flag.NewFlagSet("pamctl "+cmd.noun+" "+cmd.verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.url, "url", env("PAM_URL"), "pamhttp server, e.g. https://pam.example.com/pam ($PAM_URL)")
	fs.StringVar(&o.token, "token", env("PAM_TOKEN"), "bearer token for the server ($PAM_TOKEN)")
	fs.StringVar(&o.sqlite, "sqlite", env("PAM_SQLITE"), "open this SQLite file directly ($PAM_SQLITE)")
	fs.StringVar(&o.postgres, "postgres", env("PAM_POSTGRES"), "open this PostgreSQL database directly ($PAM_POSTGRES)")
	fs.StringVar(&o.as, "as", env("USER"), "identity to act as when opening a database directly")
	fs.BoolVar(&o.json, "json", false, "print JSON")
	if cmd.flags != nil {
		cmd.flags(fs, o)
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: pamctl %s %s [flags] %s\n\n%s\n\nExamples:\n%s\nFlags:\n", cmd.noun, cmd.verb, cmd.args, cmd.summary, cmd.examples)
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
	b, err := open(ctx, o)
	if err == nil {
		defer b.Close()
		if o.sqlite != "" || o.postgres != "" {
			ctx = pam.WithActor(ctx, o.as)
		}
		err = cmd.run(ctx, b, o, rest, stdout)
	}
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "pamctl:", err)
	var ue *usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitCode(err)
}

// exitCode maps an engine error or a server's problem to an exit code.
func exitCode(err error) int {
	var ae *apiError
	if errors.As(err, &ae) {
		switch ae.p.Code {
		case "no_actor", "forbidden", "self_approval", "not_approved", "cross_origin":
			return exitForbidden
		case "not_found":
			return exitNotFound
		case "conflict", "wrong_state", "already_decided", "ambiguous":
			return exitConflict
		case "invalid", "duration_too_long", "rejected", "no_policy", "too_large":
			return exitInvalid
		case "tampered":
			return exitTampered
		}
		return exitError
	}
	for _, m := range []struct {
		err  error
		code int
	}{
		{pam.ErrNoActor, exitForbidden}, {pam.ErrForbidden, exitForbidden}, {pam.ErrNotApproved, exitForbidden},
		{pam.ErrNotFound, exitNotFound},
		{pam.ErrConflict, exitConflict}, {pam.ErrExists, exitConflict}, {pam.ErrWrongState, exitConflict}, {pam.ErrAlreadyDecided, exitConflict}, {pam.ErrAmbiguous, exitConflict},
		{pam.ErrInvalid, exitInvalid}, {pam.ErrDurationTooLong, exitInvalid}, {pam.ErrRejected, exitInvalid}, {pam.ErrNoPolicy, exitInvalid},
		{pam.ErrTampered, exitTampered}, {errNotAllowed, exitNotAllowed},
	} {
		if errors.Is(err, m.err) {
			return m.code
		}
	}
	return exitError
}

var errNotAllowed = errors.New("not allowed")

func open(ctx context.Context, o *opts) (backend, error) {
	n := 0
	for _, s := range []string{o.url, o.sqlite, o.postgres} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return nil, usagef("give exactly one of --url, --sqlite or --postgres (or PAM_URL, PAM_SQLITE, PAM_POSTGRES)")
	}
	if o.url != "" {
		return &remote{base: o.url, token: o.token, client: &http.Client{Timeout: time.Minute}}, nil
	}
	var store pam.Store
	var closeStore func() error
	if o.sqlite != "" {
		s, err := sqlite.Open(ctx, o.sqlite)
		if err != nil {
			return nil, err
		}
		store, closeStore = s, s.Close
	} else {
		s, err := postgres.Open(ctx, o.postgres, nil)
		if err != nil {
			return nil, err
		}
		store, closeStore = s, s.Close
	}
	// Membership lives with the host; opened directly, the admin group
	// is taken to be the acting user's own choice to make.
	dir, _ := pam.NewStaticDirectory(map[string][]string{"pamctl-admins": {o.as}})
	m, err := pam.New(store, directAdmins{dir}, &pam.Options{AdminGroup: "pamctl-admins"})
	if err != nil {
		closeStore()
		return nil, err
	}
	return &local{m: m, close: closeStore}, nil
}

// directAdmins makes the acting user an admin and a member of every
// group: with the database in hand, nothing stops them anyway.
type directAdmins struct{ pam.Directory }

func (directAdmins) IsMember(context.Context, string, string) (bool, error) { return true, nil }

func parseHours(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%w: duration %q", pam.ErrInvalid, s)
	}
	return d, nil
}

func hoursFlag(h float64) string {
	if h == 0 {
		return ""
	}
	return (time.Duration(h * float64(time.Hour))).Round(time.Second).String()
}

func printJSON(out io.Writer, v any) error {
	e := json.NewEncoder(out)
	e.SetIndent("", "  ")
	return e.Encode(v)
}

func table(out io.Writer, header string, rows [][]string) error {
	w := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, header)
	for _, r := range rows {
		fmt.Fprintln(w, strings.Join(r, "\t"))
	}
	return w.Flush()
}

func one(args []string, what string) (string, error) {
	if len(args) != 1 {
		return "", usagef("give one %s", what)
	}
	return args[0], nil
}

func overview(out io.Writer) {
	fmt.Fprint(out, `pamctl manages just-in-time privileged access (github.com/zerostanding/pam).

Usage: pamctl <noun> <verb> [flags] [args]     pamctl <noun> <verb> --help for each

`)
	for _, c := range commands {
		fmt.Fprintf(out, "  %-16s %-22s %s\n", c.noun+" "+c.verb, c.args, c.summary)
	}
	fmt.Fprint(out, `
Connect with --url and --token (PAM_URL, PAM_TOKEN) to a pamhttp server, or
open a database directly with --sqlite FILE or --postgres DSN, acting as --as.

Examples:
  pamctl request new --task New-MoveRequest --reason "INC-4711: leaver" --hours 2
  pamctl request list --state pending --json
  pamctl request approve req_06h1... --comment "ticket checked"
  pamctl audit verify --sqlite pam.db --as auditor
  pamctl check New-MoveRequest --param identity=ceo@contoso.com

Exit codes: 0 done, 1 error, 2 usage, 3 forbidden, 4 not found, 5 conflict,
6 check not allowed, 7 audit trail does not verify, 8 invalid input.
`)
}

func policyFlags(fs *flag.FlagSet, o *opts) {
	fs.StringVar(&o.id, "id", "", "policy ID (default: generated)")
	fs.StringVar(&o.name, "name", "", "display name")
	fs.StringVar(&o.task, "task", "", "scope: one task")
	fs.StringVar(&o.role, "role", "", "scope: a role of the catalog")
	fs.StringVar(&o.roleGroup, "role-group", "", "scope: a role group of the catalog")
	fs.StringVar(&o.approval, "approval", "", "manual (default) or auto")
	fs.Var(&o.groups, "group", "approver group, GROUP or GROUP:MIN (repeat for several)")
	fs.Float64Var(&o.maxHours, "max-hours", 0, "longest access a request may ask for")
	fs.Float64Var(&o.defaultHours, "default-hours", 0, "access when a request names no duration")
	fs.StringVar(&o.condition, "condition", "", "Rego condition over input.op")
	fs.StringVar(&o.file, "file", "", "read the policy as JSON from this file (- for stdin)")
}

// applyPolicyFlags changes p by the flags given.
func applyPolicyFlags(p *pam.Policy, o *opts) error {
	if o.file != "" {
		var b []byte
		var err error
		if o.file == "-" {
			b, err = io.ReadAll(os.Stdin)
		} else {
			b, err = os.ReadFile(o.file)
		}
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, p); err != nil {
			return fmt.Errorf("%w: %s: %v", pam.ErrInvalid, o.file, err)
		}
	}
	if o.id != "" {
		p.ID = o.id
	}
	if o.name != "" {
		p.Name = o.name
	}
	switch {
	case o.task != "":
		p.Scope = pam.TaskScope(o.task)
	case o.role != "":
		p.Scope = pam.RoleScope(o.role)
	case o.roleGroup != "":
		p.Scope = pam.Scope{Kind: pam.KindRoleGroup, Name: o.roleGroup}
	}
	if o.approval != "" {
		p.Approval = pam.Approval(o.approval)
	}
	if p.Approval == "" {
		p.Approval = pam.Manual
	}
	if len(o.groups) > 0 {
		p.ApproverGroups = nil
		for _, g := range o.groups {
			name, min, _ := strings.Cut(g, ":")
			ag := pam.ApproverGroup{Group: name}
			if min != "" {
				n, err := strconv.Atoi(min)
				if err != nil {
					return usagef("--group %q: the minimum after : is a number", g)
				}
				ag.MinApprovals = n
			}
			p.ApproverGroups = append(p.ApproverGroups, ag)
		}
	}
	if o.maxHours != 0 {
		p.MaxDuration = time.Duration(o.maxHours * float64(time.Hour))
	}
	if o.defaultHours != 0 {
		p.DefaultDuration = time.Duration(o.defaultHours * float64(time.Hour))
	}
	if o.condition != "" {
		p.Condition = o.condition
	}
	return nil
}

func printPolicies(out io.Writer, o *opts, ps ...pam.Policy) error {
	if o.json {
		if len(ps) == 1 {
			return printJSON(out, ps[0])
		}
		return printJSON(out, ps)
	}
	var rows [][]string
	for _, p := range ps {
		var gs []string
		for _, g := range p.ApproverGroups {
			gs = append(gs, fmt.Sprintf("%s:%d", g.Group, max(g.MinApprovals, 1)))
		}
		rows = append(rows, []string{p.ID, p.Scope.String(), string(p.Approval), strings.Join(gs, ","), p.MaxDuration.String(), strconv.FormatInt(p.Version, 10), p.Name})
	}
	return table(out, "ID\tSCOPE\tAPPROVAL\tAPPROVERS\tMAX\tVERSION\tNAME", rows)
}

func printRequests(out io.Writer, o *opts, rs ...pam.Request) error {
	if o.json {
		if len(rs) == 1 {
			return printJSON(out, rs[0])
		}
		return printJSON(out, rs)
	}
	var rows [][]string
	for _, r := range rs {
		until := ""
		switch r.State {
		case pam.Pending:
			until = r.PendingUntil.UTC().Format(time.RFC3339)
		case pam.Approved:
			until = r.ExpiresAt.UTC().Format(time.RFC3339)
		}
		rows = append(rows, []string{r.ID, r.Requester, r.Scope.String(), string(r.State), r.Duration.String(), until, r.Reason})
	}
	return table(out, "ID\tREQUESTER\tSCOPE\tSTATE\tDURATION\tUNTIL\tREASON", rows)
}

var commands = []command{
	{noun: "policy", verb: "new", summary: "Create a policy (New-ElevatedAccessApprovalPolicy). Admins only.",
		examples: "  pamctl policy new --id move --task New-MoveRequest --group mailbox-managers --max-hours 8\n  pamctl policy new --file drop-table.json\n",
		flags:    policyFlags,
		run: func(ctx context.Context, b backend, o *opts, args []string, out io.Writer) error {
			var p pam.Policy
			if err := applyPolicyFlags(&p, o); err != nil {
				return err
			}
			p, err := b.CreatePolicy(ctx, p)
			if err != nil {
				return err
			}
			return printPolicies(out, o, p)
		}},
	{noun: "policy", verb: "list", summary: "List the live policies (Get-ElevatedAccessApprovalPolicy).",
		examples: "  pamctl policy list\n  pamctl policy list --json\n",
		run: func(ctx context.Context, b backend, o *opts, _ []string, out io.Writer) error {
			ps, err := b.Policies(ctx)
			if err != nil {
				return err
			}
			return printPolicies(out, o, ps...)
		}},
	{noun: "policy", verb: "get", args: "ID", summary: "Show one policy.", examples: "  pamctl policy get move --json\n",
		run: func(ctx context.Context, b backend, o *opts, args []string, out io.Writer) error {
			id, err := one(args, "policy ID")
			if err != nil {
				return err
			}
			p, err := b.Policy(ctx, id)
			if err != nil {
				return err
			}
			return printPolicies(out, o, p)
		}},
	{noun: "policy", verb: "set", args: "ID", summary: "Change a policy (Set-ElevatedAccessApprovalPolicy): only the flags given change. Admins only.",
		examples: "  pamctl policy set move --max-hours 4\n  pamctl policy set drop --group dba:2 --group security\n",
		flags:    policyFlags,
		run: func(ctx context.Context, b backend, o *opts, args []string, out io.Writer) error {
			id, err := one(args, "policy ID")
			if err != nil {
				return err
			}
			p, err := b.Policy(ctx, id)
			if err != nil {
				return err
			}
			if err := applyPolicyFlags(&p, o); err != nil {
				return err
			}
			p.ID = id
			if p, err = b.UpdatePolicy(ctx, p); err != nil {
				return err
			}
			return printPolicies(out, o, p)
		}},
	{noun: "policy", verb: "remove", args: "ID", summary: "Delete a policy (Remove-ElevatedAccessApprovalPolicy). Admins only.",
		examples: "  pamctl policy remove move\n",
		run: func(ctx context.Context, b backend, o *opts, args []string, out io.Writer) error {
			id, err := one(args, "policy ID")
			if err != nil {
				return err
			}
			if err := b.DeletePolicy(ctx, id); err != nil {
				return err
			}
			if o.json {
				return printJSON(out, map[string]string{"deleted": id})
			}
			_, err = fmt.Fprintf(out, "policy %s removed\n", id)
			return err
		}},
	{noun: "request", verb: "new", summary: "Request access (New-ElevatedAccessRequest).",
		examples: "  pamctl request new --task New-MoveRequest --reason \"INC-4711: leaver\" --hours 2\n  pamctl request new --policy drop --reason \"CHG-12\" --ticket CHG-12\n",
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.StringVar(&o.task, "task", "", "the task to run")
			fs.StringVar(&o.role, "role", "", "or a role")
			fs.StringVar(&o.policyID, "policy", "", "or a policy ID")
			fs.StringVar(&o.reason, "reason", "", "why (required)")
			fs.Float64Var(&o.hours, "hours", 0, "how long (default: the policy's)")
			fs.StringVar(&o.ticket, "ticket", "", "change or incident ticket")
		},
		run: func(ctx context.Context, b backend, o *opts, _ []string, out io.Writer) error {
			s := pamhttp.SubmitRequest{Task: o.task, RequestInput: pam.RequestInput{PolicyID: o.policyID, Reason: o.reason, Ticket: o.ticket, Duration: time.Duration(o.hours * float64(time.Hour)).Round(time.Second)}}
			if o.role != "" {
				s.Scope = pam.RoleScope(o.role)
			}
			if s.Task == "" && s.Scope == (pam.Scope{}) && s.PolicyID == "" {
				return usagef("give --task, --role or --policy")
			}
			r, err := b.Submit(ctx, s)
			if err != nil {
				return err
			}
			return printRequests(out, o, r)
		}},
	{noun: "request", verb: "list", summary: "List requests (Get-ElevatedAccessRequest): yours, or with --all everyone's (admins).",
		examples: "  pamctl request list\n  pamctl request list --all --state pending --state approved --json\n",
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.BoolVar(&o.all, "all", false, "everyone's requests (admins)")
			fs.StringVar(&o.requester, "requester", "", "someone's requests (admins)")
			fs.Var(&o.states, "state", "pending, approved, denied, canceled, revoked or expired (repeat for several)")
		},
		run: func(ctx context.Context, b backend, o *opts, _ []string, out io.Writer) error {
			who := o.requester
			if o.all {
				who = "all"
			}
			rs, err := b.Requests(ctx, who, o.states)
			if err != nil {
				return err
			}
			sort.SliceStable(rs, func(i, j int) bool { return rs[i].CreatedAt.Before(rs[j].CreatedAt) })
			return printRequests(out, o, rs...)
		}},
	{noun: "request", verb: "get", args: "ID", summary: "Show one request with its decisions.", examples: "  pamctl request get req_06h1... --json\n",
		run: func(ctx context.Context, b backend, o *opts, args []string, out io.Writer) error {
			id, err := one(args, "request ID")
			if err != nil {
				return err
			}
			r, err := b.Request(ctx, id)
			if err != nil {
				return err
			}
			if err := printRequests(out, o, r); err != nil || o.json {
				return err
			}
			for _, d := range r.Decisions {
				fmt.Fprintf(out, "  %s %s at %s: %s\n", d.Approver, d.Verdict, d.At.UTC().Format(time.RFC3339), d.Comment)
			}
			return nil
		}},
}

func init() {
	for _, a := range []struct{ verb, summary, example string }{
		{"approve", "Approve a request (Approve-ElevatedAccessRequest).", "  pamctl request approve req_06h1... --comment \"ticket checked\"\n"},
		{"deny", "Deny a request (Deny-ElevatedAccessRequest).", "  pamctl request deny req_06h1... --comment \"no ticket\"\n"},
		{"revoke", "End an approved request's access now.", "  pamctl request revoke req_06h1... --comment \"done early\"\n"},
		{"cancel", "Withdraw your pending request.", "  pamctl request cancel req_06h1...\n"},
	} {
		verb := a.verb
		commands = append(commands, command{noun: "request", verb: verb, args: "ID", summary: a.summary, examples: a.example,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&o.comment, "comment", "", "comment recorded with the decision")
			},
			run: func(ctx context.Context, b backend, o *opts, args []string, out io.Writer) error {
				id, err := one(args, "request ID")
				if err != nil {
					return err
				}
				r, err := b.Act(ctx, id, verb, o.comment)
				if err != nil {
					return err
				}
				return printRequests(out, o, r)
			}})
	}
	commands = append(commands,
		command{noun: "audit", verb: "search", summary: "Search the audit trail, newest first with --desc. Admins only.",
			examples: "  pamctl audit search --actor alice --since 2026-11-01T00:00:00Z\n  pamctl audit search --type policy.updated --desc --limit 20 --json\n",
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&o.actor, "actor", "", "who")
				fs.StringVar(&o.task, "task", "", "which task")
				fs.Var(&o.types, "type", "event type (repeat for several)")
				fs.StringVar(&o.requestID, "request", "", "request ID")
				fs.StringVar(&o.policyID, "policy", "", "policy ID")
				fs.StringVar(&o.outcome, "outcome", "", "outcome")
				fs.StringVar(&o.since, "since", "", "from this RFC 3339 time")
				fs.StringVar(&o.until, "until", "", "before this RFC 3339 time")
				fs.IntVar(&o.limit, "limit", 100, "at most this many events")
				fs.BoolVar(&o.desc, "desc", false, "newest first")
			},
			run: func(ctx context.Context, b backend, o *opts, _ []string, out io.Writer) error {
				q := url.Values{}
				for k, v := range map[string]string{"actor": o.actor, "task": o.task, "request_id": o.requestID, "policy_id": o.policyID,
					"outcome": o.outcome, "since": o.since, "until": o.until, "limit": strconv.Itoa(o.limit)} {
					if v != "" {
						q.Set(k, v)
					}
				}
				q["type"] = o.types
				if o.desc {
					q.Set("order", "desc")
				}
				events, err := b.Audit(ctx, q)
				if err != nil {
					return err
				}
				if o.json {
					return printJSON(out, events)
				}
				var rows [][]string
				for _, e := range events {
					rows = append(rows, []string{strconv.FormatInt(e.Seq, 10), e.Time.UTC().Format(time.RFC3339), string(e.Type), e.Actor, e.Task, string(e.Outcome), e.RequestID})
				}
				return table(out, "SEQ\tTIME\tTYPE\tACTOR\tTASK\tOUTCOME\tREQUEST", rows)
			}},
		command{noun: "audit", verb: "verify", summary: "Check the audit trail's hash chain. Exit code 7 when it does not verify. Admins only.",
			examples: "  pamctl audit verify\n  pamctl audit verify --sqlite pam.db --json\n",
			run: func(ctx context.Context, b backend, o *opts, _ []string, out io.Writer) error {
				a, err := b.Verify(ctx)
				if err != nil {
					return err
				}
				if o.json {
					err = printJSON(out, a)
				} else if a.OK {
					_, err = fmt.Fprintf(out, "the trail verifies: events %d..%d, head %s\n", a.Result.From, a.Result.To, a.Result.Head)
				} else {
					_, err = fmt.Fprintf(out, "the trail does NOT verify at event %d: %s: %s\n", a.Failure.Seq, a.Failure.Reason, a.Failure.Detail)
				}
				if err == nil && !a.OK {
					return fmt.Errorf("%w at event %d", pam.ErrTampered, a.Failure.Seq)
				}
				return err
			}},
		command{noun: "check", verb: "task", args: "TASK", summary: "What-if: would Guard let you run TASK now, and why. Exit code 6 when not.",
			examples: "  pamctl check task New-MoveRequest --param identity=ceo@contoso.com\n",
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.Var(&o.params, "param", "operation parameter NAME=VALUE (repeat for several)")
			},
			run: func(ctx context.Context, b backend, o *opts, args []string, out io.Writer) error {
				task, err := one(args, "task")
				if err != nil {
					return err
				}
				params := map[string]any{}
				for _, p := range o.params {
					k, v, ok := strings.Cut(p, "=")
					if !ok {
						return usagef("--param %q: want NAME=VALUE", p)
					}
					params[k] = v
				}
				a, err := b.Check(ctx, task, params)
				if err != nil {
					return err
				}
				if o.json {
					err = printJSON(out, a)
				} else {
					_, err = fmt.Fprintf(out, "%s: %s\n", task, a.Outcome)
					for _, p := range a.Policies {
						if p.Covered {
							fmt.Fprintf(out, "  policy %s: grant %q %s\n", p.PolicyID, p.Grant, p.Missing)
						}
					}
					if a.Error != "" {
						fmt.Fprintln(out, " ", a.Error)
					}
				}
				if err == nil && !a.Allowed {
					return fmt.Errorf("%s is %w (%s)", task, errNotAllowed, a.Outcome)
				}
				return err
			}},
	)
}
