package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/zerostanding/pam"
)

var catalogCommands = []command{
	{noun: "catalog", verb: "get", summary: "Show the catalog (roles, role groups, task declarations, data) as YAML, or JSON with --json.",
		examples: "  pamctl catalog get > catalog.yaml\n  pamctl catalog get --json\n",
		flags: noFlags(func(ctx context.Context, c *cli, args []string) error {
			if len(args) > 0 {
				return usagef("catalog get takes no arguments")
			}
			cat, err := c.api.Catalog(ctx)
			if err != nil {
				return err
			}
			return c.printCatalog(cat)
		})},
	{noun: "catalog", verb: "set", args: "-f FILE", summary: "Replace the catalog with FILE (YAML or JSON, as catalog get prints it). Admins only.",
		examples: "  pamctl catalog get > catalog.yaml && $EDITOR catalog.yaml && pamctl catalog set -f catalog.yaml\n",
		flags: func(fs *pflag.FlagSet) action {
			var file string
			fs.StringVarP(&file, "file", "f", "", "the catalog: YAML or JSON (- for stdin)")
			return func(ctx context.Context, c *cli, args []string) error {
				if len(args) > 0 {
					return usagef("catalog set takes no arguments: give the file with -f")
				}
				if file == "" {
					return usagef("give the catalog file with -f FILE")
				}
				var cat pam.Catalog
				if err := readFile(file, c.in, &cat); err != nil {
					return err
				}
				if err := c.api.SetCatalog(ctx, cat); err != nil {
					if errors.Is(err, pam.ErrInvalid) {
						return fmt.Errorf("%s: %w", file, err)
					}
					return err
				}
				if c.json {
					now, err := c.api.Catalog(ctx)
					if err != nil {
						return err
					}
					return c.printJSON(now)
				}
				_, err := fmt.Fprintf(c.out, "catalog set: %d roles, %d role groups, %d task declarations\n", len(cat.Roles), len(cat.RoleGroups), len(cat.Tasks))
				return err
			}
		}},
}

// printCatalog writes the catalog as YAML, or as JSON with --json: either
// is a file catalog set reads back.
func (c *cli) printCatalog(cat pam.Catalog) error {
	if c.json {
		return c.printJSON(cat)
	}
	b, err := yaml.Marshal(cat)
	if err != nil {
		return err
	}
	_, err = c.out.Write(b)
	return err
}
