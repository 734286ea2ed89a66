package memory_test

import (
	"testing"

	"github.com/benbjohnson/clock"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/store/memory"
	"github.com/zerostanding/pam/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(testing.TB, *clock.Mock) pam.Store { return memory.New() })
}

func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(testing.TB, *clock.Mock) pam.Store { return memory.New() })
}

// BenchmarkTrail searches and verifies a trail of 1,000,000 events.
func BenchmarkTrail(b *testing.B) {
	storetest.BenchTrail(b, func(testing.TB, *clock.Mock) pam.Store { return memory.New() }, 1_000_000)
}

// BenchmarkOutbox is the cost of the outbox write in a transition.
func BenchmarkOutbox(b *testing.B) {
	storetest.BenchOutbox(b, func(testing.TB, *clock.Mock) pam.Store { return memory.New() })
}

func BenchmarkPolicies(b *testing.B) {
	storetest.BenchPolicies(b, func(testing.TB, *clock.Mock) pam.Store { return memory.New() }, 1000, 10000)
}
