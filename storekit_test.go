package pam_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/zerostanding/pam"
)

func TestTxValidateRefusesDuplicates(t *testing.T) {
	many := func(n int) []pam.Request {
		rs := make([]pam.Request, n)
		for i := range rs {
			rs[i].ID = fmt.Sprint("r", i)
		}
		return rs
	}
	for name, tc := range map[string]struct {
		tx   pam.Tx
		want error
	}{
		"empty":                 {pam.Tx{}, nil},
		"distinct":              {pam.Tx{Policies: []pam.Policy{{ID: "a"}, {ID: "b"}}, Requests: many(3), Messages: []pam.Message{{ID: "a"}}}, nil},
		"same ID, two kinds":    {pam.Tx{Policies: []pam.Policy{{ID: "x"}}, Requests: []pam.Request{{ID: "x"}}, Messages: []pam.Message{{ID: "x"}}}, nil},
		"many distinct":         {pam.Tx{Requests: many(100)}, nil},
		"policy twice":          {pam.Tx{Policies: []pam.Policy{{ID: "a"}, {ID: "b"}, {ID: "a"}}}, pam.ErrInvalid},
		"request twice":         {pam.Tx{Requests: append(many(3), pam.Request{ID: "r1"})}, pam.ErrInvalid},
		"request twice of many": {pam.Tx{Requests: append(many(100), pam.Request{ID: "r99"})}, pam.ErrInvalid},
		"message twice":         {pam.Tx{Messages: []pam.Message{{ID: "m"}, {ID: "m"}}}, pam.ErrInvalid},
	} {
		if err := tc.tx.Validate(); !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
			t.Errorf("%s: Validate = %v, want %v", name, err, tc.want)
		}
	}
}

