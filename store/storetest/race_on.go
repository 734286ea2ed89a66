//go:build race

package storetest

// raceDetector: the race detector multiplies the cost of every memory
// access, by ten and more in a pure-Go database; the fault test then
// injects a tenth of FaultTarget (run it without -race for the count).
const raceDetector = true
