package pam_test

import (
	"testing"

	"github.com/zerostanding/pam"
)

func TestDisplayText(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"plain reason, INC-42", "plain reason, INC-42"},
		{"tabs\tand\nnewlines stay", "tabs\tand\nnewlines stay"},
		{"élan ａｌｉｃｅ 日本 مرحبا", "élan ａｌｉｃｅ 日本 مرحبا"}, // scripts, right-to-left letters included, are text
		{"rotate key \u202egnp.exe", "rotate key <U+202E>gnp.exe"},
		{"\u2066isolate\u2069 \u200emark\u200f \u061c", "<U+2066>isolate<U+2069> <U+200E>mark<U+200F> <U+061C>"},
		{"zero\u200bwidth\u200d\ufeff", "zero<U+200B>width<U+200D><U+FEFF>"},
		{"soft\u00adhyphen", "soft<U+00AD>hyphen"},
		{"tag\U000E0041", "tag<U+E0041>"},
		{"bell\a esc\x1b[31m del\x7f c1\u0085", "bell<U+0007> esc<U+001B>[31m del<U+007F> c1<U+0085>"},
		{"cr\r\nline\u2028para\u2029", "cr<U+000D>\nline<U+2028>para<U+2029>"},
		{"bad \xff utf8", "bad <invalid> utf8"},
	} {
		if got := pam.DisplayText(c.in); got != c.want {
			t.Errorf("DisplayText(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func FuzzDisplayText(f *testing.F) {
	f.Add("rotate key \u202egnp.exe")
	f.Add("\xff\u200b\t")
	f.Fuzz(func(t *testing.T, s string) {
		got := pam.DisplayText(s)
		if pam.DisplayText(got) != got {
			t.Fatalf("DisplayText is not idempotent on %q: %q", s, got)
		}
		for _, r := range got {
			if r != '\t' && r != '\n' && (r < 0x20 || (r >= 0x7f && r < 0xa0) || (r >= 0x200b && r <= 0x200f) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069)) {
				t.Fatalf("DisplayText(%q) = %q keeps %U", s, got, r)
			}
		}
	})
}