// TestChainHeadChain: chaining a batch from a head is chaining its events
// one by one (Event.Chain), and the head it returns continues the trail.
func TestChainHeadChain(t *testing.T) {
	events := make([]pam.Event, 5)
	for i := range events {
		events[i] = pam.Event{Time: time.Unix(int64(i), 7), Type: pam.EventGuardAllowed, Actor: fmt.Sprint("user", i), Detail: map[string]string{"i": fmt.Sprint(i)}}
	}
	want := append([]pam.Event(nil), events...)
	prev := pam.GenesisHash
	for i := range want {
		if err := want[i].Chain(int64(i+1), prev); err != nil {
			t.Fatal(err)
		}
		prev = want[i].Hash
	}

	// From the empty trail, in two batches, the second with its digests
	// computed beforehand.
	got := append([]pam.Event(nil), events...)
	head, err := pam.ChainHead{}.Chain(got[:2], nil)
	if err != nil || head != (pam.ChainHead{Seq: 2, Hash: want[1].Hash}) {
		t.Fatalf("first batch: head %+v, %v", head, err)
	}
	digests := make([][pam.HashSize]byte, 3)
	for i := range digests {
		digests[i] = got[2+i].ContentDigest()
	}
	if head, err = head.Chain(got[2:], digests); err != nil || head != (pam.ChainHead{Seq: 5, Hash: want[4].Hash}) {
		t.Fatalf("second batch: head %+v, %v", head, err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("ChainHead.Chain (-Event.Chain +ChainHead.Chain):\n%s", d)
	}
	for _, e := range got {
		if err := e.CheckHash(); err != nil {
			t.Errorf("event %d: %v", e.Seq, err)
		}
	}
	if head, err := head.Chain(nil, nil); err != nil || head.Seq != 5 {
		t.Errorf("no events: head %+v, %v", head, err)
	}

	// A head that is not a hash, or digests that do not fit, chain nothing.
	for name, call := range map[string]func([]pam.Event) (pam.ChainHead, error){
		"no hash":     func(es []pam.Event) (pam.ChainHead, error) { return pam.ChainHead{Seq: 3}.Chain(es, nil) },
		"bad hash":    func(es []pam.Event) (pam.ChainHead, error) { return pam.ChainHead{Seq: 3, Hash: "xyz"}.Chain(es, nil) },
		"few digests": func(es []pam.Event) (pam.ChainHead, error) { return pam.ChainHead{}.Chain(es, digests[:1]) },
	} {
		es := append([]pam.Event(nil), events...)
		if _, err := call(es); !errors.Is(err, pam.ErrInvalid) {
			t.Errorf("%s: Chain = %v, want ErrInvalid", name, err)
		}
		if d := cmp.Diff(events, es); d != "" {
			t.Errorf("%s: Chain changed the events:\n%s", name, d)
		}
	}
}

func TestRequestDue(t *testing.T) {
	until, expires := time.Unix(100, 1), time.Unix(200, 2)
	for _, tc := range []struct {
		state pam.State
		want  time.Time
	}{
		{pam.Pending, until}, {pam.Approved, expires},
		{pam.Denied, time.Time{}}, {pam.Canceled, time.Time{}}, {pam.Revoked, time.Time{}}, {pam.Expired, time.Time{}},
	} {
		r := pam.Request{State: tc.state, PendingUntil: until, ExpiresAt: expires}
		if got := r.Due(); !got.Equal(tc.want) {
			t.Errorf("%s: Due = %v, want %v", tc.state, got, tc.want)
		}
	}
}

func TestClaimOrder(t *testing.T) {
	now := time.Unix(1000, 0)
	msgs := []pam.Message{
		{ID: "e", State: pam.MessagePending, NextAttempt: now},
		{ID: "b", State: pam.MessagePending, NextAttempt: now.Add(-1)},
		{ID: "a", State: pam.MessagePending, NextAttempt: now},
		{ID: "c", State: pam.MessagePending, NextAttempt: now.Add(-time.Hour)},
	}
	pam.SortClaims(msgs)
	var ids []string
	for _, m := range msgs {
		ids = append(ids, m.ID)
	}
	if d := cmp.Diff([]string{"c", "b", "a", "e"}, ids); d != "" {
		t.Errorf("SortClaims (-want +got):\n%s", d)
	}
	for name, tc := range map[string]struct {
		m    pam.Message
		want bool
	}{
		"due now":       {pam.Message{State: pam.MessagePending, NextAttempt: now}, true},
		"due before":    {pam.Message{State: pam.MessagePending, NextAttempt: now.Add(-1)}, true},
		"not yet":       {pam.Message{State: pam.MessagePending, NextAttempt: now.Add(1)}, false},
		"lease ended":   {pam.Message{State: pam.MessagePending, LeaseUntil: now}, true},
		"leased":        {pam.Message{State: pam.MessagePending, LeaseUntil: now.Add(1)}, false},
		"delivered":     {pam.Message{State: pam.MessageDelivered}, false},
		"failed parked": {pam.Message{State: pam.MessageFailed}, false},
	} {
		if got := tc.m.ClaimableAt(now); got != tc.want {
			t.Errorf("%s: ClaimableAt = %t, want %t", name, got, tc.want)
		}
	}
}

// TestDecodeDetail: a stored Detail is a JSON object of strings, each key
// once, with nothing after it; anything else is refused, not read
// leniently.
func TestDecodeDetail(t *testing.T) {
	for in, want := range map[string]map[string]string{
		`{}`:                            {},
		`{"a":"x"}`:                     {"a": "x"},
		` {"a" : "x", "b":""} `:         {"a": "x", "b": ""},
		`{"ü":"ünïcode ✓","\u0000":""}`: {"ü": "ünïcode ✓", "\x00": ""},
	} {
		got, err := pam.DecodeDetail([]byte(in))
		if err != nil || !cmp.Equal(want, got) {
			t.Errorf("DecodeDetail(%s) = %v, %v; want %v", in, got, err, want)
		}
	}
	for name, in := range map[string]string{
		"empty":                ``,
		"cut short":            `{"a":"x"`,
		"not JSON":             `{a:x}`,
		"null":                 `null`,
		"an array":             `["a","x"]`,
		"a string":             `"a"`,
		"a number value":       `{"a":1}`,
		"a null value":         `{"a":null}`,
		"a boolean value":      `{"a":true}`,
		"an object value":      `{"a":{"b":"x"}}`,
		"an array value":       `{"a":["x"]}`,
		"a key twice":          `{"a":"x","a":"y"}`,
		"a key twice, escaped": `{"a":"x","\u0061":"y"}`,
		"trailing data":        `{"a":"x"} {}`,
		"trailing garbage":     `{"a":"x"}x`,
		"trailing comma":       `{"a":"x",}`,
		"not UTF-8":            "{\"a\":\"\xff\"}",
		"a bracket":            `{"a":"x"]`,
	} {
		got, err := pam.DecodeDetail([]byte(in))
		var ve *pam.ValidationError
		if !errors.Is(err, pam.ErrInvalid) || !errors.As(err, &ve) || ve.Field != "Detail" || got != nil {
			t.Errorf("%s: DecodeDetail(%s) = %v, %v; want a *ValidationError", name, in, got, err)
		}
	}
}
