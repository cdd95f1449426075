package rules

import (
	"fmt"

	"github.com/geogate/geogate/internal/schema"
)

// didYouMean returns ` (did you mean "x"?)` for the option got most likely
// misspells (schema.Nearest), or "".
func didYouMean(got string, options []string) string {
	if best := schema.Nearest(got, options); best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return ""
}
