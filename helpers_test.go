package pam_test

import (
	"context"
	"errors"
	"os"
	"runtime/pprof"
	"sort"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/internal/fakes"
	"github.com/zerostanding/pam/store/memory"
)

var epoch = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC) // a Monday

// env is one Manager over a memory store with a fake clock, a directory,
// and recording fakes.
type env struct {
	t      tb
	m      *pam.Manager
	clk    *clock.Mock
	dir    *pam.StaticDirectory
	dirs   *fakes.Directory // dir as the Manager asks it
	store  *fakes.Store
	notes  *fakes.Notifier
	sink   *fakes.Sink
	errors *fakes.Errors
}

var testGroups = map[string][]string{
	"pam-admins":       {"admin"},
	"mailbox-managers": {"bob", "carol", "Dave"},
	"security":         {"erin", "frank", "carol"},
}

var testCatalog = pam.Catalog{
	Roles: map[string][]string{
		"Mail Recipients":  {"Set-Mailbox", "New-MoveRequest"},
		"Move Mailboxes":   {"New-MoveRequest", "Remove-MoveRequest"},
		"Journaling":       {"Set-JournalRule"},
		"Retention":        {"Set-RetentionPolicy"},
		"Reset Passwords":  {"Set-Password"},
		"Unused Role":      {"Unused-Task"},
		"Organization Mgt": {"Set-OrganizationConfig"},
	},
	RoleGroups: map[string][]string{
		"Recipient Management": {"Mail Recipients", "Move Mailboxes"},
		"Compliance":           {"Journaling", "Retention"},
	},
	Data: map[string]any{"vip": []any{"ceo@contoso.com", "cfo@contoso.com"}},
}

// tb is what the helpers need of *testing.T, *testing.B and *rapid.T.
type tb interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

func newEnv(t tb, configure ...func(*pam.Options)) *env {
	t.Helper()
	e := &env{t: t, clk: clock.NewMock(), store: &fakes.Store{OutboxStore: memory.New()}, notes: &fakes.Notifier{}, sink: &fakes.Sink{}, errors: &fakes.Errors{}}
	e.clk.Set(epoch)
	dir, err := pam.NewStaticDirectory(testGroups)
	if err != nil {
		t.Fatal(err)
	}
	e.dir, e.dirs = dir, &fakes.Directory{Directory: dir}
	opts := &pam.Options{
		Clock: e.clk, Catalog: testCatalog, Notifier: e.notes, AuditSinks: []pam.SinkConfig{{Name: "test", Sink: e.sink}},
		AdminGroup: "pam-admins", SystemAccounts: []string{"svc-backup"}, OnError: e.errors.Report,
		// The trail holds a run's end when Guard returns: what most tests
		// read. The deferred ends, the default, have tests of their own.
		SyncRunEnds: true,
	}
	for _, c := range configure {
		c(opts)
	}
	// The store already holds the catalog, as it does for a host past its
	// first start: the trail starts empty.
	if cat := opts.Catalog.Clone(); len(cat.Roles)+len(cat.RoleGroups)+len(cat.Tasks)+len(cat.Data) > 0 {
		cat.Version = 1
		if err := e.store.Commit(context.Background(), &pam.Tx{Catalog: &cat}); err != nil {
			t.Fatal(err)
		}
		opts.Catalog = pam.Catalog{}
	}
	e.m, err = pam.New(e.store, e.dirs, opts)
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := t.(interface{ Cleanup(func()) }); ok {
		c.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			e.m.Close(ctx)
		})
	}
	return e
}

