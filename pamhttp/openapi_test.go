package pamhttp_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/pamhttp"
)

// pageRoutes are the approver page's routes: HTML and forms, not the JSON
// API, so not in the OpenAPI document. A new route is either documented
// or added here.
var pageRoutes = []string{
	"GET /assets/style.css",
	"GET /{$}",
	"GET /requests/{id}",
	"POST /requests",
	"POST /requests/{id}/decide",
	"POST /requests/{id}/extend",
	"GET /assets/page.js",
	"GET /new",
	"POST /bulk",
}

type openAPIDoc struct {
	OpenAPI string `json:"openapi"`
	Paths   map[string]map[string]struct {
		OperationID string `json:"operationId"`
		Parameters  []struct {
			Name     string `json:"name"`
			In       string `json:"in"`
			Required bool   `json:"required"`
		} `json:"parameters"`
		RequestBody *struct {
			Required bool `json:"required"`
		} `json:"requestBody"`
	} `json:"paths"`
	Components struct {
		Schemas   map[string]json.RawMessage `json:"schemas"`
		Responses map[string]json.RawMessage `json:"responses"`
	} `json:"components"`
}

func fetchOpenAPI(t *testing.T, e *env) (openAPIDoc, string) {
	t.Helper()
	st, body, h := e.do("", "GET", "/api/v1/openapi.json", "", "") // no sign-in needed
	if st != 200 || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
		t.Fatalf("GET openapi.json: %d %s\n%s", st, h.Get("Content-Type"), body)
	}
	var doc openAPIDoc
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	return doc, body
}

// TestOpenAPIMatchesTheRoutes: every route the handler serves is in the
// document (or is one of the page's), and every documented route is
// answered by the API, not refused by the mux.
func TestOpenAPIMatchesTheRoutes(t *testing.T) {
	e := newEnv(t)
	doc, _ := fetchOpenAPI(t, e)
	served := map[string]bool{}
	for _, pattern := range pamhttp.Routes(e.h) {
		served[pattern] = true
		method, path, _ := strings.Cut(pattern, " ")
		if rest, ok := strings.CutPrefix(path, "/api/v1"); ok {
			if _, ok := doc.Paths[rest][strings.ToLower(method)]; !ok {
				t.Errorf("%s is served but not in the OpenAPI document", pattern)
			}
			continue
		}
		if !slices.Contains(pageRoutes, pattern) {
			t.Errorf("%s is served, but is neither in the OpenAPI document nor one of the page's routes", pattern)
		}
	}
	for _, p := range pageRoutes {
		if !served[p] {
			t.Errorf("page route %s is not served", p)
		}
	}

	r, err := e.m.Submit(pam.WithActor(context.Background(), "alice"), pam.RequestInput{PolicyID: "move", Reason: "r"})
	if err != nil {
		t.Fatal(err)
	}
	ids := strings.NewReplacer("{id}", r.ID, "{action}", "cancel")
	var n int
	for path, item := range doc.Paths {
		for method, op := range item {
			if op.OperationID == "" {
				t.Errorf("%s %s has no operationId", method, path)
			}
			for _, m := range regexp.MustCompile(`\{([a-z_]+)\}`).FindAllStringSubmatch(path, -1) {
				if !slices.ContainsFunc(op.Parameters, func(p struct {
					Name     string `json:"name"`
					In       string `json:"in"`
					Required bool   `json:"required"`
				}) bool {
					return p.Name == m[1] && p.In == "path" && p.Required
				}) {
					t.Errorf("%s %s does not declare its path parameter %s", method, path, m[1])
				}
			}
			body := ""
			if op.RequestBody != nil {
				body = "{}"
			}
			st, b, h := e.do("admin", strings.ToUpper(method), "/api/v1"+ids.Replace(path), "application/json", body)
			ct := h.Get("Content-Type")
			// The API answers JSON or a problem with a code; the mux's
			// own 404 and 405 are plain text.
			if st == http.StatusMethodNotAllowed || !strings.HasPrefix(ct, "application/json") && (ct != "application/problem+json" || code(t, b) == "") {
				t.Errorf("%s %s: %d %s %s", method, path, st, ct, b)
			}
			n++
		}
	}
	if n != len(pamhttp.Routes(e.h))-len(pageRoutes) {
		t.Errorf("%d documented operations, %d API routes served", n, len(pamhttp.Routes(e.h))-len(pageRoutes))
	}
}

