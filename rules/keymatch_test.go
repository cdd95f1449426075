package rules

import (
	"fmt"
	"testing"

	"pgregory.net/rapid"
)

// compileMatch compiles src as a match expression, as Compile does.
func compileMatch(t interface {
	Helper()
	Fatalf(string, ...any)
}, src string) keyTestCase {
	t.Helper()
	cfg, err := newConfig(Options{})
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	prog, err := compileExpr(kindMatch, src, cfg)
	if err != nil {
		t.Fatalf("compile %q: %v", src, err)
	}
	return keyTestCase{cfg: cfg, src: src, test: compileKeyTest(prog.Node()), vm: func(key string) (bool, error) {
		out, err := cfg.run(prog, matchEnv{Key: key})
		ok, _ := out.(bool)
		return ok, err
	}}
}

type keyTestCase struct {
	cfg  *config
	src  string
	test keyTest
	vm   func(key string) (bool, error)
}

func TestKeyTestShapes(t *testing.T) {
	for _, tc := range []struct {
		src  string
		fast bool
	}{
		{`true`, true},
		{`false`, true},
		{`key startsWith "user/"`, true},
		{`key endsWith "/lines" and key startsWith "order/"`, true},
		{`key matches "^session/[0-9a-f]{16}$"`, true},
		{`key in ["flags/global", "flags/beta"] || key startsWith "flags/team/"`, true},
		{`not (key contains "tmp") && key != "x"`, true},
		{`!(key == "a") or false`, true},
		// Left to the VM: anything but literal tests of key.
		{`len(key) > 3`, false},
		{`upper(key) startsWith "A"`, false},
		{`key startsWith "a" && len(key) > 3`, false},
		{`"a" == key`, false},
		{`key in ["a", 1]`, false},
		{`key[0:2] == "ab"`, false},
	} {
		c := compileMatch(t, tc.src)
		if (c.test != nil) != tc.fast {
			t.Errorf("%s: compiled to Go %v, want %v", tc.src, c.test != nil, tc.fast)
		}
	}
}

// genMatch generates a match expression over key from the shapes
// compileKeyTest handles, with, when vmOnly is allowed, atoms it leaves to
// the VM.
func genMatch(t *rapid.T, depth int, vmOnly bool) string {
	lit := func() string {
		return fmt.Sprintf("%q", rapid.SampledFrom([]string{"", "a", "b", "/", "ab", "a/", "/b", "ba/"}).Draw(t, "lit"))
	}
	if depth > 0 && rapid.IntRange(0, 2).Draw(t, "compound") > 0 {
		a, b := genMatch(t, depth-1, vmOnly), genMatch(t, depth-1, vmOnly)
		return fmt.Sprintf(rapid.SampledFrom([]string{"(%s) && (%s)", "(%s) and (%s)", "(%s) || (%s)", "(%s) or (%s)", "not (%s) || (%s)", "!(%s) && (%s)"}).Draw(t, "op"), a, b)
	}
	atoms := []string{"true", "false", "key == %s", "key != %s", "key startsWith %s", "key endsWith %s", "key contains %s", "regex", "in"}
	if vmOnly {
		atoms = append(atoms, "len(key) > 2", "upper(key) startsWith %s")
	}
	switch atom := rapid.SampledFrom(atoms).Draw(t, "atom"); atom {
	case "regex":
		re := rapid.SampledFrom([]string{"^a", "b$", "a.b", "^[ab/]+$", "/", "^$", "(a|b)/"}).Draw(t, "re")
		return fmt.Sprintf("key matches %q", re)
	case "in":
		return fmt.Sprintf("key in [%s, %s]", lit(), lit())
	case "true", "false", "len(key) > 2":
		return atom
	default:
		return fmt.Sprintf(atom, lit())
	}
}

// TestKeyTestMatchesVM: for every generated expression and key, the Go
// keyTest gives the VM's answer, and every expression made only of the
// supported shapes is compiled to Go.
func TestKeyTestMatchesVM(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		vmOnly := rapid.Bool().Draw(t, "vmOnly")
		src := genMatch(t, 3, vmOnly)
		c := compileMatch(t, src)
		if c.test == nil {
			if !vmOnly {
				t.Fatalf("%s: supported shapes only, but not compiled to Go", src)
			}
			return
		}
		for _, key := range rapid.SliceOfN(rapid.StringOfN(rapid.RuneFrom([]rune("ab/c")), 0, 6, -1), 1, 8).Draw(t, "keys") {
			want, err := c.vm(key)
			if err != nil {
				t.Fatalf("%s: VM failed for key %q: %v", src, key, err)
			}
			if got := c.test(key); got != want {
				t.Fatalf("%s, key %q: Go says %v, VM says %v", src, key, got, want)
			}
		}
	})
}

// TestMatchMixesPaths checks Set.Match over rules of both kinds: the first
// rule that holds wins, whichever path evaluated it, and a VM rule that
// fails holds the key (reported) instead of passing it on.
func TestMatchMixesPaths(t *testing.T) {
	set, err := Compile([]Spec{
		{Name: "fast-users", Match: `key startsWith "user/"`, Strategy: "lww"},
		{Name: "vm-numeric", Match: `key startsWith "n" ? int(key[1:]) > 0 : false`, Strategy: "lww"}, // fails for n + non-digits
		{Name: "vm-long", Match: `len(key) > 8`, Strategy: "lww"},
		{Name: "fast-rest", Match: `true`, Strategy: "lww"},
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key, rule string
		failed    bool
	}{
		{"n42", "vm-numeric", false},
		{"user/1", "fast-users", false},
		{"nx", "vm-numeric", true}, // int("x") fails: reported, held there
		{"cart/1", "fast-rest", false},
		{"cart/123456", "vm-long", false},
	} {
		r, err := set.Match(tc.key)
		if r == nil || r.Name() != tc.rule {
			t.Errorf("key %q: rule %s, want %s (err %v)", tc.key, nameOf(r), tc.rule, err)
		}
		if (err != nil) != tc.failed || (r != nil && (r.Held() != nil) != tc.failed) {
			t.Errorf("key %q: err %v, want a failure report %v", tc.key, err, tc.failed)
		}
	}
}

func nameOf(r *Rule) string {
	if r == nil {
		return "none"
	}
	return r.Name()
}
