package rules

import "fmt"

// didYouMean returns ` (did you mean "x"?)` for the option closest to got
// by edit distance, when one is close enough to be a likely misspelling
// (at most a third of its length, and at least 1, edits away); else "".
func didYouMean(got string, options []string) string {
	best, bestDist := "", -1
	for _, o := range options {
		d := editDistance(got, o)
		if d == 0 {
			return ""
		}
		if limit := max(1, len(o)/3); d <= limit && (bestDist < 0 || d < bestDist) {
			best, bestDist = o, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance of two strings, in bytes,
// counting a swap of two adjacent bytes as one edit.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
