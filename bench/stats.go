package bench

import (
	"slices"
	"time"
)

// Summary describes a sample of latencies, in microseconds.
type Summary struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean_us"`
	P50  float64 `json:"p50_us"`
	P90  float64 `json:"p90_us"`
	P99  float64 `json:"p99_us"`
	Max  float64 `json:"max_us"`
}

// Summarize sorts d and summarizes it.
func Summarize(d []time.Duration) Summary {
	if len(d) == 0 {
		return Summary{}
	}
	slices.Sort(d)
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	us := func(x time.Duration) float64 { return float64(x) / 1e3 }
	q := func(p float64) float64 {
		i := int(p*float64(len(d)) + 0.5)
		return us(d[min(max(i-1, 0), len(d)-1)])
	}
	return Summary{
		N:    len(d),
		Mean: us(sum) / float64(len(d)),
		P50:  q(0.50),
		P90:  q(0.90),
		P99:  q(0.99),
		Max:  us(d[len(d)-1]),
	}
}

// Median returns the median of xs (the mean of the middle two for an even
// count), 0 for none. xs is not modified.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// ratio is a/b, 0 when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// MedianDuration is Median over durations.
func MedianDuration(ds []time.Duration) time.Duration {
	xs := make([]float64, len(ds))
	for i, d := range ds {
		xs[i] = float64(d)
	}
	return time.Duration(Median(xs))
}
