package pam_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/internal/fakes"
	"github.com/zerostanding/pam/sinks"
	"github.com/zerostanding/pam/store/memory"
)

// specHash recomputes H(n) from the encoding as the documentation of
// ChainHash writes it, without the package's code: a third party's
// verifier.
func specHash(t *testing.T, e pam.Event) string {
	t.Helper()
	str := func(b *bytes.Buffer, s string) {
		binary.Write(b, binary.BigEndian, uint32(len(s)))
		b.WriteString(s)
	}
	var c bytes.Buffer
	fields := []string{string(e.Type), e.Actor, e.RequestID, e.PolicyID, e.Task, string(e.Outcome)}
	if e.Run == "" {
		str(&c, "pam.event.v1")
	} else {
		str(&c, "pam.event.v2")
		fields = append(fields, e.Run)
	}
	binary.Write(&c, binary.BigEndian, e.Time.UnixNano())
	for _, s := range fields {
		str(&c, s)
	}
	binary.Write(&c, binary.BigEndian, uint32(len(e.Detail)))
	keys := make([]string, 0, len(e.Detail))
	for k := range e.Detail {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		str(&c, k)
		str(&c, e.Detail[k])
	}
	d := sha256.Sum256(c.Bytes())
	prev, err := hex.DecodeString(e.PrevHash)
	if err != nil || len(prev) != 32 {
		t.Fatalf("event %d: prev_hash %q", e.Seq, e.PrevHash)
	}
	var h bytes.Buffer
	h.WriteString("pam.chain.v1")
	binary.Write(&h, binary.BigEndian, e.Seq)
	h.Write(prev)
	h.Write(d[:])
	sum := sha256.Sum256(h.Bytes())
	return hex.EncodeToString(sum[:])
}

func TestChainFollowsTheDocumentedEncoding(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	r := e.grant("Ålice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest"), Reason: "leaver — ünïcode"})
	e.guard("ålice", "New-MoveRequest", map[string]any{"mailbox": "x"})
	e.m.Revoke(e.admin(), r.ID, "done")
	events := e.events()
	if len(events) < 6 {
		t.Fatalf("only %d events", len(events))
	}
	prev := pam.GenesisHash
	for i, ev := range events {
		if ev.Seq != int64(i+1) || ev.PrevHash != prev {
			t.Fatalf("event %d: seq %d, prev_hash %s, want %s", i+1, ev.Seq, ev.PrevHash, prev)
		}
		if got := specHash(t, ev); got != ev.Hash {
			t.Fatalf("event %d (%s): hash %s, the documented encoding gives %s", ev.Seq, ev.Type, ev.Hash, got)
		}
		if err := ev.CheckHash(); err != nil {
			t.Fatal(err)
		}
		prev = ev.Hash
	}
	if res, err := e.m.Verify(e.admin(), pam.VerifyOptions{}); err != nil || res.Events != int64(len(events)) || res.Head != prev {
		t.Fatalf("Verify = %+v, %v", res, err)
	}
	// A changed field, detail entry or time no longer matches.
	for name, change := range map[string]func(*pam.Event){
		"actor":  func(e *pam.Event) { e.Actor = "mallory" },
		"run":    func(e *pam.Event) { e.Run = "run-1" },
		"detail": func(e *pam.Event) { e.Detail = map[string]string{"x": "y"} },
		"time":   func(e *pam.Event) { e.Time = e.Time.Add(time.Nanosecond) },
		"seq":    func(e *pam.Event) { e.Seq++ },
	} {
		ev := events[2]
		change(&ev)
		if err := ev.CheckHash(); !errors.Is(err, pam.ErrTampered) {
			t.Errorf("%s changed: CheckHash = %v", name, err)
		}
	}
	// A run's start and end carry its ID in the digest: neither can be
	// moved to another run, or stripped of it.
	runs := 0
	for _, ev := range events {
		if ev.Run == "" {
			continue
		}
		runs++
		for name, change := range map[string]func(*pam.Event){"run stripped": func(e *pam.Event) { e.Run = "" }, "run changed": func(e *pam.Event) { e.Run += "x" }} {
			ev := ev
			change(&ev)
			if err := ev.CheckHash(); !errors.Is(err, pam.ErrTampered) {
				t.Errorf("%s %s: CheckHash = %v", ev.Type, name, err)
			}
		}
	}
	if runs != 2 {
		t.Errorf("%d events carry a run, want the start and the end", runs)
	}
}