// delivered delivers the outbox and returns the notifications taken so
// far, by type and recipient.
func (e *env) delivered() []pam.Notification {
	e.t.Helper()
	for {
		n, err := e.m.Deliver(context.Background())
		if err != nil {
			e.t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	notes := e.notes.Take()
	sort.SliceStable(notes, func(i, j int) bool {
		if notes[i].Type != notes[j].Type {
			return notes[i].Type < notes[j].Type
		}
		return notes[i].Recipients[0] < notes[j].Recipients[0]
	})
	return notes
}

// eventually polls cond until it holds, failing after 10 seconds: for
// what background workers do.
func eventually(t tb, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func (e *env) as(who string) context.Context { return pam.WithActor(context.Background(), who) }

func (e *env) admin() context.Context { return e.as("admin") }

// policy creates a policy as admin.
func (e *env) policy(p pam.Policy) pam.Policy {
	e.t.Helper()
	got, err := e.m.CreatePolicy(e.admin(), p)
	if err != nil {
		e.t.Fatalf("CreatePolicy: %v", err)
	}
	return got
}

// movePolicy is the quickstart's policy: New-MoveRequest, one approval
// from mailbox-managers.
func movePolicy() pam.Policy {
	return pam.Policy{ID: "move", Scope: pam.TaskScope("New-MoveRequest"), Approval: pam.Manual,
		ApproverGroups: []pam.ApproverGroup{{Group: "mailbox-managers"}}, MaxDuration: 8 * time.Hour}
}

func (e *env) submit(who string, n pam.RequestInput) pam.Request {
	e.t.Helper()
	if n.Reason == "" {
		n.Reason = "move the mailbox of a leaver"
	}
	r, err := e.m.Submit(e.as(who), n)
	if err != nil {
		e.t.Fatalf("Submit as %s: %v", who, err)
	}
	return r
}

func (e *env) approve(who, id string) pam.Request {
	e.t.Helper()
	r, err := e.m.Approve(e.as(who), id, "ok")
	if err != nil {
		e.t.Fatalf("Approve as %s: %v", who, err)
	}
	return r
}

// grant submits for task as who and has bob approve.
func (e *env) grant(who string, n pam.RequestInput) pam.Request {
	e.t.Helper()
	r := e.submit(who, n)
	return e.approve("bob", r.ID)
}

var errRan = errors.New("fn ran")

// guard runs Guard with a fn that reports whether it ran.
func (e *env) guard(who, task string, params map[string]any) (ran bool, err error) {
	err = e.m.Guard(e.as(who), pam.Op{Task: task, Params: params}, func(ctx context.Context) error {
		ran = true
		return nil
	})
	return ran, err
}

// events returns the whole audit trail.
func (e *env) events() []pam.Event {
	e.t.Helper()
	var all []pam.Event
	f := pam.EventFilter{Limit: pam.MaxPageSize}
	for {
		page, next, err := e.m.Audit(e.admin(), f)
		if err != nil {
			e.t.Fatal(err)
		}
		all = append(all, page...)
		if next == 0 {
			return all
		}
		f.After = next
	}
}

func types(events []pam.Event) []pam.EventType {
	out := make([]pam.EventType, len(events))
	for i, e := range events {
		out[i] = e.Type
	}
	return out
}

// eventsSince returns the audit events after seq.
func (e *env) eventsSince(seq int64) []pam.Event {
	e.t.Helper()
	page, _, err := e.m.Audit(e.admin(), pam.EventFilter{After: seq, Limit: pam.MaxPageSize})
	if err != nil {
		e.t.Fatal(err)
	}
	return page
}

func (e *env) lastSeq() int64 {
	e.t.Helper()
	page, _, err := e.m.Audit(e.admin(), pam.EventFilter{Descending: true, Limit: 1})
	if err != nil {
		e.t.Fatal(err)
	}
	if len(page) == 0 {
		return 0
	}
	return page[0].Seq
}

func fakesStore() pam.Store { return &fakes.Store{OutboxStore: memory.New()} }

// messages lists the outbox as an admin; an error fails the test.
func (e *env) messages(f pam.MessageFilter) []pam.Message {
	e.t.Helper()
	msgs, _, err := e.m.Messages(e.admin(), f)
	if err != nil {
		e.t.Fatal(err)
	}
	return msgs
}
