package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
)

// print writes v as indented JSON.
func (c *cli) printJSON(v any) error {
	e := json.NewEncoder(c.out)
	e.SetIndent("", "  ")
	return e.Encode(v)
}

// table writes rows under a tab-separated header, aligned.
func (c *cli) table(header string, rows [][]string) error {
	w := tabwriter.NewWriter(c.out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, header)
	for _, r := range rows {
		fmt.Fprintln(w, strings.Join(r, "\t"))
	}
	return w.Flush()
}

// one returns the single argument, named what in the usage error.
func one(args []string, what string) (string, error) {
	if len(args) != 1 {
		return "", usagef("give one %s", what)
	}
	return args[0], nil
}

// multi is a repeatable string flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }
func (m *multi) Type() string       { return "strings" }

// nonNil is s, or an empty slice for nil: JSON [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
