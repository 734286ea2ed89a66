package main

import (
	"errors"
	"fmt"

	"github.com/zerostanding/pam"
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

// usageError is a mistake on the command line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// errNotAllowed: check found the operation not allowed.
var errNotAllowed = errors.New("not allowed")

// exits maps errors to exit codes, first match wins: the engine's
// sentinels, which a server's problem answers unwrap to as well.
var exits = []struct {
	err  error
	code int
}{
	{pam.ErrNoActor, exitForbidden}, {pam.ErrForbidden, exitForbidden}, {pam.ErrNotApproved, exitForbidden},
	{pam.ErrNotFound, exitNotFound},
	{pam.ErrConflict, exitConflict}, {pam.ErrExists, exitConflict}, {pam.ErrLimit, exitConflict}, {pam.ErrWrongState, exitConflict}, {pam.ErrAlreadyDecided, exitConflict}, {pam.ErrAmbiguous, exitConflict},
	{pam.ErrInvalid, exitInvalid}, {pam.ErrDurationTooLong, exitInvalid}, {pam.ErrRejected, exitInvalid}, {pam.ErrNoPolicy, exitInvalid},
	{pam.ErrTampered, exitTampered},
	{errNotAllowed, exitNotAllowed},
}

// exitCode is the exit code for err.
func exitCode(err error) int {
	var ue *usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	for _, m := range exits {
		if errors.Is(err, m.err) {
			return m.code
		}
	}
	return exitError
}
