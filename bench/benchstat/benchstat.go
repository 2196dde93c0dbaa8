// Package benchstat holds the statistics the benchmarks under bench/ share.
package benchstat

import "slices"

// Median is the middle value of xs, the upper one of the two middle
// values when len(xs) is even, so that it is always one of the measured
// values (a caller can find the round it came from); 0 for no values.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