// tamperedStore shows Verify a doctored trail: every stored event passes
// through edit, which may change, drop or move it.
type tamperedStore struct {
	pam.Store
	edit func([]pam.Event) []pam.Event
}

func (s *tamperedStore) Events(ctx context.Context, f pam.EventFilter) ([]pam.Event, error) {
	all, err := s.Store.Events(ctx, pam.EventFilter{})
	if err != nil {
		return nil, err
	}
	all = s.edit(all)
	var out []pam.Event
	for _, e := range all {
		if e.Seq > f.After && (f.Before == 0 || e.Seq < f.Before) {
			out = append(out, e)
		}
	}
	if f.Descending {
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

func TestVerifyReportsHowTheTrailWasChanged(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(nil)
	otherPub, otherKey, _ := ed25519.GenerateKey(nil)
	ckpts := &fakes.Checkpoints{}
	e := newEnv(t, func(o *pam.Options) { o.CheckpointKey, o.CheckpointSinks = key, []pam.CheckpointSink{ckpts} })
	e.policy(movePolicy())
	for range 5 {
		e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
		e.guard("alice", "New-MoveRequest", nil)
	}
	cp, err := e.m.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := ckpts.All(); len(got) != 1 || !cmp.Equal(got[0], cp) {
		t.Fatalf("checkpoint sink got %+v, Checkpoint returned %+v", got, cp)
	}
	head := e.lastSeq()
	if cp.Seq != head || cp.KeyID != pam.KeyID(pub) || len(cp.Signature) != ed25519.SignatureSize || !cp.Time.Equal(epoch) {
		t.Fatalf("checkpoint %+v, head %d", cp, head)
	}
	resigned := func(c pam.Checkpoint, k ed25519.PrivateKey) pam.Checkpoint {
		if err := c.Sign(k); err != nil {
			t.Fatal(err)
		}
		return c
	}
	forged := cp
	forged.Hash = strings.Repeat("ab", 32)
	later := cp
	later.Time = later.Time.Add(time.Second)
	beyond := resigned(pam.Checkpoint{Seq: head + 3, Hash: cp.Hash, Time: cp.Time}, key)

	// alter rewrites an event's actor; rehash re-chains everything after.
	alter := func(seq int64, rehash bool) func([]pam.Event) []pam.Event {
		return func(all []pam.Event) []pam.Event {
			all[seq-1].Actor = "mallory"
			if rehash {
				for i := seq - 1; i < int64(len(all)); i++ {
					prev := pam.GenesisHash
					if i > 0 {
						prev = all[i-1].Hash
					}
					all[i].Chain(all[i].Seq, prev)
				}
			}
			return all
		}
	}
	tests := []struct {
		name   string
		edit   func([]pam.Event) []pam.Event
		opts   pam.VerifyOptions
		seq    int64
		reason pam.TamperReason
	}{
		{name: "untouched", opts: pam.VerifyOptions{Checkpoints: []pam.Checkpoint{cp}, PublicKeys: []ed25519.PublicKey{pub}}},
		{name: "untouched, unsigned checkpoints accepted without keys", opts: pam.VerifyOptions{Checkpoints: []pam.Checkpoint{{Seq: cp.Seq, Hash: cp.Hash, Time: cp.Time}}}},
		{name: "untouched, a range", opts: pam.VerifyOptions{From: 3, To: 7}},
		{name: "altered", edit: alter(4, false), seq: 4, reason: pam.ReasonAltered},
		{name: "altered and re-chained: the link breaks", edit: func(all []pam.Event) []pam.Event {
			all = alter(4, true)(all)
			all[4].Chain(all[4].Seq, strings.Repeat("0", 64)) // stop the re-chaining at 4
			return all
		}, seq: 5, reason: pam.ReasonBrokenLink},
		{name: "history rewritten to the head: only the checkpoint sees it", edit: alter(4, true), opts: pam.VerifyOptions{Checkpoints: []pam.Checkpoint{cp}}, seq: head, reason: pam.ReasonCheckpointMismatch},
		{name: "rewritten history without checkpoints verifies", edit: alter(4, true)},
		{name: "gap", edit: func(all []pam.Event) []pam.Event { return append(all[:5:5], all[6:]...) }, seq: 6, reason: pam.ReasonGap},
		{name: "removed and renumbered", edit: func(all []pam.Event) []pam.Event {
			all = append(all[:5:5], all[6:]...)
			for i := 5; i < len(all); i++ {
				all[i].Seq--
			}
			return all
		}, seq: 6, reason: pam.ReasonBrokenLink},
		{name: "two events swapped", edit: func(all []pam.Event) []pam.Event {
			all[6], all[7] = all[7], all[6]
			all[6].Seq, all[7].Seq = 7, 8
			return all
		}, seq: 7, reason: pam.ReasonReordered},
		{name: "malformed", edit: func(all []pam.Event) []pam.Event {
			all[3].Malformed = "detail: key \"a\" twice"
			return all
		}, seq: 4, reason: pam.ReasonMalformed},
		{name: "malformed before its hash is checked", edit: func(all []pam.Event) []pam.Event {
			all[3].Malformed, all[3].PrevHash, all[3].Hash = "hash is 16 bytes, not 32", "", all[3].Hash[:32]
			return all
		}, seq: 4, reason: pam.ReasonMalformed},
		{name: "a malformed anchor", edit: func(all []pam.Event) []pam.Event {
			all[3].Malformed = "time is a text"
			return all
		}, opts: pam.VerifyOptions{From: 5}, seq: 4, reason: pam.ReasonMalformed},
		{name: "numbered 0", edit: func(all []pam.Event) []pam.Event {
			all[4].Seq = 0
			return append([]pam.Event{all[4]}, append(all[:4:4], all[5:]...)...)
		}, seq: 0, reason: pam.ReasonMalformed},
		{name: "numbered 0, outside the range", edit: func(all []pam.Event) []pam.Event {
			all[4].Seq = 0
			return append([]pam.Event{all[4]}, append(all[:4:4], all[5:]...)...)
		}, opts: pam.VerifyOptions{From: 7}},
		{name: "truncated after a checkpoint", edit: func(all []pam.Event) []pam.Event { return all[:head-2] },
			opts: pam.VerifyOptions{Checkpoints: []pam.Checkpoint{cp}}, seq: head - 1, reason: pam.ReasonTruncated},
		{name: "a checkpoint past the head", opts: pam.VerifyOptions{Checkpoints: []pam.Checkpoint{beyond}}, seq: head + 1, reason: pam.ReasonTruncated},
		{name: "forged checkpoint", opts: pam.VerifyOptions{Checkpoints: []pam.Checkpoint{forged}, PublicKeys: []ed25519.PublicKey{pub}}, seq: head, reason: pam.ReasonBadSignature},
		{name: "checkpoint time changed", opts: pam.VerifyOptions{Checkpoints: []pam.Checkpoint{later}, PublicKeys: []ed25519.PublicKey{pub}}, seq: head, reason: pam.ReasonBadSignature},
		{name: "checkpoint by another key", opts: pam.VerifyOptions{Checkpoints: []pam.Checkpoint{resigned(forged, otherKey)}, PublicKeys: []ed25519.PublicKey{pub}}, seq: head, reason: pam.ReasonBadSignature},
		{name: "another key's checkpoint with both keys: the forged hash shows", opts: pam.VerifyOptions{Checkpoints: []pam.Checkpoint{resigned(forged, otherKey)}, PublicKeys: []ed25519.PublicKey{pub, otherPub}}, seq: head, reason: pam.ReasonCheckpointMismatch},
		{name: "unsigned checkpoint when keys are given", opts: pam.VerifyOptions{Checkpoints: []pam.Checkpoint{{Seq: cp.Seq, Hash: cp.Hash, Time: cp.Time}}, PublicKeys: []ed25519.PublicKey{pub}}, seq: head, reason: pam.ReasonBadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s pam.Store = e.store
			if tc.edit != nil {
				s = &tamperedStore{Store: e.store, edit: tc.edit}
			}
			tc.opts.PageSize = 3 // cross page boundaries
			res, err := pam.Verify(context.Background(), s, tc.opts)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("Verify = %v", err)
				}
				return
			}
			var te *pam.TamperError
			if !errors.As(err, &te) || !errors.Is(err, pam.ErrTampered) {
				t.Fatalf("Verify = %+v, %v; want %s at %d", res, err, tc.reason, tc.seq)
			}
			if te.Seq != tc.seq || te.Reason != tc.reason {
				t.Fatalf("Verify = %v; want %s at %d", err, tc.reason, tc.seq)
			}
		})
	}
	if _, err := e.m.Verify(e.admin(), pam.VerifyOptions{From: 5, To: 2}); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("Verify(From 5, To 2) = %v, want ErrInvalid", err)
	}
}

