package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/zerostanding/pam"
)

var policyCommands = []command{
	{noun: "policy", verb: "new", summary: "Create a policy (New-ElevatedAccessApprovalPolicy). Admins only.",
		examples: "  pamctl policy new --id move --task New-MoveRequest --group mailbox-managers --max-hours 8\n  pamctl policy new --id move --task New-MoveRequest --group mailbox-managers --requester-group helpdesk\n  pamctl policy new --file drop-table.json\n",
		flags: func(fs *pflag.FlagSet) action {
			pf := definePolicyFlags(fs)
			return func(ctx context.Context, c *cli, _ []string) error {
				var p pam.Policy
				if err := pf.apply(&p); err != nil {
					return err
				}
				p, err := c.api.CreatePolicy(ctx, p)
				if err != nil {
					return err
				}
				return c.printPolicy(p)
			}
		}},
	{noun: "policy", verb: "list", summary: "List the live policies (Get-ElevatedAccessApprovalPolicy).",
		examples: "  pamctl policy list\n  pamctl policy list --json\n",
		flags: noFlags(func(ctx context.Context, c *cli, _ []string) error {
			ps, err := c.api.Policies(ctx)
			if err != nil {
				return err
			}
			return c.printPolicies(ps)
		})},
	{noun: "policy", verb: "get", args: "ID", summary: "Show one policy.", examples: "  pamctl policy get move --json\n",
		flags: noFlags(func(ctx context.Context, c *cli, args []string) error {
			id, err := one(args, "policy ID")
			if err != nil {
				return err
			}
			p, err := c.api.Policy(ctx, id)
			if err != nil {
				return err
			}
			return c.printPolicy(p)
		})},
	{noun: "policy", verb: "set", args: "ID", summary: "Change a policy (Set-ElevatedAccessApprovalPolicy): only the flags given change. Admins only.",
		examples: "  pamctl policy set move --max-hours 4\n  pamctl policy set drop --group dba:2 --group security\n  pamctl policy set drop --requester-group dba --requester-group sre\n  pamctl policy set drop --requester-group \"\"   # anyone may request\n  pamctl policy set drop --remind-hours 1 --escalate-hours 4 --escalation-group dba-leads\n  pamctl policy set drop --breakglass-group oncall --breakglass-alert-group security --review-hours 8\n",
		flags: func(fs *pflag.FlagSet) action {
			pf := definePolicyFlags(fs)
			return func(ctx context.Context, c *cli, args []string) error {
				id, err := one(args, "policy ID")
				if err != nil {
					return err
				}
				p, err := c.api.Policy(ctx, id)
				if err != nil {
					return err
				}
				if err := pf.apply(&p); err != nil {
					return err
				}
				p.ID = id
				if p, err = c.api.UpdatePolicy(ctx, p); err != nil {
					return err
				}
				return c.printPolicy(p)
			}
		}},
	{noun: "policy", verb: "remove", args: "ID", summary: "Delete a policy (Remove-ElevatedAccessApprovalPolicy). Admins only.",
		examples: "  pamctl policy remove move\n",
		flags: noFlags(func(ctx context.Context, c *cli, args []string) error {
			id, err := one(args, "policy ID")
			if err != nil {
				return err
			}
			if err := c.api.DeletePolicy(ctx, id); err != nil {
				return err
			}
			if c.json {
				return c.printJSON(map[string]string{"deleted": id})
			}
			_, err = fmt.Fprintf(c.out, "policy %s removed\n", id)
			return err
		})},
}

// policyFlags are the flags of policy new and policy set.
type policyFlags struct {
	id, name, task, role, roleGroup, condition, file   string
	approval                                           []string
	groups, requesterGroups, requireBind               multi
	maxHours, defaultHours, remindHours, escalateHours float64
	maxStartHours, maxExtendedHours                    float64
	escalationGroup                                    string
	// Break-glass: bgGroup set (nil: unchanged; "": none), and its
	// settings (0: unchanged).
	bgGroup                             *string
	bgAlertGroup                        string
	bgHours, bgPeriodHours, reviewHours float64
	bgLimit                             int
	maxUses                             *int
}