// TestOpenAPIDocument checks the document's references, and that every
// query parameter the Client sends is documented for its operation.
func TestOpenAPIDocument(t *testing.T) {
	e := newEnv(t)
	doc, raw := fetchOpenAPI(t, e)
	var refs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				refs = append(refs, ref)
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	var tree any
	json.Unmarshal([]byte(raw), &tree)
	walk(tree)
	for _, ref := range refs {
		name, ok := strings.CutPrefix(ref, "#/components/schemas/")
		if ok && doc.Components.Schemas[name] != nil {
			continue
		}
		name, ok = strings.CutPrefix(ref, "#/components/responses/")
		if ok && doc.Components.Responses[name] != nil {
			continue
		}
		t.Errorf("$ref %s does not resolve", ref)
	}
	for _, name := range []string{"Policy", "Request", "Decision", "Event", "Message", "CheckAnswer", "PolicyCheck", "VerifyAnswer", "VerifyResult", "TamperError", "Problem", "RequestPage", "EventPage", "MessagePage", "SubmitRequest", "Op", "Catalog", "TaskSpec", "ParamSpec", "ApplyRequest", "Config", "Plan", "PolicyChange"} {
		if doc.Components.Schemas[name] == nil {
			t.Errorf("no schema %s", name)
		}
	}
	if s := string(doc.Components.Schemas["Request"]); !strings.Contains(s, `"duration":{"description"`) || !strings.Contains(s, `"type":["string","integer"]`) {
		t.Errorf("Request's duration: %s", s)
	}

	// The Client, with every filter field set, through a recorder.
	type call struct {
		method, path string
		query        []string
	}
	var mu sync.Mutex
	var calls []call
	srv := httptest.NewServer(http.StripPrefix("/pam", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		var keys []string
		for k := range r.URL.Query() {
			keys = append(keys, k)
		}
		calls = append(calls, call{r.Method, strings.TrimPrefix(r.URL.Path, "/api/v1"), keys})
		mu.Unlock()
		e.h.ServeHTTP(w, r)
	})))
	defer srv.Close()
	c, err := pamhttp.NewClient(srv.URL+"/pam", &pamhttp.ClientOptions{Token: "token-admin"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c.Requests(ctx, pam.RequestFilter{Requester: "alice", PolicyIDs: []string{"move"}, States: []pam.State{pam.Pending}, DecidedBy: "bob", Search: "inc", Newest: true, After: "a", Limit: 5})
	c.ReviewableRequests(ctx, pam.RequestFilter{Requester: "alice", PolicyIDs: []string{"move"}, Search: "inc", Newest: true, After: "a", Limit: 5})
	c.Audit(ctx, pam.EventFilter{Actor: "a", Task: "t", Types: []pam.EventType{pam.EventRequestApproved}, RequestID: "r", PolicyID: "p", Run: "run_1", Outcome: pam.OutcomeOK,
		Since: epoch, Until: epoch.Add(time.Hour), After: 1, Before: 9, Descending: true, Limit: 5})
	c.Messages(ctx, pam.MessageFilter{States: []pam.MessageState{pam.MessageFailed}, RequestID: "r", After: "m", Limit: 5})
	c.Verify(ctx, pam.VerifyOptions{From: 1, To: 2})
	if len(calls) != 5 {
		t.Fatalf("calls %+v", calls)
	}
	for _, cl := range calls {
		var documented []string
		for path, item := range doc.Paths {
			if !regexp.MustCompile("^" + regexp.MustCompile(`\{[a-z_]+\}`).ReplaceAllString(path, "[^/]+") + "$").MatchString(cl.path) {
				continue
			}
			for _, p := range item[strings.ToLower(cl.method)].Parameters {
				if p.In == "query" {
					documented = append(documented, p.Name)
				}
			}
		}
		sort.Strings(cl.query)
		for _, k := range cl.query {
			if !slices.Contains(documented, k) {
				t.Errorf("%s %s: the Client sends %s, which is not documented (%v)", cl.method, cl.path, k, documented)
			}
		}
		if len(cl.query) < len(documented)-1 {
			t.Errorf("%s %s: the Client sends %v of %v", cl.method, cl.path, cl.query, documented)
		}
	}
}