func TestRunMakesCheckpointsWhenTheTrailGrows(t *testing.T) {
	ckpts := &fakes.Checkpoints{}
	e := newEnv(t, func(o *pam.Options) {
		o.CheckpointSinks, o.CheckpointInterval, o.SweepInterval = []pam.CheckpointSink{ckpts}, time.Hour, 24*time.Hour
	})
	e.policy(movePolicy())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.m.Run(ctx) }()
	waitFor(t, func() bool { return e.store.RequestsCalls() > 0 }) // Run's tickers exist
	e.clk.Add(time.Hour)
	waitFor(t, func() bool { return len(ckpts.All()) == 1 })
	e.clk.Add(time.Hour) // nothing new: no checkpoint
	e.submit("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	e.clk.Add(time.Hour)
	waitFor(t, func() bool { return len(ckpts.All()) == 2 })
	cancel()
	<-done
	got := ckpts.All()
	if got[0].Seq != 1 || got[1].Seq != 2 || got[1].Signature != nil || !got[1].Time.Equal(epoch.Add(3*time.Hour)) {
		t.Errorf("checkpoints %+v", got)
	}
	if _, err := e.m.Verify(e.admin(), pam.VerifyOptions{Checkpoints: got}); err != nil {
		t.Error(err)
	}
}

