package pam_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/internal/fakes"
)

// telemetryEnv is an env whose Manager reports to an SDK meter provider
// read by hand, an in-memory span exporter and a JSON log in memory.
type telemetryEnv struct {
	*env
	reader *sdkmetric.ManualReader
	spans  *tracetest.InMemoryExporter
	tracer *sdktrace.TracerProvider
	log    *fakes.SyncBuffer
}

func newTelemetryEnv(t *testing.T) *telemetryEnv {
	t.Helper()
	te := &telemetryEnv{reader: sdkmetric.NewManualReader(), spans: tracetest.NewInMemoryExporter(), log: &fakes.SyncBuffer{}}
	te.tracer = sdktrace.NewTracerProvider(sdktrace.WithSyncer(te.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(te.reader))
	te.env = newEnv(t, func(o *pam.Options) {
		o.MeterProvider, o.TracerProvider = mp, te.tracer
		o.Logger = slog.New(slog.NewJSONHandler(te.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
		o.AuditSinks[0].Required = true
		o.AuditSinks[0].MinBackoff, o.AuditSinks[0].MaxBackoff = time.Millisecond, 5*time.Millisecond
		o.AuditPollInterval = 5 * time.Millisecond
	})
	return te
}

// collect returns every metric by name.
func (te *telemetryEnv) collect(t *testing.T) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := te.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// attrKey writes a data point's attributes as k=v,k=v.
func attrKey(s attribute.Set) string {
	var parts []string
	for _, kv := range s.ToSlice() {
		parts = append(parts, string(kv.Key)+"="+kv.Value.Emit())
	}
	return strings.Join(parts, ",")
}

// points returns a metric's values by attributes: sums and gauges their
// value, histograms their count.
func points(t *testing.T, m metricdata.Metrics) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		for _, p := range d.DataPoints {
			out[attrKey(p.Attributes)] = float64(p.Value)
		}
	case metricdata.Gauge[int64]:
		for _, p := range d.DataPoints {
			out[attrKey(p.Attributes)] = float64(p.Value)
		}
	case metricdata.Gauge[float64]:
		for _, p := range d.DataPoints {
			out[attrKey(p.Attributes)] = p.Value
		}
	case metricdata.Histogram[float64]:
		for _, p := range d.DataPoints {
			out[attrKey(p.Attributes)] = float64(p.Count)
		}
	default:
		t.Fatalf("%s: unexpected data %T", m.Name, m.Data)
	}
	return out
}

// TestTelemetryScenario scripts a day of work and reads what the
// metrics, spans and log say about it: submit, approve, a Guard allowed
// and one denied, outbox delivery, a sweep expiring the grant, and a
// required audit sink that fails (Guard denies) and recovers.
func TestTelemetryScenario(t *testing.T) {
	te := newTelemetryEnv(t)
	e := te.env
	e.policy(movePolicy())
	vip := movePolicy()
	vip.ID, vip.Scope, vip.Condition = "vip", pam.TaskScope("Set-Mailbox"), "input.op.params.mailbox in data.pam.vip"
	e.policy(vip)
	ctx := context.Background()

	parentCtx, parent := te.tracer.Tracer("test").Start(e.as("alice"), "host.request")
	r, err := e.m.Submit(parentCtx, pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "move the mailbox of a leaver", Duration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	parent.End()
	e.approve("bob", r.ID)
	runCtx, run := te.tracer.Tracer("test").Start(e.as("alice"), "host.run")
	if err := e.m.Guard(runCtx, pam.Op{Task: "New-MoveRequest", Params: map[string]any{"mailbox": "secret@contoso.com"}}, nop); err != nil {
		t.Fatal(err)
	}
	run.End()
	if ran, err := e.guard("carol", "New-MoveRequest", nil); ran || !errors.Is(err, pam.ErrNotApproved) {
		t.Fatalf("carol: ran %v, %v", ran, err)
	}
	// Not a VIP mailbox: the condition leaves it uncovered, the second
	// time from the memo.
	for range 2 {
		if ran, err := e.guard("carol", "Set-Mailbox", map[string]any{"mailbox": "secret@contoso.com"}); !ran || err != nil {
			t.Fatalf("carol, Set-Mailbox: ran %v, %v", ran, err)
		}
	}
	if err := e.m.Guard(e.as("carol"), pam.Op{Task: ""}, nop); !errors.Is(err, pam.ErrInvalid) {
		t.Fatalf("no task: %v", err)
	}
	if got := len(e.delivered()); got == 0 {
		t.Fatal("no notification delivered")
	}
	e.clk.Add(2 * time.Hour)
	if n, err := e.m.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("Sweep: %d, %v", n, err)
	}
	if _, err := e.m.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}

	// The required sink fails: Guard denies until it recovers.
	eventually(t, "the sink to hold the trail", func() bool { return len(e.sink.Events()) == len(e.events()) })
	e.sink.Fail(errors.New("disk full"))
	e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Duration: time.Hour})
	eventually(t, "the sink to fail", func() bool { return !e.m.SinkStatus()[0].Healthy })
	got := te.collect(t)
	if v := points(t, got["pam.audit.sink.healthy"])["pam.sink=test,pam.sink.required=true"]; v != 0 {
		t.Errorf("pam.audit.sink.healthy while failing = %v, want 0", v)
	}
	if v := points(t, got["pam.audit.sink.lag"])["pam.sink=test,pam.sink.required=true"]; v < 1 {
		t.Errorf("pam.audit.sink.lag while failing = %v, want at least 1", v)
	}
	if ran, err := e.guard("svc-backup", "New-MoveRequest", nil); ran || !errors.Is(err, pam.ErrAudit) {
		t.Fatalf("a failing required sink: ran %v, %v", ran, err)
	}
	e.sink.Fail(nil)
	eventually(t, "the sink to recover", func() bool { return e.m.SinkStatus()[0].Healthy })
	eventually(t, "the sink to catch up", func() bool { return len(e.sink.Events()) == len(e.events()) })

	got = te.collect(t)
	type want struct {
		name, unit string
		values     map[string]float64 // a subset of the points
	}
	for _, w := range []want{
		{"pam.guard.decisions", "{decision}", map[string]float64{
			"pam.outcome=allowed,pam.reason=granted":          1,
			"pam.outcome=denied,pam.reason=not_approved":      1,
			"pam.outcome=denied,pam.reason=audit_unavailable": 1,
			"pam.outcome=allowed,pam.reason=uncovered":        2,
			"pam.outcome=error,pam.reason=error":              1,
		}},
		{"pam.checkpoints", "{checkpoint}", map[string]float64{"pam.result=ok": 1}},
		{"pam.condition.duration", "s", map[string]float64{"pam.condition.memo=miss": 1, "pam.condition.memo=hit": 1}},
		{"pam.outbox.oldest_pending.age", "s", map[string]float64{"": 0}},
		{"pam.guard.duration", "s", map[string]float64{
			"pam.outcome=allowed,pam.reason=granted":     1,
			"pam.outcome=denied,pam.reason=not_approved": 1,
		}},
		{"pam.request.transitions", "{transition}", map[string]float64{
			"pam.event=request.submitted": 2,
			"pam.event=request.decision":  1,
			"pam.event=request.approved":  1,
			"pam.event=request.expired":   1,
		}},
		{"pam.outbox.deliveries", "{delivery}", map[string]float64{"pam.notifier=default,pam.result=delivered": 4}},
		{"pam.sweeps", "{sweep}", map[string]float64{"pam.result=ok": 1}},
		{"pam.audit.sink.healthy", "1", map[string]float64{"pam.sink=test,pam.sink.required=true": 1}},
		{"pam.audit.sink.lag", "{event}", map[string]float64{"pam.sink=test,pam.sink.required=true": 0}},
		{"pam.audit.sink.failures", "{failure}", nil},
		{"pam.audit.sink.delivered", "{event}", map[string]float64{"pam.sink=test,pam.sink.required=true": float64(len(e.events()))}},
		{"pam.audit.sink.write.duration", "s", nil},
		{"pam.store.commit.duration", "s", nil},
	} {
		m, ok := got[w.name]
		if !ok {
			t.Errorf("no metric %s", w.name)
			continue
		}
		if m.Unit != w.unit {
			t.Errorf("%s: unit %q, want %q", w.name, m.Unit, w.unit)
		}
		p := points(t, m)
		for k, v := range w.values {
			if p[k] != v {
				t.Errorf("%s{%s} = %v, want %v (all: %v)", w.name, k, p[k], v, p)
			}
		}
	}
	// The store's counts, as the store says them.
	counts, err := e.store.Counts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int64{"pam.requests.pending": counts.PendingRequests, "pam.outbox.pending": counts.PendingMessages,
		"pam.outbox.parked": counts.ParkedMessages} {
		if p := points(t, got[name]); p[""] != float64(want) || got[name].Unit == "" {
			t.Errorf("%s = %v, want %d", name, p, want)
		}
	}
	if p := points(t, got["pam.audit.sink.failures"]); p["pam.sink=test,pam.sink.required=true"] < 1 {
		t.Errorf("pam.audit.sink.failures = %v, want at least 1", p)
	}
	logTable(t, got)

	// Spans: Guard under the caller's span, with task, outcome and
	// policies, and never a parameter value.
	spans := te.spans.GetSpans()
	var guardSpan *tracetest.SpanStub
	for i, s := range spans {
		for _, a := range s.Attributes {
			if strings.Contains(a.Value.Emit(), "secret@contoso.com") {
				t.Errorf("span %s carries a parameter value: %v", s.Name, a)
			}
		}
		if s.Name == "pam.Guard" && s.Parent.SpanID() == run.SpanContext().SpanID() {
			guardSpan = &spans[i]
		}
	}
	if guardSpan == nil {
		t.Fatal("no pam.Guard span under the caller's span")
	}
	attrs := map[string]string{}
	for _, a := range guardSpan.Attributes {
		attrs[string(a.Key)] = a.Value.Emit()
	}
	if diff := fmt.Sprint(attrs); attrs["pam.task"] != "New-MoveRequest" || attrs["pam.outcome"] != "allowed" || attrs["pam.reason"] != "granted" || attrs["pam.policy_ids"] != `["move"]` {
		t.Errorf("pam.Guard attributes: %s", diff)
	}
	for _, name := range []string{"pam.request.submit", "pam.request.approve", "pam.Sweep", "pam.request.expire", "pam.notify", "pam.audit.sink.write"} {
		if !slices.ContainsFunc(spans, func(s tracetest.SpanStub) bool { return s.Name == name }) {
			t.Errorf("no %s span", name)
		}
	}
	if !slices.ContainsFunc(spans, func(s tracetest.SpanStub) bool {
		return s.Name == "pam.request.submit" && s.Parent.SpanID() == parent.SpanContext().SpanID()
	}) {
		t.Error("pam.request.submit is not under the caller's span")
	}
	t.Log("spans:\n" + spanTree(spans))

	// The log: the sink's failure at Error, its recovery at Info, the
	// sweep at Debug, and OnError's errors at Warn.
	log := te.log.String()
	for _, want := range []string{
		`"level":"ERROR","msg":"pam: a required audit sink is failing`,
		`"level":"INFO","msg":"pam: audit sink recovered","sink":"test","required":true`,
		`"level":"DEBUG","msg":"pam: sweep","recorded":1`,
		`"level":"DEBUG","msg":"pam: checkpoint","seq":`,
		`"level":"WARN","msg":"pam: error","error":"pam: audit sink test`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %s:\n%s", want, log)
		}
	}
	if strings.Contains(log, "secret@contoso.com") {
		t.Error("the log carries a parameter value")
	}
	if len(e.errors.Take()) == 0 {
		t.Error("OnError heard nothing of the failing sink")
	}
}

