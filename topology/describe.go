package topology

import "strings"

// Describe returns a one-line human description of the plan, for logs and
// status pages. Its exact form may change; do not parse it. Examples:
//
//	all-to-all: ap-south<->eu-west, ap-south<->us-east, eu-west<->us-east
//	star hub=us-east: eu-west<->us-east, ap-south<->us-east
//	circular: us-east->eu-west->ap-south->us-east
//	star hub=us-east: us-east alone, no links
func (p *Plan) Describe() string {
	var b strings.Builder
	b.WriteString(string(p.kind))
	if p.kind == Star {
		b.WriteString(" hub=" + p.hub)
	}
	b.WriteString(": ")
	if len(p.regions) == 1 {
		b.WriteString(p.regions[0] + " alone, no links")
		return b.String()
	}
	switch p.kind {
	case Star:
		first := true
		for _, r := range p.regions {
			if r == p.hub {
				continue
			}
			if !first {
				b.WriteString(", ")
			}
			first = false
			b.WriteString(r + "<->" + p.hub)
		}
	case Circular:
		for _, r := range p.ring {
			b.WriteString(r + "->")
		}
		b.WriteString(p.ring[0])
	default:
		first := true
		for _, l := range p.links { // sorted: each pair once as From < To
			if l.From > l.To {
				continue
			}
			if !first {
				b.WriteString(", ")
			}
			first = false
			b.WriteString(l.From + "<->" + l.To)
		}
	}
	return b.String()
}

// String returns Describe().
func (p *Plan) String() string { return p.Describe() }