func fastRetry(c pam.SinkConfig) pam.SinkConfig {
	c.MinBackoff, c.MaxBackoff = time.Millisecond, 5*time.Millisecond
	return c
}

func TestBestEffortSinkOutageIsRecordedAndCaughtUp(t *testing.T) {
	sink := &fakes.Sink{}
	e := newEnv(t, func(o *pam.Options) {
		o.AuditSinks = []pam.SinkConfig{fastRetry(pam.SinkConfig{Name: "siem", Sink: sink})}
	})
	sink.Fail(errors.New("disk full"))
	e.policy(movePolicy())
	// Counted by the worker, which reports each failure before it tries
	// again: six failures counted means five reported.
	eventually(t, "retries", func() bool { return e.m.SinkStatus()[0].Failures >= 6 })
	// The outage neither blocks nor denies anything.
	e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	if ran, err := e.guard("alice", "New-MoveRequest", nil); !ran || err != nil {
		t.Fatalf("Guard with a failing best-effort sink: ran %v, %v", ran, err)
	}
	st := e.m.SinkStatus()[0]
	if st.Healthy || st.Failures < 5 || !strings.Contains(st.LastError, "disk full") || st.Name != "siem" || st.Required {
		t.Errorf("status %+v", st)
	}
	if errs := e.errors.Take(); len(errs) < 5 || !strings.Contains(errs[0].Error(), "disk full") {
		t.Errorf("OnError got %d errors: %v", len(errs), errs)
	}
	sink.Fail(nil)
	// Caught up once the sink holds the whole trail, its recovery (which
	// the worker records after the write that succeeded) included.
	eventually(t, "catching up", func() bool {
		all := e.events()
		return len(sink.Events()) == len(all) && all[len(all)-1].Type == pam.EventSinkRecovered
	})
	all := e.events()
	if d := cmp.Diff(all, sink.Events()); d != "" {
		t.Fatalf("sink (-store +sink):\n%s", d)
	}
	var outage []pam.EventType
	for _, ev := range all {
		if ev.Type == pam.EventSinkFailed || ev.Type == pam.EventSinkRecovered {
			outage = append(outage, ev.Type)
			if ev.Detail["sink"] != "siem" || ev.Outcome != "best_effort" {
				t.Errorf("%+v", ev)
			}
		}
	}
	if d := cmp.Diff([]pam.EventType{pam.EventSinkFailed, pam.EventSinkRecovered}, outage); d != "" {
		t.Errorf("one failure and one recovery are recorded (-want +got):\n%s", d)
	}
	if st := e.m.SinkStatus()[0]; !st.Healthy || st.Delivered != int64(len(all)) || st.Cursor != all[len(all)-1].Seq {
		t.Errorf("status %+v after catching up with %d events", st, len(all))
	}
	if err := e.m.Close(context.Background()); err != nil {
		t.Errorf("Close = %v", err)
	}
}

