// Package pamhttp serves the engine over HTTP: a JSON API for what the
// Manager does, described by an OpenAPI 3.1 document, a Go client of that
// API, and a server-rendered approver page that works without
// JavaScript. Mount the handler under any prefix with http.StripPrefix.
//
// # Security
//
// The host authenticates: Options.Authenticate maps each request to an
// actor (its sessions, OIDC, mTLS, bearer tokens…). The handler never
// takes identity from a header of its own. Every state-changing call is
// checked by net/http's CrossOriginProtection (Sec-Fetch-Site and
// Origin), request bodies are capped (MaxBodyBytes; MaxConfigBytes for
// the bodies that carry a whole catalog or config), and user text is
// escaped by html/template on the page and by encoding/json in the API.
//
// # API
//
// The API is below /api/v1/. GET /api/v1/openapi.json returns its OpenAPI
// 3.1 document, built from the same route table the handler serves, with
// the bodies' schemas read from the Go types. Bodies are the root
// package's types in JSON: snake_case names, times in RFC 3339,
// durations as Go duration strings ("2h0m0s"; "2h" and integer
// nanoseconds are accepted on input). Unknown members of a request body
// are refused. Errors are problem details (RFC 9457, Problem) whose code
// names the engine's sentinel, from one table both ways.
//
// # Break-glass
//
// POST /api/v1/breakglass takes a request body as POST /api/v1/requests
// does and answers the approved break-glass request (201; 429 limit
// beyond the policy's BreakGlass.Limit). GET /api/v1/breakglass/reviews
// lists the activations to review (?state= pending, confirmed, flagged;
// default pending and flagged), and POST /api/v1/requests/{id}/confirm
// or /flag records the review. The approver page lists them with confirm
// and flag forms for everyone but their activator.
//
// # Policies as code
//
// GET /api/v1/catalog returns the catalog to anyone signed in; PUT
// replaces it (admins). POST /api/v1/apply takes {"config": pam.Config,
// "dry_run": bool} (ApplyRequest) and answers the pam.Plan that
// Manager.Apply carried out, or with dry_run would: admins only, one
// commit, idempotent. A policy name that a deleted policy had, or two
// policies with one scope and condition, is 409 with code "exists".
// Unmarshal reads a config from a file as strictly as the handler reads
// the body; pamctl apply -f uses it.
//
// # Client
//
// Client calls the API with the Manager's method signatures: both
// *pam.Manager and *Client implement API, so a front end written
// against API runs in process or over HTTP, and errors.Is(err,
// pam.ErrForbidden) and the like hold either way. cmd/pamctl is one.
//
// # Approver page
//
// The page under / is server-rendered and works without JavaScript; its
// one script (assets/page.js, allowed by a strict Content-Security-Policy
// as 'self') only rewrites times into the viewer's time zone. Its tabs
// list what waits for the viewer, their own requests, access in force
// and what they decided, newest first, 50 at a time with Newer and
// Older links carrying the cursor, narrowed by state, access and
// requester and searched by requester, task or ticket; what waits may be
// approved or denied in bulk with one comment, with a sentence per
// request on what happened. /requests/{id}, the page the notifiers link
// to, is where a request is acted on: the decisions so far and what is
// missing (M of N per approver group), the policy in words, the
// requester's recent history for the same access, and the forms the
// viewer's role allows: approve or deny, revoke, end my access, ask for
// more time, confirm or flag a break-glass use. /new is the request
// form; /new?policy=ID opens it with the access chosen. A form that is
// refused keeps what was typed and says what is wrong in a sentence
// next to the field. Every user-supplied string goes through
// pam.DisplayText. A signed-out visitor is sent to Options.SignInURL
// with next. Every link is relative, so the page works under any prefix.
package pamhttp
