//go:build race

package main

// raceEnabled: the test binary (and so every node a process test starts
// from it) runs under the race detector.
const raceEnabled = true
