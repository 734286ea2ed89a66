package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"

	"github.com/spf13/pflag"

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
	api    pamhttp.API
	me     func(context.Context) (string, error) // the acting identity, canonical
	in     io.Reader                             // for a file named -
	out    io.Writer
	errOut io.Writer // for notes beside the output
	json   bool
}

// connection is the flags that say how to reach the engine.
type connection struct {
	url, token, sqlite, postgres, as string
	create                           bool
	env                              func(string) string
}

// define defines the flags. Their defaults come from the environment
// only once the flags are parsed (see open), so that no --help or usage
// message prints them: a token, or a URL or DSN with a password, would
// land in whatever log keeps the output.
func (c *connection) define(fs *pflag.FlagSet, env func(string) string) {
	c.env = env
	fs.StringVar(&c.url, "url", "", "pamhttp server, e.g. https://pam.example.com/pam (default $PAM_URL)")
	fs.StringVar(&c.token, "token", "", "bearer token for the server (default $PAM_TOKEN)")
	fs.StringVar(&c.sqlite, "sqlite", "", "open this SQLite file directly (default $PAM_SQLITE)")
	fs.BoolVar(&c.create, "create", false, "with --sqlite: create the file if it does not exist (without it, a missing file is refused)")
	fs.StringVar(&c.postgres, "postgres", "", "open this PostgreSQL database directly (default $PAM_POSTGRES)")
	fs.StringVar(&c.as, "as", "", "opening a database directly: the identity to act as (required; trusted, since whoever can open the database can write it)")
}

// fromEnv fills the flags not given from the environment: the token,
// and the way to the engine unless a flag gives one (--sqlite with
// $PAM_URL set opens the file).
func (c *connection) fromEnv() {
	if c.token == "" {
		c.token = c.env("PAM_TOKEN")
	}
	if c.url != "" || c.sqlite != "" || c.postgres != "" {
		return
	}
	c.url, c.sqlite, c.postgres = c.env("PAM_URL"), c.env("PAM_SQLITE"), c.env("PAM_POSTGRES")
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
	if c.create && c.sqlite == "" {
		return ctx, nil, usagef("--create goes with --sqlite")
	}
	if c.url != "" {
		client, err := pamhttp.NewClient(c.url, &pamhttp.ClientOptions{Token: c.token})
		if err != nil {
			// Not err: it quotes the URL, password and all.
			return ctx, nil, usagef("--url (or $PAM_URL) is not an http or https URL such as https://pam.example.com/pam")
		}
		me := func(ctx context.Context) (string, error) {
			me, err := client.Me(ctx)
			return me.Actor, err
		}
		return ctx, &engine{api: client, me: me, close: func() error { return nil }}, nil
	}
	if c.as == "" {
		return ctx, nil, failf(pam.ErrNoActor, "opening the database directly, pamctl needs --as NAME, the identity to act as: there is no server to sign you in")
	}
	var store pam.Store
	var closeStore func() error
	if c.sqlite != "" {
		if _, err := os.Stat(c.sqlite); errors.Is(err, fs.ErrNotExist) && !c.create {
			return ctx, nil, failf(pam.ErrNotFound, "there is no SQLite database at %s; check the path, or give --create to make a new one", c.sqlite)
		}
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
	ctx = pam.WithActorDetail(pam.WithActor(ctx, c.as), origin(c.env))
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

// origin is who and where pamctl runs, as the operating system says:
// recorded with every event a direct connection writes.
func origin(env func(string) string) map[string]string {
	d := map[string]string{}
	if u, err := user.Current(); err == nil && u.Username != "" {
		d["os_user"] = u.Username
	} else if name := env("USER"); name != "" {
		d["os_user"] = name
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		d["host"] = h
	}
	return d
}
