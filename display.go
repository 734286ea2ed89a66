package pam

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// DisplayText returns s as it is safe to show to a person who must judge
// it: every character that changes how the text around it reads without
// being seen itself is replaced by its code point in brackets
// ("<U+202E>"). That covers the bidirectional controls (U+202A–U+202E,
// U+2066–U+2069, U+200E, U+200F, U+061C), every other format character
// (Unicode category Cf: zero-width spaces and joiners, the soft hyphen,
// tag characters), controls other than tab and newline, and invalid
// UTF-8 ("<invalid>").
//
// A reason written as "rotate key ‮gnp.exe" reads "rotate key exe.png"
// where it is rendered raw; an approver must see what was recorded. The
// approver page, pamctl and every notifier shipped with this module pass
// user-supplied text (reasons, comments, tickets, identities, parameter
// values) through DisplayText; a host's own notifier should too. The
// trail keeps the text exactly as submitted.
func DisplayText(s string) string {
	if !needsNeutral(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			b.WriteString("<invalid>")
		case hidden(r):
			fmt.Fprintf(&b, "<U+%04X>", r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func needsNeutral(s string) bool {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n <= 1) || hidden(r) {
			return true
		}
		i += n
	}
	return false
}

// hidden reports whether r is invisible and changes how text reads.
func hidden(r rune) bool {
	if r == '\t' || r == '\n' {
		return false
	}
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) ||
		r == '\u2028' || r == '\u2029' // line and paragraph separators (Zl, Zp)
}

// ForDisplay returns a copy of r whose user-supplied text has passed
// through DisplayText: the requester, the scope's name, the reason, the
// ticket, the bound values, every decision's approver and comment, the
// extension's reason, the break-glass reviewer and comment, and who
// closed it. A notifier renders it; the trail and the API keep r as
// recorded.
func (r Request) ForDisplay() Request {
	r = r.clone()
	r.Requester, r.Reason, r.Ticket, r.ClosedBy = DisplayText(r.Requester), DisplayText(r.Reason), DisplayText(r.Ticket), DisplayText(r.ClosedBy)
	r.Scope.Name = DisplayText(r.Scope.Name)
	for k, v := range r.Bind {
		if s, ok := v.(string); ok {
			r.Bind[k] = DisplayText(s)
		}
	}
	decisions := func(ds []Decision) {
		for i := range ds {
			ds[i].Approver, ds[i].Comment = DisplayText(ds[i].Approver), DisplayText(ds[i].Comment)
		}
	}
	decisions(r.Decisions)
	if r.Extension != nil {
		r.Extension.Reason = DisplayText(r.Extension.Reason)
		decisions(r.Extension.Decisions)
	}
	if r.BreakGlass != nil {
		r.BreakGlass.By, r.BreakGlass.Comment = DisplayText(r.BreakGlass.By), DisplayText(r.BreakGlass.Comment)
	}
	return r
}
