// Package rules compiles and evaluates operator-written conflict rules in
// expr (DESIGN section 5). It is pure apart from reading rule files.
package rules
