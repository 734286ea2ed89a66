package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/pamhttp"
)

// Exit codes scripts can rely on; exitCodes says what each means.
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
	exitNotSignedIn
	exitUnreachable
)

// exitCodes is the table of exit codes, as pamctl --help, pamctl help
// exit-codes and the package doc show it.
var exitCodes = []struct {
	code    int
	meaning string
}{
	{exitOK, "done"},
	{exitError, "other error"},
	{exitUsage, "usage: a wrong command, flag or argument"},
	{exitForbidden, "forbidden: signed in, but not allowed to do this (HTTP 403)"},
	{exitNotFound, "not found (a request, a policy, a --sqlite file)"},
	{exitConflict, "conflict, or the request is in the wrong state for this"},
	{exitNotAllowed, "check: the operation is not allowed now"},
	{exitTampered, "the audit trail does not verify"},
	{exitInvalid, "invalid input: a value the command or the engine refuses"},
	{exitNotSignedIn, "not signed in: no or a bad token (HTTP 401), or no --as opening a database directly"},
	{exitUnreachable, "cannot reach the server at --url"},
}

// exitCodesHelp is the exit code table for people.
func exitCodesHelp() string {
	var b strings.Builder
	b.WriteString("Exit codes:\n")
	for _, e := range exitCodes {
		fmt.Fprintf(&b, "  %-2d  %s\n", e.code, e.meaning)
	}
	return strings.TrimRight(b.String(), "\n")
}

// usageError is a mistake on the command line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// failure is an error of pamctl's own, a sentence that matches its
// sentinel with errors.Is without repeating the sentinel's text.
type failure struct {
	msg string
	err error
}

func (e *failure) Error() string { return e.msg }
func (e *failure) Unwrap() error { return e.err }

// failf returns a failure matching sentinel.
func failf(sentinel error, format string, args ...any) error {
	return &failure{fmt.Sprintf(format, args...), sentinel}
}

// errNotAllowed: check found the operation not allowed.
var errNotAllowed = errors.New("not allowed")

// unreachableError: the server at --url did not answer.
type unreachableError struct {
	url, why string
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("cannot reach the PAM server at %s: %s. Is it running? Set --url or $PAM_URL.", e.url, e.why)
}

// exits maps errors to exit codes, first match wins: the engine's
// sentinels, which a server's problem answers unwrap to as well.
var exits = []struct {
	err  error
	code int
}{
	{pam.ErrNoActor, exitNotSignedIn},
	{pam.ErrForbidden, exitForbidden}, {pam.ErrNotApproved, exitForbidden},
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
	var ur *unreachableError
	if errors.As(err, &ur) {
		return exitUnreachable
	}
	for _, m := range exits {
		if errors.Is(err, m.err) {
			return m.code
		}
	}
	// A server's answer with a code this pamctl does not know.
	var p *pamhttp.Problem
	if errors.As(err, &p) {
		switch p.Status {
		case 401:
			return exitNotSignedIn
		case 403:
			return exitForbidden
		}
	}
	return exitError
}

// explain turns err into what to tell the user: a server that cannot be
// dialled becomes one sentence naming it, and not being signed in says
// how to sign in.
func explain(err error, conn *connection) error {
	if conn.url == "" {
		return err
	}
	if why := dialFailure(err); why != "" {
		return &unreachableError{url: redacted(conn.url), why: why}
	}
	if exitCode(err) == exitNotSignedIn {
		if conn.token == "" {
			return &failure{fmt.Sprintf("not signed in to the PAM server at %s: no token was given. Set --token or $PAM_TOKEN.", redacted(conn.url)), err}
		}
		return &failure{fmt.Sprintf("the PAM server at %s did not take the token (%s). Set --token or $PAM_TOKEN to a token it accepts.", redacted(conn.url), strings.TrimPrefix(err.Error(), "pam: ")), err}
	}
	return err
}

// dialFailure says why err is a failure to reach the server at all, ""
// when it is not one.
func dialFailure(err error) string {
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return "no such host"
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		return ""
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "no route to the host"
	case op.Timeout():
		return "the connection timed out"
	}
	return op.Err.Error()
}

// redacted is u without a password.
func redacted(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "--url"
	}
	return p.Redacted()
}