func definePolicyFlags(fs *pflag.FlagSet) *policyFlags {
	f := &policyFlags{}
	fs.StringVar(&f.id, "id", "", "policy ID (default: generated)")
	fs.StringVar(&f.name, "name", "", "display name")
	fs.StringVar(&f.task, "task", "", "scope: one task")
	fs.StringVar(&f.role, "role", "", "scope: a role of the catalog")
	fs.StringVar(&f.roleGroup, "role-group", "", "scope: a role group of the catalog")
	enumVar(fs, &f.approval, "approval", false, "manual (default) or auto", approvals...)
	fs.Var(&f.groups, "group", "approver group, GROUP or GROUP:MIN (repeat for several)")
	fs.Var(&f.requesterGroups, "requester-group", `group whose members may request under the policy (repeat for several; "" lets anyone request)`)
	fs.Var(&f.requireBind, "require-bind", `operation parameter every request must bind (repeat for several; "" requires none)`)
	fs.Func("max-uses", "most runs one grant allows (1: once; 0: no cap)", func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", v)
		}
		f.maxUses = &n
		return nil
	})
	fs.Float64Var(&f.remindHours, "remind-hours", 0, "remind the approvers of a request still pending after this long, and again each time (-1: never)")
	fs.Float64Var(&f.escalateHours, "escalate-hours", 0, "escalate a request still pending after this long to --escalation-group (-1: never)")
	fs.StringVar(&f.escalationGroup, "escalation-group", "", "the group that may decide a request alone once it escalates")
	fs.Func("breakglass-group", "the group whose members may break glass under the policy (\"\": none)", func(v string) error {
		f.bgGroup = &v
		return nil
	})
	fs.StringVar(&f.bgAlertGroup, "breakglass-alert-group", "", "a group told of every break-glass activation besides the approvers")
	fs.Float64Var(&f.bgHours, "breakglass-hours", 0, "the longest break-glass access (default 1)")
	fs.IntVar(&f.bgLimit, "breakglass-limit", 0, "break-glass activations per actor per period (default 1)")
	fs.Float64Var(&f.bgPeriodHours, "breakglass-period-hours", 0, "the period of --breakglass-limit (default 24)")
	fs.Float64Var(&f.reviewHours, "review-hours", 0, "a break-glass activation's review is due this long after it (default 24)")
	fs.Float64Var(&f.maxHours, "max-hours", 0, "longest access a request may ask for")
	fs.Float64Var(&f.maxStartHours, "max-start-hours", 0, "how far ahead a request may schedule its start (default 720, 30 days)")
	fs.Float64Var(&f.maxExtendedHours, "max-extended-hours", 0, "longest a window may last with its extensions (default: --max-hours)")
	fs.Float64Var(&f.defaultHours, "default-hours", 0, "access when a request names no duration")
	fs.StringVar(&f.condition, "condition", "", "Rego condition over input.op")
	fs.StringVar(&f.file, "file", "", `read the policy from this YAML or JSON file (- for stdin); durations as "8h"`)
	return f
}

