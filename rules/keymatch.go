package rules

import (
	"regexp"
	"strings"

	"github.com/expr-lang/expr/ast"
)

// keyTest is a match expression compiled to Go: it gives the same answer
// as the expression's program for every key, without the VM.
type keyTest func(key string) bool

// compileKeyTest compiles the tree of a type-checked match expression to a
// keyTest when the expression only combines, with and/or/not, literal
// booleans and these tests of key against string literals: ==, !=,
// startsWith, endsWith, contains, matches and in [list]. Such expressions
// cannot fail at run time, so the keyTest is exact. Anything else yields
// nil and the expression runs on the VM. Every region runs the same rule
// set, and a rule's answer does not depend on which path ran it.
func compileKeyTest(n ast.Node) keyTest {
	switch x := n.(type) {
	case *ast.BoolNode:
		v := x.Value
		return func(string) bool { return v }
	case *ast.UnaryNode:
		if x.Operator != "not" && x.Operator != "!" {
			return nil
		}
		if f := compileKeyTest(x.Node); f != nil {
			return func(k string) bool { return !f(k) }
		}
	case *ast.BinaryNode:
		switch x.Operator {
		case "&&", "and", "||", "or":
			l, r := compileKeyTest(x.Left), compileKeyTest(x.Right)
			if l == nil || r == nil {
				return nil
			}
			if x.Operator == "&&" || x.Operator == "and" {
				return func(k string) bool { return l(k) && r(k) }
			}
			return func(k string) bool { return l(k) || r(k) }
		}
		if id, ok := x.Left.(*ast.IdentifierNode); !ok || id.Value != "key" {
			return nil
		}
		if x.Operator == "in" {
			return keyIn(x.Right)
		}
		lit, ok := x.Right.(*ast.StringNode)
		if !ok {
			return nil
		}
		s := lit.Value
		switch x.Operator {
		case "==":
			return func(k string) bool { return k == s }
		case "!=":
			return func(k string) bool { return k != s }
		case "startsWith":
			return func(k string) bool { return strings.HasPrefix(k, s) }
		case "endsWith":
			return func(k string) bool { return strings.HasSuffix(k, s) }
		case "contains":
			return func(k string) bool { return strings.Contains(k, s) }
		case "matches":
			// expr compiles a literal pattern with regexp.MustCompile too
			// (a bad one is a compile error, so this cannot fail).
			re, err := regexp.Compile(s)
			if err != nil {
				return nil
			}
			return re.MatchString
		}
	}
	return nil
}

// keyIn compiles `key in [literals]`: expr's optimizer turns a literal
// list of strings into a constant set; a list it left as an array (mixed
// or non-literal elements) is not compiled here.
func keyIn(n ast.Node) keyTest {
	c, ok := n.(*ast.ConstantNode)
	if !ok {
		return nil
	}
	set, ok := c.Value.(map[string]struct{})
	if !ok {
		return nil
	}
	return func(k string) bool {
		_, in := set[k]
		return in
	}
}
