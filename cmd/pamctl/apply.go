package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/zerostanding/pam"
)

var applyCommands = []command{
	{noun: "apply", args: "-f FILE", summary: "Make the catalog and the policies what FILE (YAML or JSON) says, showing the plan. Admins only.",
		examples: "  pamctl apply -f examples/pam.yaml --dry-run   # the plan; nothing is written\n" +
			"  pamctl apply -f examples/pam.yaml             # the plan, carried out\n" +
			"  pamctl apply -f pam.json --json --sqlite pam.db --as admin\n",
		flags: func(fs *pflag.FlagSet) action {
			var file string
			var dryRun bool
			fs.StringVarP(&file, "file", "f", "", "the config: YAML or JSON (- for stdin); see examples/pam.yaml")
			fs.BoolVar(&dryRun, "dry-run", false, "show the plan, write nothing")
			return func(ctx context.Context, c *cli, args []string) error {
				if len(args) > 0 {
					return usagef("apply takes no arguments: give the file with -f")
				}
				if file == "" {
					return usagef("give the config file with -f FILE")
				}
				var cfg pam.Config
				if err := readFile(file, c.in, &cfg); err != nil {
					return err
				}
				plan, err := c.api.Apply(ctx, cfg, pam.ApplyOptions{DryRun: dryRun})
				if errors.Is(err, pam.ErrInvalid) || errors.Is(err, pam.ErrExists) {
					return fmt.Errorf("%s: %w", file, err)
				}
				if err != nil {
					return err
				}
				if c.json {
					return c.printJSON(plan)
				}
				return c.printPlan(plan)
			}
		}},
}

// printPlan writes the plan for people, as terraform plan does: the
// catalog change, one line per policy change, and a summary.
func (c *cli) printPlan(plan pam.Plan) error {
	if plan.Empty() {
		_, err := fmt.Fprintln(c.out, "No changes.")
		return err
	}
	if plan.Catalog != nil {
		var rows [][]string
		for _, k := range catalogOrder(plan.Catalog) {
			if k == "policies_cut" {
				continue // the policy lines say it
			}
			rows = append(rows, []string{k, plan.Catalog[k]})
		}
		if err := c.table("CATALOG\tCHANGE", rows); err != nil {
			return err
		}
		fmt.Fprintln(c.out)
	}
	n := map[pam.PlanAction]int{}
	cut := 0
	if len(plan.Policies) > 0 {
		var rows [][]string
		for _, pc := range plan.Policies {
			n[pc.Action]++
			changed, cuts, active := "-", "no", "-"
			if len(pc.Changed) > 0 {
				changed = strings.Join(pc.Changed, ",")
			}
			if pc.CutsGrants {
				cuts, active = "yes", strconv.Itoa(pc.ActiveGrants)
				cut += pc.ActiveGrants
			}
			rows = append(rows, []string{actionSign[pc.Action] + " " + string(pc.Action), pc.PolicyID, changed, cuts, active})
		}
		if err := c.table("ACTION\tPOLICY\tCHANGED\tCUTS GRANTS\tACTIVE GRANTS", rows); err != nil {
			return err
		}
		fmt.Fprintln(c.out)
	}
	sum := fmt.Sprintf("Plan: %d to create, %d to update, %d to delete", n[pam.PlanCreate], n[pam.PlanUpdate], n[pam.PlanDelete])
	if plan.Catalog != nil {
		sum += "; the catalog changes"
	}
	switch {
	case cut == 1:
		sum += "; cuts 1 active grant"
	case cut > 1:
		sum += fmt.Sprintf("; cuts %d active grants", cut)
	}
	done := "Dry run: nothing was written."
	if plan.Applied {
		done = "Applied."
	}
	_, err := fmt.Fprintf(c.out, "%s.\n%s\n", sum, done)
	return err
}

// catalogOrder returns the keys of a catalog change (as the catalog.set
// event records it) from the general to the particular: roles, role
// groups, each role's tasks, each role group's roles, task declarations,
// data, and whatever else by name.
func catalogOrder(change map[string]string) []string {
	rank := func(k string) int {
		for i, prefix := range []string{"roles_", "role_groups_", "role:", "role_group:", "task:", "data"} {
			if strings.HasPrefix(k, prefix) {
				return i
			}
		}
		return 99
	}
	return slices.SortedFunc(maps.Keys(change), func(a, b string) int {
		if ra, rb := rank(a), rank(b); ra != rb {
			return ra - rb
		}
		return strings.Compare(a, b)
	})
}

// actionSign marks each action as terraform plan does.
var actionSign = map[pam.PlanAction]string{pam.PlanCreate: "+", pam.PlanUpdate: "~", pam.PlanDelete: "-"}
