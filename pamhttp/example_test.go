package pamhttp_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/pamhttp"
	"github.com/zerostanding/pam/store/memory"
)

// ask is front-end code written once against pamhttp.API: it runs on a
// Manager in process and on a Client over HTTP alike.
func ask(ctx context.Context, api pamhttp.API, task string) (pam.Request, error) {
	return api.Submit(ctx, pam.RequestInput{Scope: pam.TaskScope(task), Reason: "INC-4711: leaver", Duration: 2 * time.Hour})
}

func ExampleNewClient() {
	dir, _ := pam.NewStaticDirectory(map[string][]string{"pam-admins": {"admin"}, "approvers": {"bob"}})
	m, _ := pam.New(memory.New(), dir, &pam.Options{AdminGroup: "pam-admins"})
	m.CreatePolicy(pam.WithActor(context.Background(), "admin"), pam.Policy{ID: "move", Scope: pam.TaskScope("New-MoveRequest"),
		Approval: pam.Manual, ApproverGroups: []pam.ApproverGroup{{Group: "approvers"}}})

	// The server: the host authenticates, here with bearer tokens that
	// are user names (never do that).
	h, _ := pamhttp.New(m, pamhttp.Options{Authenticate: func(r *http.Request) (string, error) {
		user, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			return "", errors.New("no token")
		}
		return user, nil
	}})
	srv := httptest.NewServer(http.StripPrefix("/pam", h))
	defer srv.Close()

	// The client, as alice.
	alice, _ := pamhttp.NewClient(srv.URL+"/pam", &pamhttp.ClientOptions{Token: "alice"})
	ctx := context.Background()
	r, _ := ask(ctx, alice, "New-MoveRequest")
	fmt.Println(r.Requester, r.State, r.Duration)

	// The engine's errors come back as themselves.
	_, err := alice.Approve(ctx, r.ID, "looks fine to me")
	fmt.Println(errors.Is(err, pam.ErrSelfApproval), errors.Is(err, pam.ErrForbidden))

	// The same code in process.
	r, _ = ask(pam.WithActor(ctx, "alice"), m, "New-MoveRequest")
	fmt.Println(r.Requester, r.State, r.Duration)
	// Output:
	// alice pending 2h0m0s
	// true true
	// alice pending 2h0m0s
}

func ExampleUnmarshal() {
	// A policy file, strictly: a misspelt member is an error that says
	// where, not a default silently taken.
	var cfg pam.Config
	err := pamhttp.Unmarshal([]byte(`{"policies": {"move": {"scope": {"kind": "task", "name": "New-MoveRequest"}, "aproval": "auto"}}}`), &cfg)
	fmt.Println(errors.Is(err, pam.ErrInvalid), err)

	err = pamhttp.Unmarshal([]byte(`{"policies": {"move": {"scope": {"kind": "task", "name": "New-MoveRequest"}, "approval": "auto", "max_duration": "4h"}}}`), &cfg)
	fmt.Println(err, cfg.Policies["move"].MaxDuration)
	// Output:
	// true pam: invalid input: json: unknown field "aproval" in policies.move
	// <nil> 4h0m0s
}
