package gateway

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/geogate/geogate/internal/buildinfo"
)

// buildInfoMetric is geogate_build_info: always 1, its labels naming the
// running build, so that a dashboard can tell which regions run which.
func buildInfoMetric() prometheus.Collector {
	bi := buildinfo.Get()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "geogate_build_info",
		Help: "Always 1; the labels name the running build: module version, VCS revision and Go version.",
	}, []string{"version", "revision", "go"})
	g.WithLabelValues(bi.Version, bi.Revision, bi.Go).Set(1)
	return g
}
