// Command pamd is the approver service: the JSON API, the approver page,
// notifications and audit sinks over one store, configured from one
// YAML file.
//
//	go run ./cmd/pamd -config examples/pamd.yaml
//
// The file (see Config, and examples/pamd.yaml, commented) names the
// store (SQLite by default; PostgreSQL for several replicas on one
// database), the directory, how callers are authenticated, the
// notifiers and sinks, and the catalog and policies, applied at every
// start with Manager.Apply. Secrets are never written in it: each names
// an environment variable or a file. These environment variables
// override the file: PAMD_LISTEN, PAMD_OPS_LISTEN, PAMD_BASE_URL,
// PAMD_SQLITE and PAMD_POSTGRES_DSN.
//
// /livez and /readyz (pamhttp.Health) and the Prometheus /metrics of
// the engine's OpenTelemetry metrics are served without a token, on
// ops.listen when set, beside the API otherwise. Logs are JSON lines on
// standard error (log_level).
//
// On SIGTERM or SIGINT pamd drains within shutdown_timeout: it stops
// accepting connections, lets the requests in flight finish, and closes
// the Manager, which waits for every audit sink to hold the trail up to
// its head. It prints "listening on ADDR" once it serves, and exits 0
// after a clean drain, 1 when serving or draining failed, 2 when the
// configuration cannot be used (pamd -check only checks it).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is pamd with its arguments, environment and output: what main and
// the tests call.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pamd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "pamd.yaml", "the configuration file")
	check := fs.Bool("check", false, "check the configuration and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := Load(*path, getenv)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: logLevels[cfg.LogLevel]}))
	if *check {
		fmt.Fprintln(stdout, "configuration ok")
		return 0
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()
	s, err := Open(ctx, cfg, getenv, log)
	if err != nil {
		fmt.Fprintln(stderr, "pamd:", err)
		if errors.Is(err, errConfig) {
			return 2
		}
		return 1
	}
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		fmt.Fprintln(stderr, "pamd:", err)
		s.Close(context.Background())
		return 1
	}
	var ops net.Listener
	if cfg.Ops.Listen != "" {
		if ops, err = net.Listen("tcp", cfg.Ops.Listen); err != nil {
			fmt.Fprintln(stderr, "pamd:", err)
			l.Close()
			s.Close(context.Background())
			return 1
		}
		fmt.Fprintf(stdout, "ops on %s\n", ops.Addr())
	}
	fmt.Fprintf(stdout, "listening on %s\n", l.Addr())
	if err := Serve(ctx, l, ops, s, log); err != nil {
		fmt.Fprintln(stderr, "pamd:", err)
		return 1
	}
	return 0
}
