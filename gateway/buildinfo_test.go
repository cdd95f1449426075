package gateway

import (
	"fmt"
	"strings"
	"testing"

	"github.com/geogate/geogate/internal/buildinfo"
)

// TestBuildInfoMetric checks /metrics names the running build.
func TestBuildInfoMetric(t *testing.T) {
	c := startCluster(t, []string{"solo"}, "all-to-all", nil)
	bi := buildinfo.Get()
	want := fmt.Sprintf(`geogate_build_info{go=%q,revision=%q,version=%q} 1`, bi.Go, bi.Revision, bi.Version)
	if body := string(do(t, "GET", c.Node("solo").HTTPURL()+"/metrics", nil).body); !strings.Contains(body, want) {
		t.Fatalf("/metrics lacks %s", want)
	}
}
