package ident_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/zerostanding/pam/internal/ident"
	"golang.org/x/text/secure/precis"
)

func TestCanonical(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"alice", "alice"},
		{"Alice", "alice"},
		{"ALICE@Contoso.COM", "alice@contoso.com"},
		{"ａｌｉｃｅ", "alice"},
		{"Ａｌｉｃｅ@contoso.com", "alice@contoso.com"},
		{`CONTOSO\alice`, `contoso\alice`},
		{"ÅSA", "åsa"},
		{"svc-backup", "svc-backup"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ident.Canonical(tc.in)
			if err != nil {
				t.Fatalf("Canonical(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("Canonical(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestCanonicalRejects(t *testing.T) {
	for name, in := range map[string]string{
		"empty":       "",
		"space":       "alice smith",
		"nul":         "alice\x00",
		"invalid utf": "al\xffice",
		"control":     "alice\n",
		"too long":    strings.Repeat("a", ident.MaxLen+1),
	} {
		t.Run(name, func(t *testing.T) {
			if got, err := ident.Canonical(in); !errors.Is(err, ident.ErrInvalid) {
				t.Errorf("Canonical(%q) = %q, %v; want ErrInvalid", in, got, err)
			}
		})
	}
}

// FuzzCanonical checks that canonicalisation is idempotent, agrees with the
// PRECIS profile, and never returns something it would itself reject.
func FuzzCanonical(f *testing.F) {
	for _, s := range []string{"alice", "Alice", "ａｌｉｃｅ", "ÅSA", `CONTOSO\Bob`, "a b", "\x00", "ﬀ", "K", "İ", "ß", "Σ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ident.Canonical(s)
		if err != nil {
			if !errors.Is(err, ident.ErrInvalid) {
				t.Fatalf("Canonical(%q): error %v is not ErrInvalid", s, err)
			}
			return
		}
		if !utf8.ValidString(c) || c == "" || len(c) > ident.MaxLen {
			t.Fatalf("Canonical(%q) = %q: not a usable identity", s, c)
		}
		again, err := ident.Canonical(c)
		if err != nil {
			t.Fatalf("Canonical(%q) = %q, which is rejected on a second pass: %v", s, c, err)
		}
		if again != c {
			t.Fatalf("not idempotent: %q -> %q -> %q", s, c, again)
		}
		if p, err := precis.UsernameCaseMapped.String(s); err == nil && p != c {
			t.Fatalf("Canonical(%q) = %q, PRECIS says %q", s, c, p)
		}
	})
}