func TestRequiredSinkFailsClosed(t *testing.T) {
	sink := &fakes.Sink{}
	e := newEnv(t, func(o *pam.Options) {
		o.AuditSinks = []pam.SinkConfig{fastRetry(pam.SinkConfig{Name: "vault", Sink: sink, Required: true})}
		o.AuditTimeout = 200 * time.Millisecond
	})
	e.policy(movePolicy())
	e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})

	// Healthy: fn runs only once its start event is in the sink.
	err := e.m.Guard(e.as("alice"), pam.Op{Task: "New-MoveRequest"}, func(context.Context) error {
		got := sink.Events()
		if last := got[len(got)-1]; last.Type != pam.EventGuardAllowed || last.Actor != "alice" {
			t.Errorf("fn runs before its start event reached the required sink; sink ends with %+v", last)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Failing: the first call finds out and does not run fn; later calls
	// are denied at once.
	// Let the sink take guard.finished first, so the next write to fail
	// is the next Guard's.
	caughtUp := func() bool { return len(sink.Events()) == len(e.events()) }
	eventually(t, "the sink", caughtUp)
	sink.Fail(errors.New("audit device unreachable"))
	for i := range 3 {
		ran, err := e.guard("alice", "New-MoveRequest", nil)
		if ran || !errors.Is(err, pam.ErrAudit) || !strings.Contains(err.Error(), "audit device unreachable") {
			t.Fatalf("call %d with the required sink failing: ran %v, %v", i, ran, err)
		}
	}
	// Hanging: denied after AuditTimeout.
	sink.Fail(nil)
	eventually(t, "recovery", func() bool { return e.m.SinkStatus()[0].Healthy })
	eventually(t, "the sink", caughtUp) // sink.recovered included
	sink.Hang(true)
	ran, err := e.guard("alice", "New-MoveRequest", nil)
	if ran || !errors.Is(err, pam.ErrAudit) || !strings.Contains(err.Error(), "within 200ms") && !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("with the required sink hanging: ran %v, %v", ran, err)
	}
	sink.Hang(false)
	defer func() {
		if t.Failed() {
			t.Logf("sink %d store %d status %+v", len(sink.Events()), len(e.events()), e.m.SinkStatus())
		}
	}()
	// Healthy once its recovery is recorded; then caught up with it.
	eventually(t, "catching up", func() bool {
		return e.m.SinkStatus()[0].Healthy && len(sink.Events()) == len(e.events())
	})

	// The trail says what happened to each attempt, and records each
	// outage once. The sink worker and Guard record concurrently, so the
	// two sequences interleave in no fixed order.
	var guards, outages []string
	for _, ev := range e.events() {
		switch {
		case strings.HasPrefix(string(ev.Type), "guard."):
			guards = append(guards, string(ev.Type)+"/"+string(ev.Outcome))
		case strings.HasPrefix(string(ev.Type), "sink."):
			outages = append(outages, string(ev.Type)+"/"+string(ev.Outcome))
		}
	}
	want := []string{
		"guard.allowed/granted", "guard.finished/ok", // healthy
		"guard.allowed/granted", "guard.finished/not_run", // found out while waiting
		"guard.denied/audit_unavailable", "guard.denied/audit_unavailable", // known down
		"guard.allowed/granted", "guard.finished/not_run", // hanging
	}
	if d := cmp.Diff(want, guards); d != "" {
		t.Errorf("guard events (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"sink.failed/required", "sink.recovered/required", "sink.failed/required", "sink.recovered/required"}, outages); d != "" {
		t.Errorf("sink events (-want +got):\n%s", d)
	}
	if d := cmp.Diff(e.events(), sink.Events()); d != "" {
		t.Errorf("sink (-store +sink):\n%s", d)
	}
}

// resumingSink holds events up to Last already.
type resumingSink struct {
	fakes.Sink
	Last int64
}

func (s *resumingSink) LastSeq(context.Context) (int64, error) { return s.Last, nil }

func TestSinksStartAtTheHeadOrTheirResumePoint(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	head := e.lastSeq()

	plain, resuming := &fakes.Sink{}, &resumingSink{Last: 2}
	m, err := pam.New(e.store, e.dir, &pam.Options{Clock: e.clk, Catalog: testCatalog, AdminGroup: "pam-admins",
		AuditSinks: []pam.SinkConfig{{Sink: plain}, {Sink: resuming}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Guard(e.as("alice"), pam.Op{Task: "New-MoveRequest"}, func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	seqs := func(evs []pam.Event) []int64 {
		var out []int64
		for _, e := range evs {
			out = append(out, e.Seq)
		}
		return out
	}
	if d := cmp.Diff([]int64{head + 1, head + 2}, seqs(plain.Events())); d != "" {
		t.Errorf("a new sink gets what is committed after the Manager starts (-want +got):\n%s", d)
	}
	want := []int64{}
	for s := int64(3); s <= head+2; s++ {
		want = append(want, s)
	}
	if d := cmp.Diff(want, seqs(resuming.Events())); d != "" {
		t.Errorf("a resuming sink continues after its last event (-want +got):\n%s", d)
	}
	if st := m.SinkStatus(); st[0].Name != "sink0" || st[1].Name != "sink1" {
		t.Errorf("default names: %+v", st)
	}
}

func TestSinkOptionsAreValidated(t *testing.T) {
	dir, _ := pam.NewStaticDirectory(testGroups)
	for name, o := range map[string]pam.Options{
		"nil sink":         {AuditSinks: []pam.SinkConfig{{Name: "x"}}},
		"bad name":         {AuditSinks: []pam.SinkConfig{{Name: "a\x00b", Sink: &fakes.Sink{}}}},
		"negative backoff": {AuditSinks: []pam.SinkConfig{{Sink: &fakes.Sink{}, MinBackoff: -1}}},
		"negative timeout": {AuditTimeout: -1},
		"short key":        {CheckpointKey: make(ed25519.PrivateKey, 10)},
	} {
		o.AdminGroup = "pam-admins"
		if _, err := pam.New(memory.New(), dir, &o); !errors.Is(err, pam.ErrInvalid) {
			t.Errorf("%s: New = %v, want ErrInvalid", name, err)
		}
	}
}

// stuckSink ignores its context: each Write blocks until release is
// closed.
type stuckSink struct{ release chan struct{} }

func (s *stuckSink) Write(context.Context, []pam.Event) error { <-s.release; return nil }

// TestRequiredSinkThatIgnoresItsContext: a required sink whose Write
// never returns holds Guard for one audit timeout at most, then every
// Guard is denied at once, and Close returns when its context ends.
func TestRequiredSinkThatIgnoresItsContext(t *testing.T) {
	stuck := &stuckSink{release: make(chan struct{})}
	defer close(stuck.release)
	timeout := 100 * time.Millisecond
	e := newEnv(t, func(o *pam.Options) {
		o.AuditSinks = []pam.SinkConfig{{Name: "stuck", Sink: stuck, Required: true}}
		o.AuditTimeout = timeout
	})
	e.policy(movePolicy())
	e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	eventually(t, "the sink to be marked failing", func() bool { return !e.m.SinkStatus()[0].Healthy })
	for i := range 3 {
		start := time.Now()
		ran := false
		err := e.m.Guard(e.as("alice"), pam.Op{Task: "New-MoveRequest"}, func(context.Context) error { ran = true; return nil })
		if ran || !errors.Is(err, pam.ErrAudit) {
			t.Fatalf("Guard %d with a stuck required sink: ran %v, %v", i, ran, err)
		}
		if took := time.Since(start); took > timeout/2 {
			t.Errorf("Guard %d waited %v for a sink known to be failing", i, took)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := e.m.Close(ctx)
	if took := time.Since(start); took > time.Second || err == nil {
		t.Errorf("Close with a stuck sink: %v after %v", err, took)
	}
}

// TestRunMakesCheckpointsEveryNEvents: with CheckpointEvery, Run makes a
// checkpoint once that many events were committed, whatever the clock.
func TestRunMakesCheckpointsEveryNEvents(t *testing.T) {
	ckpts := &fakes.Checkpoints{}
	e := newEnv(t, func(o *pam.Options) {
		o.CheckpointSinks, o.CheckpointEvery, o.SweepInterval = []pam.CheckpointSink{ckpts}, 5, 24*time.Hour
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.m.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for i := range 12 {
		p := movePolicy()
		p.ID, p.Scope = fmt.Sprint("p", i), pam.TaskScope(fmt.Sprint("T", i))
		e.policy(p)
	}
	// Fewer than 5 events are left after the last checkpoint.
	eventually(t, "a checkpoint near the head", func() bool {
		all := ckpts.All()
		return len(all) > 0 && e.lastSeq()-all[len(all)-1].Seq < 5
	})
	for _, c := range ckpts.All() {
		if c.Seq < 5 {
			t.Errorf("a checkpoint after %d events, want 5 or more", c.Seq)
		}
	}
}

// TestVerifyUsesTheCheckpointSinks: Manager.Verify, with no checkpoints
// given, checks the trail against those its checkpoint sinks keep, so a
// trail rewritten and re-hashed to its head does not verify.
func TestVerifyUsesTheCheckpointSinks(t *testing.T) {
	file := sinks.NewCheckpointFile(filepath.Join(t.TempDir(), "checkpoints.jsonl"))
	store := memory.New()
	dir, _ := pam.NewStaticDirectory(testGroups)
	m, err := pam.New(store, dir, &pam.Options{CheckpointSinks: []pam.CheckpointSink{file}})
	if err != nil {
		t.Fatal(err)
	}
	admin := pam.WithActor(context.Background(), "admin")
	for _, id := range []string{"a", "b", "c"} {
		if _, err := m.CreatePolicy(admin, pam.Policy{ID: id, Scope: pam.TaskScope(id), Approval: pam.Auto}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Verify(admin, pam.VerifyOptions{}); err != nil {
		t.Fatalf("the untouched trail: %v", err)
	}
	forged, err := pam.New(fakes.Rewritten{OutboxStore: store}, dir, &pam.Options{CheckpointSinks: []pam.CheckpointSink{file}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pam.Verify(context.Background(), fakes.Rewritten{OutboxStore: store}, pam.VerifyOptions{}); err != nil {
		t.Fatalf("the rewritten trail is a valid chain on its own: %v", err)
	}
	_, err = forged.Verify(admin, pam.VerifyOptions{})
	var te *pam.TamperError
	if !errors.As(err, &te) || te.Reason != pam.ReasonCheckpointMismatch {
		t.Errorf("the rewritten trail against the kept checkpoints: %v, want checkpoint_mismatch", err)
	}
}

// TestRequiredSinkWhoseReadsFailDeniesAtOnce: a sink worker that cannot
// read the trail cannot deliver it, so it is failing, and with a
// required sink Guard denies at once instead of waiting AuditTimeout for
// each call. When reads work again the sink catches up and recovers,
// and the trail records the outage.
func TestRequiredSinkWhoseReadsFailDeniesAtOnce(t *testing.T) {
	sink := &fakes.Sink{}
	e := newEnv(t, func(o *pam.Options) {
		o.AuditSinks = []pam.SinkConfig{fastRetry(pam.SinkConfig{Name: "vault", Sink: sink, Required: true})}
		o.AuditTimeout = time.Minute
	})
	e.policy(movePolicy())
	e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
	if ran, err := e.guard("alice", "New-MoveRequest", nil); !ran || err != nil {
		t.Fatalf("Guard with a healthy sink: ran %v, %v", ran, err)
	}
	eventually(t, "the sink", func() bool { return len(sink.Events()) == len(e.events()) })

	e.store.FailEvents(errors.New("disk I/O error"))
	for i := range 3 {
		started := time.Now()
		ran, err := e.guard("alice", "New-MoveRequest", nil)
		if ran || !errors.Is(err, pam.ErrAudit) || !strings.Contains(err.Error(), "disk I/O error") {
			t.Fatalf("call %d while the trail cannot be read: ran %v, %v", i, ran, err)
		}
		if took := time.Since(started); took > 10*time.Second {
			t.Fatalf("call %d was denied after %v, not at once", i, took)
		}
	}
	st := e.m.SinkStatus()[0]
	if st.Healthy || st.Failures == 0 || !strings.Contains(st.LastError, "read the trail") || !strings.Contains(st.LastError, "disk I/O error") {
		t.Errorf("status while the trail cannot be read: %+v", st)
	}

	e.store.FailEvents(nil)
	eventually(t, "recovery", func() bool { return e.m.SinkStatus()[0].Healthy })
	if ran, err := e.guard("alice", "New-MoveRequest", nil); !ran || err != nil {
		t.Fatalf("Guard after recovery: ran %v, %v", ran, err)
	}
	eventually(t, "the sink", func() bool { return len(sink.Events()) == len(e.events()) })
	var outages []string
	for _, ev := range e.events() {
		if strings.HasPrefix(string(ev.Type), "sink.") {
			outages = append(outages, string(ev.Type)+"/"+string(ev.Outcome))
			if ev.Type == pam.EventSinkFailed && !strings.Contains(ev.Detail["error"], "disk I/O error") {
				t.Errorf("sink.failed says %q", ev.Detail["error"])
			}
		}
	}
	if d := cmp.Diff([]string{"sink.failed/required", "sink.recovered/required"}, outages); d != "" {
		t.Errorf("sink events (-want +got):\n%s", d)
	}
	if d := cmp.Diff(e.events(), sink.Events()); d != "" {
		t.Errorf("sink (-store +sink):\n%s", d)
	}
}

// TestEventsNumberedBelowOne: events stored with a number below 1, which
// no store writes, are tampering that Verify reports, and Audit shows
// them, paging through them with negative cursors in either direction.
func TestEventsNumberedBelowOne(t *testing.T) {
	e := newEnv(t)
	e.policy(movePolicy())
	for range 3 {
		e.grant("alice", pam.RequestInput{Scope: pam.TaskScope("New-MoveRequest")})
		e.guard("alice", "New-MoveRequest", nil)
	}
	s := &tamperedStore{Store: e.store, edit: func(all []pam.Event) []pam.Event {
		all[0].Seq, all[1].Seq, all[2].Seq = -2, -1, 0
		return all
	}}
	var want []int64
	for _, ev := range e.events() {
		want = append(want, ev.Seq)
	}
	want[0], want[1], want[2] = -2, -1, 0

	_, err := pam.Verify(context.Background(), s, pam.VerifyOptions{})
	var te *pam.TamperError
	if !errors.As(err, &te) || te.Seq != -2 || te.Reason != pam.ReasonMalformed {
		t.Fatalf("Verify = %v; want %s at -2", err, pam.ReasonMalformed)
	}

	m, err := pam.New(s, e.dir, &pam.Options{Clock: e.clk, AdminGroup: "pam-admins"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	for _, desc := range []bool{false, true} {
		for limit := 2; limit <= 4; limit++ {
			var got []int64
			f := pam.EventFilter{Descending: desc, Limit: limit}
			for range 100 {
				page, next, err := m.Audit(e.admin(), f)
				if err != nil {
					t.Fatalf("descending %t, limit %d: %v", desc, limit, err)
				}
				for _, ev := range page {
					got = append(got, ev.Seq)
				}
				if next == 0 {
					break
				}
				if desc {
					f.Before = next
				} else {
					f.After = next
				}
			}
			w := slices.Clone(want)
			if desc {
				slices.Reverse(w)
			}
			if d := cmp.Diff(w, got); d != "" {
				t.Errorf("descending %t, limit %d: pages (-want +got):\n%s", desc, limit, d)
			}
		}
	}
}