// logTable logs the metrics as name{attributes} value.
func logTable(t *testing.T, got map[string]metricdata.Metrics) {
	t.Helper()
	var lines []string
	for name, m := range got {
		for k, v := range points(t, m) {
			kind := ""
			if _, ok := m.Data.(metricdata.Histogram[float64]); ok {
				kind = " (count)"
			}
			lines = append(lines, fmt.Sprintf("%-32s %-6s {%s} %v%s", name, m.Unit, k, v, kind))
		}
	}
	sort.Strings(lines)
	t.Log("metrics:\n" + strings.Join(lines, "\n"))
}

// spanTree prints spans as a tree, children under their parents.
func spanTree(spans tracetest.SpanStubs) string {
	children := map[string][]tracetest.SpanStub{}
	ids := map[string]bool{}
	for _, s := range spans {
		ids[s.SpanContext.SpanID().String()] = true
	}
	var roots []tracetest.SpanStub
	for _, s := range spans {
		if p := s.Parent.SpanID().String(); s.Parent.IsValid() && ids[p] {
			children[p] = append(children[p], s)
		} else {
			roots = append(roots, s)
		}
	}
	var b strings.Builder
	var walk func(s tracetest.SpanStub, depth int)
	walk = func(s tracetest.SpanStub, depth int) {
		var as []string
		for _, a := range s.Attributes {
			as = append(as, string(a.Key)+"="+a.Value.Emit())
		}
		status := ""
		if s.Status.Code.String() == "Error" {
			status = " status=" + s.Status.Description
		}
		fmt.Fprintf(&b, "%s%s [%s]%s\n", strings.Repeat("  ", depth), s.Name, strings.Join(as, " "), status)
		for _, c := range children[s.SpanContext.SpanID().String()] {
			walk(c, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
	return b.String()
}
