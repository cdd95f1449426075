package buildinfo

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/geogate/geogate", Version: "v1.2.3"},
		Settings: []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "0123abcd"},
			{Key: "vcs.time", Value: "2026-01-02T03:04:05Z"}, {Key: "vcs.modified", Value: "true"}}}
	got := fromBuildInfo(bi)
	want := Info{Version: "v1.2.3", Revision: "0123abcd", Time: "2026-01-02T03:04:05Z", Modified: true, Go: "go1.26.8"}
	if got != want {
		t.Fatalf("fromBuildInfo = %+v, want %+v", got, want)
	}
	if s := got.String(); s != "v1.2.3 (revision 0123abcd, modified, 2026-01-02T03:04:05Z, go1.26.8)" {
		t.Fatalf("String = %q", s)
	}
	bare := fromBuildInfo(&debug.BuildInfo{})
	if bare != (Info{Version: Unknown, Revision: Unknown, Go: runtime.Version()}) {
		t.Fatalf("nothing recorded: %+v", bare)
	}
	if s := bare.String(); s != "unknown (revision unknown, "+runtime.Version()+")" {
		t.Fatalf("String = %q", s)
	}
}

func TestGet(t *testing.T) {
	if i := Get(); i.Version == "" || i.Revision == "" || i.Go != runtime.Version() {
		t.Fatalf("Get = %+v", i)
	}
}
