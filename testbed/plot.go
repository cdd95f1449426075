package testbed

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// A hand-written SVG line chart: enough for lag over time, no dependency.

// series is one line of a chart.
type series struct {
	name   string
	color  string
	points [][2]float64 // x, y
}

// window is a shaded span of the x axis (a fault in force).
type window struct {
	from, to float64
	label    string
}

// palette colours the series of a chart in turn.
var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"}

// niceStep returns a round tick step (1, 2 or 5 times a power of ten) that
// splits span into about n intervals.
func niceStep(span float64, n int) float64 {
	if span <= 0 || n <= 0 {
		return 1
	}
	raw := span / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*mag {
			return m * mag
		}
	}
	return 10 * mag
}

// lineChart renders series as an SVG document with axes, ticks, a legend
// and shaded windows. The x axis spans at least [0, xmax] and the y axis
// fits the data. A series' line breaks where consecutive points are more
// than gap apart on the x axis (no sample: the region was down), instead of
// drawing a line through the hole.
func lineChart(title, xLabel, yLabel string, all []series, shades []window, xmax, gap float64) string {
	const w, h = 880.0, 320.0
	const left, right, top, bottom = 60.0, 180.0, 36.0, 44.0
	pw, ph := w-left-right, h-top-bottom
	ymax := 0.0
	for _, s := range all {
		for _, p := range s.points {
			ymax = max(ymax, p[1])
			xmax = max(xmax, p[0])
		}
	}
	ystep := niceStep(max(ymax, 0.001), 5)
	ymax = math.Ceil(max(ymax, 0.001)/ystep) * ystep
	xmax = max(xmax, 1)
	xstep := niceStep(xmax, 8)
	xmax = math.Ceil(xmax/xstep) * xstep
	px := func(x float64) float64 { return left + pw*x/xmax }
	py := func(y float64) float64 { return top + ph - ph*y/ymax }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="11">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%.0f" height="%.0f" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%.0f" y="20" font-size="14" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(title))
	for i, s := range shades {
		x0, x1 := px(max(s.from, 0)), px(min(s.to, xmax))
		if x1 <= x0 {
			continue
		}
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#f4b6b6" fill-opacity="0.35"><title>%s</title></rect>`+"\n",
			x0, top, x1-x0, ph, html.EscapeString(s.label))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="9" fill="#a33">%s</text>`+"\n", x0+2, top+10+10*float64(i%4), html.EscapeString(s.label))
	}
	// Grid and ticks.
	for y := 0.0; y <= ymax+ystep/2; y += ystep {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, py(y), left+pw, py(y))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, py(y)+4, tick(y))
	}
	for x := 0.0; x <= xmax+xstep/2; x += xstep {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#999"/>`+"\n", px(x), top+ph, px(x), top+ph+4)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", px(x), top+ph+16, tick(x))
	}
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`+"\n", left, top, pw, ph)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", left+pw/2, h-8, html.EscapeString(xLabel))
	fmt.Fprintf(&b, `<text x="14" y="%.1f" text-anchor="middle" transform="rotate(-90 14 %.1f)">%s</text>`+"\n", top+ph/2, top+ph/2, html.EscapeString(yLabel))
	// Lines and legend.
	for i, s := range all {
		if len(s.points) == 0 {
			continue
		}
		for _, run := range splitAtGaps(s.points, gap) {
			var pts strings.Builder
			for _, p := range run {
				fmt.Fprintf(&pts, "%.1f,%.1f ", px(p[0]), py(p[1]))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", s.color, strings.TrimSpace(pts.String()))
		}
		lx := left + pw + 12 // legend right of the plot area
		ly := top + 10 + float64(i)*16
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`+"\n", lx, ly-4, lx+16, ly-4, s.color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", lx+20, ly, html.EscapeString(s.name))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// splitAtGaps cuts points (sorted by x) into runs whose consecutive x
// values are at most gap apart; gap <= 0 keeps one run.
func splitAtGaps(points [][2]float64, gap float64) [][][2]float64 {
	var runs [][][2]float64
	start := 0
	for i := 1; i <= len(points); i++ {
		if i == len(points) || (gap > 0 && points[i][0]-points[i-1][0] > gap) {
			runs = append(runs, points[start:i])
			start = i
		}
	}
	return runs
}

// tick formats an axis value without trailing zeros.
func tick(v float64) string {
	s := fmt.Sprintf("%.3f", v)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	if s == "-0" {
		return "0"
	}
	return s
}
