// Package testbed runs geogate regions on one machine behind an emulated
// WAN, drives them with a workload while a fault timeline partitions,
// kills, pauses and skews them, then checks what they converged to and
// writes a report (the README's Testbed section).
//
// A run (Run) goes through fixed phases:
//
//  1. starting: the regions start, in this process (gateway.StartCluster;
//     Mode InProcess) or as `geogate serve` child processes (Mode Process),
//     with every inbound replication link dialling its peer's NATS through
//     its own wan.Proxy; the run waits until every link is up. In process
//     mode a region may run several nodes (Scenario.Nodes, NodesOf), each a
//     process of its own; the run then also waits until each such region
//     has one leader every other node follows.
//  2. running: for the scenario's duration the workload issues operations
//     at its rate and records every acknowledged write; the fault timeline
//     runs; every region's /v1/status is sampled every 250ms for link lag.
//  3. quiescing: faults still in force are undone (links healed and
//     resumed, killed regions restarted) and the run waits until every
//     region has applied every other region's log.
//  4. checking: every region's (every node's) digest, records and conflict
//     log are read and the checkers judge them: convergence, no
//     acknowledged write lost, no dot with two values, session reads, lag
//     bounds, conflicts by rule; with regions of several nodes also that
//     each settled under one leader, and for every fault that struck a
//     leader the failover time (Failover) and that the deposed leader
//     acknowledged nothing after its successor took over.
//
// Scenarios are YAML files (Load; configs/scenarios/ has the shipped ones),
// each with a `short:` block that CI merges over it to run in seconds.
// WriteReport writes report.json, report.md and an SVG lag-over-time chart
// per link. The checkers are pure functions over collected data, exported
// so they can be reused and tested on synthetic histories.
//
// `geogate testbed run SCENARIO [--short] [--out DIR]` is the command line
// (cmd/geogate/testbed.go).
package testbed
