// Server is the whole library in a browser: a SQLite store, the
// notification outbox with a log notifier, the approver page and JSON API
// (pamhttp) behind a demo login, and a few guarded demo operations.
//
//	go run ./examples/server            # then open http://127.0.0.1:8080
//
// Sign in as alice and request "Move mailbox"; sign in as bob (another
// browser, or sign out) and approve it; back as alice, run it. "Drop
// table" needs two approvers, bob and carol. admin manages policies
// through the API or pamctl. The policies are in pam.yaml beside this
// file, embedded in the program and applied at every start (policies as
// code, Manager.Apply). The demo login stands in for the host's own sign-on:
// it trusts whoever picks a name, and must not be used as it is.
//
// The API also takes demo bearer tokens, printed at start, for pamctl:
//
//	PAM_URL=http://127.0.0.1:8080/pam PAM_TOKEN=demo-alice go run ./cmd/pamctl request list
//
// Operations: the log is JSON (slog), the engine's metrics are served for
// Prometheus at /metrics (the OpenTelemetry SDK with its Prometheus
// exporter), and /livez and /readyz are the health endpoints
// (pamhttp.Health). None of them needs a login: they carry no identity,
// reason or parameter.
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"sigs.k8s.io/yaml"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/pamhttp"
	"github.com/zerostanding/pam/sinks"
	"github.com/zerostanding/pam/store/sqlite"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	db := flag.String("db", filepath.Join(os.TempDir(), "pam-server.db"), "SQLite file")
	flag.Parse()
	if err := run(*addr, *db); err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}

func run(addr, db string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s, err := New(ctx, db, slog.New(slog.NewJSONHandler(os.Stderr, nil)))
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Printf("listening on http://%s (state in %s)\n", l.Addr(), db)
	fmt.Printf("demo API tokens: %s\n", strings.Join(tokenList(), ", "))
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { <-ctx.Done(); srv.Shutdown(context.Background()) }()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// users of the demo, and their groups.
var groups = map[string][]string{
	"pam-admins": {"admin"},
	"approvers":  {"bob", "carol"},
}

var users = []string{"alice", "bob", "carol", "admin"}

func tokenList() []string {
	var out []string
	for _, u := range users {
		out = append(out, "demo-"+u)
	}
	return out
}

// Server is the demo's http.Handler.
type Server struct {
	http.Handler
	m      *pam.Manager
	store  *sqlite.Store
	meters *sdkmetric.MeterProvider
	cancel context.CancelFunc
	done   chan struct{}
}

// policyFile is the demo's policies as code, applied at every start.
//
//go:embed pam.yaml
var policyFile []byte

// ops are the guarded demo operations.
var ops = []struct{ Task, Title string }{
	{"New-MoveRequest", "Move mailbox"},
	{"Drop-Table", "Drop table"},
}

// New opens the store at db, sets the demo up and starts the Manager's
// background work. The engine's metrics go to /metrics and to readers,
// if any (a test reads them by hand).
func New(ctx context.Context, db string, log *slog.Logger, readers ...sdkmetric.Reader) (*Server, error) {
	registry := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(registry))
	if err != nil {
		return nil, err
	}
	mopts := []sdkmetric.Option{sdkmetric.WithReader(exporter)}
	for _, r := range readers {
		mopts = append(mopts, sdkmetric.WithReader(r))
	}
	meters := sdkmetric.NewMeterProvider(mopts...)
	store, err := sqlite.Open(ctx, db)
	if err != nil {
		return nil, err
	}
	dir, err := pam.NewStaticDirectory(groups)
	if err != nil {
		return nil, err
	}
	m, err := pam.New(store, dir, &pam.Options{
		AdminGroup:    "pam-admins",
		Logger:        log,
		MeterProvider: meters,
		Notifier: pam.NotifierFunc(func(_ context.Context, n pam.Notification) error {
			log.Info("notification", "to", strings.Join(n.Recipients, ","), "type", n.Type, "request", n.Request.ID, "task", n.Request.Scope.Name)
			return nil
		}),
		AuditSinks: []pam.SinkConfig{{Name: "log", Sink: sinks.NewSlog(log.Handler())}},
		ParamAudit: pam.ParamAudit{Params: map[string]pam.ParamMode{"identity": pam.ParamFull, "table": pam.ParamFull}},
	})
	if err != nil {
		store.Close()
		return nil, err
	}
	if err := applyPolicies(pam.WithActor(ctx, "admin"), m, log); err != nil {
		store.Close()
		return nil, err
	}
	// Signed-out visitors of the approver page come to the demo login
	// with the way back (next).
	api, err := pamhttp.New(m, pamhttp.Options{Authenticate: authenticate, SignInURL: "/"})
	if err != nil {
		store.Close()
		return nil, err
	}
	health, err := pamhttp.Health(m, pamhttp.HealthOptions{MaxOutboxAge: 10 * time.Minute})
	if err != nil {
		store.Close()
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s := &Server{m: m, store: store, meters: meters, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(s.done); m.Run(runCtx) }()

	mux := http.NewServeMux()
	mux.Handle("/pam/", http.StripPrefix("/pam", api))
	mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	mux.Handle("GET /livez", health)
	mux.Handle("GET /readyz", health)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		who, _ := authenticate(r)
		home.Execute(w, map[string]any{"Who": who, "Users": users, "Ops": ops, "Next": localPath(r.URL.Query().Get("next"))})
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		u := r.PostFormValue("user")
		if !contains(users, u) {
			http.Error(w, "unknown demo user", http.StatusBadRequest)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: "demo_user", Value: u, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
		next := localPath(r.PostFormValue("next"))
		if next == "" {
			next = "/pam/"
		}
		w.Header().Set("Location", next)
		w.WriteHeader(http.StatusSeeOther)
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "demo_user", Path: "/", MaxAge: -1})
		w.Header().Set("Location", "/")
		w.WriteHeader(http.StatusSeeOther)
	})
	mux.HandleFunc("POST /ops/{task}", func(w http.ResponseWriter, r *http.Request) {
		who, err := authenticate(r)
		if err != nil {
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		task, arg := r.PathValue("task"), r.PostFormValue("arg")
		err = m.Guard(pam.WithActor(r.Context(), who), pam.Op{Task: task, Params: map[string]any{"identity": arg, "table": arg}},
			func(ctx context.Context) error {
				log.Info("demo operation ran", "task", task, "arg", arg, "by", who)
				return nil
			})
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		// A refusal links to the request form, its policy chosen.
		link := "/pam/new"
		if err != nil {
			st, _ := statusOf(err)
			w.WriteHeader(st)
			var na *pam.NotApprovedError
			if errors.As(err, &na) && na.PolicyID != "" {
				link += "?policy=" + url.QueryEscape(na.PolicyID)
			}
		}
		result.Execute(w, map[string]any{"Task": task, "Arg": arg, "Err": err, "Link": link})
	})
	s.Handler = http.NewCrossOriginProtection().Handler(mux)
	return s, nil
}

