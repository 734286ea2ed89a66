//go:build race

package sqlite_test

// raceDetector: under the race detector the crash test kills fewer
// children (CI runs the full count without it).
const raceDetector = true
