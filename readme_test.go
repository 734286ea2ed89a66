package pam_test

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestReadmeSketch keeps the README's first Go block and the program that
// runs it from drifting apart: the block must be, line for line, what
// examples/readme/main.go holds between its "README begin" and "README
// end" comments, less their common indentation.
func TestReadmeSketch(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	program, err := os.ReadFile("examples/readme/main.go")
	if err != nil {
		t.Fatal(err)
	}
	block := readmeSection(t, string(readme), "The model is Microsoft Purview", "```go\n", "```\n")
	excerpt := readmeSection(t, string(program), "", "// README begin\n", "// README end")
	if diff := cmp.Diff(readmeLines(readmeDedent(excerpt)), readmeLines(block)); diff != "" {
		t.Errorf("README.md's first Go block differs from the marked excerpt of examples/readme/main.go (-program +README):\n%s", diff)
	}
}

// readmeSection returns the text between begin and end, taking the
// first begin that follows after.
func readmeSection(t *testing.T, s, after, begin, end string) string {
	t.Helper()
	i := strings.Index(s, after)
	if i < 0 {
		t.Fatalf("%q not found", after)
	}
	j := strings.Index(s[i:], begin)
	if j < 0 {
		t.Fatalf("%q not found after %q", begin, after)
	}
	s = s[i+j+len(begin):]
	k := strings.Index(s, end)
	if k < 0 {
		t.Fatalf("%q not found after %q", end, begin)
	}
	return s[:k]
}

// readmeDedent removes the longest run of leading whitespace that every
// non-blank line shares.
func readmeDedent(s string) string {
	ls := readmeLines(s)
	prefix, first := "", true
	for _, l := range ls {
		if strings.TrimSpace(l) == "" {
			continue
		}
		indent := l[:len(l)-len(strings.TrimLeft(l, " \t"))]
		if first {
			prefix, first = indent, false
		}
		for !strings.HasPrefix(indent, prefix) {
			prefix = prefix[:len(prefix)-1]
		}
	}
	for i, l := range ls {
		ls[i] = strings.TrimPrefix(l, prefix)
	}
	return strings.Join(ls, "\n")
}

// readmeLines splits s into lines and drops blank ones at the end (such
// as the indentation before "// README end").
func readmeLines(s string) []string {
	ls := strings.Split(s, "\n")
	for len(ls) > 0 && strings.TrimSpace(ls[len(ls)-1]) == "" {
		ls = ls[:len(ls)-1]
	}
	return ls
}
