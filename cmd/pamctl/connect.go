package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/pamhttp"
	"github.com/zerostanding/pam/store/postgres"
	"github.com/zerostanding/pam/store/sqlite"
)

// Both ways to the engine are a pamhttp.API, so every command has one
// code path.
var (
	_ pamhttp.API = (*pam.Manager)(nil)
	_ pamhttp.API = (*pamhttp.Client)(nil)
)

// cli is what a command works with: the engine, and where and how to
// print.
type cli struct {
	api  pamhttp.API
	me   func(context.Context) (string, error) // the acting identity, canonical
	in   io.Reader                             // for a file named -
	out  io.Writer
	json bool
}

// connection is the flags that say how to reach the engine.
type connection struct {
	url, token, sqlite, postgres, as string
	env                              func(string) string
}

// define defines the flags. Their defaults come from the environment
// only once the flags are parsed (see open), so that no --help or usage
// message prints them: a token, or a URL or DSN with a password, would
// land in whatever log keeps the output.
func (c *connection) define(fs *flag.FlagSet, env func(string) string) {
	c.env = env
	fs.StringVar(&c.url, "url", "", "pamhttp server, e.g. https://pam.example.com/pam (default $PAM_URL)")
	fs.StringVar(&c.token, "token", "", "bearer token for the server (default $PAM_TOKEN)")
	fs.StringVar(&c.sqlite, "sqlite", "", "open this SQLite file directly (default $PAM_SQLITE)")
	fs.StringVar(&c.postgres, "postgres", "", "open this PostgreSQL database directly (default $PAM_POSTGRES)")
	fs.StringVar(&c.as, "as", "", "identity to act as when opening a database directly (default $USER)")
}

// fromEnv fills the flags not given from the environment.
func (c *connection) fromEnv() {
	for _, f := range []struct {
		v   *string
		env string
	}{{&c.url, "PAM_URL"}, {&c.token, "PAM_TOKEN"}, {&c.sqlite, "PAM_SQLITE"}, {&c.postgres, "PAM_POSTGRES"}, {&c.as, "USER"}} {
		if *f.v == "" {
			*f.v = c.env(f.env)
		}
	}
}

// engine is the API opened, who is acting, and how to close it.
type engine struct {
	api   pamhttp.API
	me    func(context.Context) (string, error)
	close func() error
}

// open reaches the engine: a Client of the server at --url, or a Manager
// over the database opened directly, with ctx acting as --as.
func (c *connection) open(ctx context.Context) (context.Context, *engine, error) {
	c.fromEnv()
	n := 0
	for _, s := range []string{c.url, c.sqlite, c.postgres} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return ctx, nil, usagef("give exactly one of --url, --sqlite or --postgres (or PAM_URL, PAM_SQLITE, PAM_POSTGRES)")
	}
	if c.url != "" {
		client, err := pamhttp.NewClient(c.url, &pamhttp.ClientOptions{Token: c.token})
		if err != nil {
			return ctx, nil, usagef("--url: %v", err)
		}
		me := func(ctx context.Context) (string, error) {
			me, err := client.Me(ctx)
			return me.Actor, err
		}
		return ctx, &engine{api: client, me: me, close: func() error { return nil }}, nil
	}
	var store pam.Store
	var closeStore func() error
	if c.sqlite != "" {
		s, err := sqlite.Open(ctx, c.sqlite)
		if err != nil {
			return ctx, nil, err
		}
		store, closeStore = s, s.Close
	} else {
		s, err := postgres.Open(ctx, c.postgres, nil)
		if err != nil {
			return ctx, nil, err
		}
		store, closeStore = s, s.Close
	}
	// Membership lives with the host; opened directly, the admin group
	// is taken to be the acting user's own choice to make.
	dir, _ := pam.NewStaticDirectory(map[string][]string{"pamctl-admins": {c.as}})
	m, err := pam.New(store, directAdmins{dir}, &pam.Options{AdminGroup: "pamctl-admins"})
	if err != nil {
		closeStore()
		return ctx, nil, err
	}
	ctx = pam.WithActor(ctx, c.as)
	me := func(ctx context.Context) (string, error) {
		if who, ok := pam.ActorFrom(ctx); ok {
			return who, nil
		}
		return "", fmt.Errorf("%w: --as %q is not a valid identity", pam.ErrNoActor, c.as)
	}
	return ctx, &engine{api: m, me: me, close: func() error {
		m.Close(context.Background())
		return closeStore()
	}}, nil
}

// directAdmins makes the acting user an admin and a member of every
// group: with the database in hand, nothing stops them anyway.
type directAdmins struct{ pam.Directory }

func (directAdmins) IsMember(context.Context, string, string) (bool, error) { return true, nil }
