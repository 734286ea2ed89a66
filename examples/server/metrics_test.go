package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/pamhttp"
)

// TestMetricsAndHealth runs a scripted scenario through the server and
// checks that /metrics says what the SDK's own reader saw: Guard
// decisions by outcome and reason, and request transitions.
func TestMetricsAndHealth(t *testing.T) {
	ctx := context.Background()
	reader := sdkmetric.NewManualReader()
	s, err := New(ctx, filepath.Join(t.TempDir(), "pam.db"), slog.New(slog.NewJSONHandler(io.Discard, nil)), reader)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)

	client := func(user string) *pamhttp.Client {
		c, err := pamhttp.NewClient(srv.URL+"/pam", &pamhttp.ClientOptions{Token: "demo-" + user})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	runOp := func(user, task string) int {
		req, _ := http.NewRequest("POST", srv.URL+"/ops/"+task, strings.NewReader(url.Values{"arg": {"leaver@contoso.com"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: "demo_user", Value: user})
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}

	if st := runOp("alice", "New-MoveRequest"); st != http.StatusForbidden {
		t.Fatalf("alice without a grant: %d", st)
	}
	r, err := client("alice").Submit(ctx, pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "INC-1: move a leaver's mailbox", Duration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client("bob").Approve(ctx, r.ID, "ok"); err != nil {
		t.Fatal(err)
	}
	if st := runOp("alice", "New-MoveRequest"); st != http.StatusOK {
		t.Fatalf("alice with a grant: %d", st)
	}
	if st := runOp("carol", "Drop-Table"); st != http.StatusForbidden {
		t.Fatalf("carol: %d", st)
	}

	want := map[string]float64{
		`pam_guard_decisions_total{pam_outcome="allowed",pam_reason="granted"}`:     1,
		`pam_guard_decisions_total{pam_outcome="denied",pam_reason="not_approved"}`: 2,
		`pam_request_transitions_total{pam_event="request.submitted"}`:              1,
		`pam_request_transitions_total{pam_event="request.decision"}`:               1,
		`pam_request_transitions_total{pam_event="request.approved"}`:               1,
	}
	// What the SDK's reader saw, in the same form.
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	sdk := map[string]float64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok {
				for _, p := range sum.DataPoints {
					sdk[promName(m.Name)+"_total{"+promLabels(p.Attributes)+"}"] = float64(p.Value)
				}
			}
		}
	}
	// The SQLite store's group commit, through pam.GroupCommitter.
	txs, commits := sdk["pam_store_group_commit_transactions_total{}"], sdk["pam_store_group_commit_commits_total{}"]
	t.Logf("group commit: %v transactions, %v commits", txs, commits)
	if txs < 1 || commits < txs {
		t.Errorf("group commit: %v transactions, %v commits", txs, commits)
	}
	scraped := scrape(t, srv.URL+"/metrics")
	for k, v := range want {
		if sdk[k] != v {
			t.Errorf("reader: %s = %v, want %v", k, sdk[k], v)
		}
		if scraped[k] != v {
			t.Errorf("/metrics: %s = %v, want %v", k, scraped[k], v)
		}
		t.Logf("%s reader=%v /metrics=%v", k, sdk[k], scraped[k])
	}

	for _, path := range []string{"/livez", "/readyz"} {
		res, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("%s: %d %s", path, res.StatusCode, body)
		}
	}
}

// promName is an OpenTelemetry metric name as Prometheus spells it.
func promName(n string) string { return strings.ReplaceAll(n, ".", "_") }

// promLabels writes attributes as Prometheus labels, sorted by key.
func promLabels(s attribute.Set) string {
	var parts []string
	for _, kv := range s.ToSlice() {
		parts = append(parts, promName(string(kv.Key))+`="`+kv.Value.Emit()+`"`)
	}
	return strings.Join(parts, ",")
}

// scrape reads the Prometheus text at u into name{labels} → value,
// leaving out the otel_scope_* labels the exporter adds.
func scrape(t *testing.T, u string) map[string]float64 {
	t.Helper()
	res, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		series := line[:i]
		name, labels, ok := strings.Cut(series, "{")
		if ok {
			var keep []string
			for _, l := range strings.Split(strings.TrimSuffix(labels, "}"), ",") {
				if !strings.HasPrefix(l, "otel_scope_") {
					keep = append(keep, l)
				}
			}
			series = name + "{" + strings.Join(keep, ",") + "}"
		}
		out[series] = v
	}
	return out
}
