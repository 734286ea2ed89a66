// Package ident canonicalises user identities so that two spellings of one
// person compare equal.
//
// The canonical form is the PRECIS UsernameCaseMapped profile (RFC 8265):
// width mapping (full-width "ａｌｉｃｅ" becomes "alice"), case mapping to
// lower case, and Unicode NFC, with code points outside the identifier class
// (spaces, control characters, most symbols) rejected rather than folded.
// The self-approval check and every group-membership comparison use it.
package ident

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"golang.org/x/text/secure/precis"
)

// MaxLen is the longest identity accepted, in bytes, before and after
// canonicalisation.
const MaxLen = 256

// ErrInvalid is returned for identities that are empty, too long, not valid
// UTF-8, or not allowed by the PRECIS profile.
var ErrInvalid = errors.New("invalid identity")

// Canonical returns the canonical form of id.
func Canonical(id string) (string, error) {
	switch {
	case id == "":
		return "", fmt.Errorf("%w: empty", ErrInvalid)
	case len(id) > MaxLen:
		return "", fmt.Errorf("%w: longer than %d bytes", ErrInvalid, MaxLen)
	case !utf8.ValidString(id):
		return "", fmt.Errorf("%w: not valid UTF-8", ErrInvalid)
	}
	if isCanonicalASCII(id) {
		return id, nil
	}
	c, err := precis.UsernameCaseMapped.String(id)
	if err != nil {
		return "", fmt.Errorf("%w: %q: %v", ErrInvalid, id, err)
	}
	if c == "" || len(c) > MaxLen {
		return "", fmt.Errorf("%w: %q has no usable canonical form", ErrInvalid, id)
	}
	return c, nil
}

// isCanonicalASCII reports whether id is already canonical: printable ASCII
// without spaces or upper-case letters. PRECIS maps such strings to
// themselves, so the common case skips the (allocating) profile.
func isCanonicalASCII(id string) bool {
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c <= 0x20 || c >= 0x7f || ('A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}