// apply changes p by the flags given: the file first, then each flag.
func (f *policyFlags) apply(p *pam.Policy) error {
	if f.file != "" {
		if err := readFile(f.file, os.Stdin, p); err != nil {
			return err
		}
	}
	if f.id != "" {
		p.ID = f.id
	}
	if f.name != "" {
		p.Name = f.name
	}
	switch {
	case f.task != "":
		p.Scope = pam.TaskScope(f.task)
	case f.role != "":
		p.Scope = pam.RoleScope(f.role)
	case f.roleGroup != "":
		p.Scope = pam.RoleGroupScope(f.roleGroup)
	}
	if len(f.approval) > 0 {
		p.Approval = pam.Approval(f.approval[0])
	}
	if p.Approval == "" {
		p.Approval = pam.Manual
	}
	if len(f.groups) > 0 {
		p.ApproverGroups = nil
		for _, g := range f.groups {
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
	if len(f.requesterGroups) > 0 {
		p.RequesterGroups = nil
		for _, g := range f.requesterGroups {
			if g != "" {
				p.RequesterGroups = append(p.RequesterGroups, g)
			}
		}
	}
	if len(f.requireBind) > 0 {
		p.RequireBind = nil
		for _, name := range f.requireBind {
			if name != "" {
				p.RequireBind = append(p.RequireBind, name)
			}
		}
	}
	if f.maxUses != nil {
		p.MaxUses = *f.maxUses
	}
	switch {
	case f.remindHours < 0:
		p.RemindAfter = 0
	case f.remindHours > 0:
		p.RemindAfter = hours(f.remindHours)
	}
	switch {
	case f.escalateHours < 0:
		p.EscalateAfter, p.EscalationGroup = 0, ""
	case f.escalateHours > 0:
		p.EscalateAfter = hours(f.escalateHours)
	}
	if f.escalationGroup != "" {
		p.EscalationGroup = f.escalationGroup
	}
	if err := f.applyBreakGlass(p); err != nil {
		return err
	}
	if f.maxHours != 0 {
		p.MaxDuration = hours(f.maxHours)
	}
	if f.maxStartHours != 0 {
		p.MaxStartDelay = hours(f.maxStartHours)
	}
	if f.maxExtendedHours != 0 {
		p.MaxExtendedDuration = hours(f.maxExtendedHours)
	}
	if f.defaultHours != 0 {
		p.DefaultDuration = hours(f.defaultHours)
	}
	if f.condition != "" {
		p.Condition = f.condition
	}
	return nil
}

// hours is h hours, to the second.
func hours(h float64) time.Duration {
	return time.Duration(h * float64(time.Hour)).Round(time.Second)
}

// printPolicy writes one policy: a table of one row, or a JSON object.
func (c *cli) printPolicy(p pam.Policy) error {
	if c.json {
		return c.printJSON(p)
	}
	return c.printPolicies([]pam.Policy{p})
}

// printPolicies writes a table, or a JSON array.
func (c *cli) printPolicies(ps []pam.Policy) error {
	if c.json {
		return c.printJSON(nonNil(ps))
	}
	var rows [][]string
	for _, p := range ps {
		var gs []string
		for _, g := range p.ApproverGroups {
			gs = append(gs, fmt.Sprintf("%s:%d", g.Group, max(g.MinApprovals, 1)))
		}
		requesters := "anyone"
		if len(p.RequesterGroups) > 0 {
			requesters = strings.Join(p.RequesterGroups, ",")
		}
		rows = append(rows, []string{p.ID, p.Scope.String(), string(p.Approval), strings.Join(gs, ","), requesters, p.MaxDuration.String(), strconv.FormatInt(p.Version, 10), pam.DisplayText(p.Name)})
	}
	return c.table("ID\tSCOPE\tAPPROVAL\tAPPROVERS\tREQUESTERS\tMAX\tVERSION\tNAME", rows)
}

// applyBreakGlass sets the break-glass flags given on p.
func (f *policyFlags) applyBreakGlass(p *pam.Policy) error {
	switch {
	case f.bgGroup != nil && *f.bgGroup == "":
		p.BreakGlass = nil
		return nil
	case f.bgGroup != nil:
		if p.BreakGlass == nil {
			p.BreakGlass = &pam.BreakGlass{}
		} else {
			bg := *p.BreakGlass
			p.BreakGlass = &bg
		}
		p.BreakGlass.Group = *f.bgGroup
	case f.bgAlertGroup != "" || f.bgHours != 0 || f.bgLimit != 0 || f.bgPeriodHours != 0 || f.reviewHours != 0:
		if p.BreakGlass == nil {
			return usagef("the break-glass settings need --breakglass-group")
		}
		bg := *p.BreakGlass
		p.BreakGlass = &bg
	default:
		return nil
	}
	bg := p.BreakGlass
	if f.bgAlertGroup != "" {
		bg.AlertGroup = f.bgAlertGroup
	}
	if f.bgHours != 0 {
		bg.MaxDuration = hours(f.bgHours)
	}
	if f.bgLimit != 0 {
		bg.Limit = f.bgLimit
	}
	if f.bgPeriodHours != 0 {
		bg.Period = hours(f.bgPeriodHours)
	}
	if f.reviewHours != 0 {
		bg.ReviewWithin = hours(f.reviewHours)
	}
	return nil
}