// applyPolicies makes the policies what pam.yaml says, and logs the plan.
func applyPolicies(ctx context.Context, m *pam.Manager, log *slog.Logger) error {
	var cfg pam.Config
	if err := yaml.UnmarshalStrict(policyFile, &cfg); err != nil {
		return fmt.Errorf("pam.yaml: %w", err)
	}
	plan, err := m.Apply(ctx, cfg, pam.ApplyOptions{})
	if err != nil {
		return fmt.Errorf("pam.yaml: %w", err)
	}
	for _, c := range plan.Policies {
		log.Info("policy applied", "action", c.Action, "policy", c.PolicyID, "changed", strings.Join(c.Changed, ","), "active_grants_cut", c.ActiveGrants)
	}
	if plan.Empty() {
		log.Info("policies as in pam.yaml: no changes")
	}
	return nil
}

// Close stops the background work and closes the store.
func (s *Server) Close() error {
	s.cancel()
	<-s.done
	s.m.Close(context.Background())
	s.meters.Shutdown(context.Background())
	return s.store.Close()
}

// authenticate is the demo's sign-on: a cookie set by /login, or a demo
// bearer token for the API. A real host checks its own sessions here.
func authenticate(r *http.Request) (string, error) {
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		if u, ok := strings.CutPrefix(tok, "demo-"); ok && contains(users, u) {
			return u, nil
		}
		return "", errors.New("unknown token")
	}
	c, err := r.Cookie("demo_user")
	if err != nil || !contains(users, c.Value) {
		return "", errors.New("not signed in")
	}
	return c.Value, nil
}

// localPath returns next when it is a path on this host ("/pam/..."),
// and "" for anything else: another host ("//evil", "https://evil",
// "/\\evil"), or none.
func localPath(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return ""
	}
	if u, err := url.Parse(next); err != nil || u.Scheme != "" || u.Host != "" {
		return ""
	}
	return next
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func statusOf(err error) (int, string) {
	switch {
	case errors.Is(err, pam.ErrNotApproved), errors.Is(err, pam.ErrForbidden):
		return http.StatusForbidden, "forbidden"
	case errors.Is(err, pam.ErrNoActor):
		return http.StatusUnauthorized, "no_actor"
	}
	return http.StatusInternalServerError, "error"
}

var home = template.Must(template.New("home").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>PAM demo</title><link rel="stylesheet" href="/pam/assets/style.css"></head>
<body><header class="top"><a class="brand" href="/">PAM demo</a><span>{{if .Who}}signed in as {{.Who}}{{end}}</span></header><main id="main">
<h1>PAM demo</h1>
<section><h2>Demo login</h2><p>Stands in for your single sign-on. Anyone may pick any name: never use it as it is.</p>
<form method="post" action="/login">{{if .Next}}<input type="hidden" name="next" value="{{.Next}}">{{end}}<label>User <select name="user">{{range .Users}}<option>{{.}}</option>{{end}}</select></label><button>Sign in</button></form>
{{if .Who}}<form method="post" action="/logout"><button>Sign out</button></form>{{end}}</section>
<section><h2><a href="/pam/">Requests and approvals</a></h2></section>
<section><h2>Privileged operations</h2>
{{range .Ops}}<form method="post" action="/ops/{{.Task}}"><label>{{.Title}} <input name="arg" placeholder="mailbox or table"></label><button>Run {{.Task}}</button></form>{{end}}
</section></main></body></html>`))

var result = template.Must(template.New("result").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Task}}</title><link rel="stylesheet" href="/pam/assets/style.css"></head>
<body><header class="top"><a class="brand" href="/">PAM demo</a></header><main id="main">
<h1>{{.Task}}</h1>
{{if .Err}}<p class="error" id="result">Denied: {{.Err}}</p><p><a id="request-link" href="{{.Link}}">Request access</a></p>
{{else}}<p class="notice" id="result">{{.Task}} ran on {{.Arg}}.</p>{{end}}
<p><a href="/">Back</a></p></main></body></html>`))
