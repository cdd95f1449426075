// Package buildinfo says which build of geogate is running: its module
// version and the version-control state it was built from, as the Go
// toolchain recorded them in the binary (runtime/debug.ReadBuildInfo).
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Info describes the running binary. Fields the toolchain did not record
// (a test binary, a build outside a repository) hold Unknown, except
// Modified and Time, which are then false and "".
type Info struct {
	// Version is the main module's version: a tag (v1.2.3), a pseudo-version
	// derived from the commit, or "(devel)".
	Version string `json:"version"`
	// Revision is the commit the binary was built from.
	Revision string `json:"revision"`
	// Time is the commit's time (RFC 3339).
	Time string `json:"time,omitempty"`
	// Modified is true when the working tree had uncommitted changes.
	Modified bool `json:"modified"`
	// Go is the toolchain that built the binary.
	Go string `json:"go"`
}

// Unknown stands for what the toolchain did not record.
const Unknown = "unknown"

// Get returns the running binary's build information.
func Get() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Version: Unknown, Revision: Unknown, Go: runtime.Version()}
	}
	return fromBuildInfo(bi)
}

func fromBuildInfo(bi *debug.BuildInfo) Info {
	info := Info{Version: bi.Main.Version, Revision: Unknown, Go: bi.GoVersion}
	if info.Version == "" {
		info.Version = Unknown
	}
	if info.Go == "" {
		info.Go = runtime.Version()
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.time":
			info.Time = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// String reads "v1.2.3 (revision 0123abcd, modified, 2026-01-02T03:04:05Z, go1.26.8)".
func (i Info) String() string {
	s := i.Version + " (revision " + i.Revision
	if i.Modified {
		s += ", modified"
	}
	if i.Time != "" {
		s += ", " + i.Time
	}
	return s + ", " + i.Go + ")"
}
