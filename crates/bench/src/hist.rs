//! A latency histogram of fixed size: log-linear buckets (32 per power of two, so a value is
//! known to within about 3 %), exact count, sum, min and max. Memory does not grow with the
//! number of samples, and histograms of several workers merge.

use std::time::Duration;

/// Values below this are counted exactly.
const LINEAR: u64 = 64;
/// Sub-buckets per power of two above `LINEAR`: 2^SUB_BITS.
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Powers of two from 2^6 to 2^63.
const BUCKETS: usize = LINEAR as usize + (64 - 6) * SUB as usize;

/// Latencies in nanoseconds.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count)
            .field("min", &self.min)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

fn index(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // 6..=63
    let sub = (v >> (e - SUB_BITS)) & (SUB - 1);
    LINEAR as usize + (e as usize - 6) * SUB as usize + sub as usize
}

/// The middle of bucket `i`.
fn value_of(i: usize) -> u64 {
    if i < LINEAR as usize {
        return i as u64;
    }
    let j = i - LINEAR as usize;
    let e = (j / SUB as usize) as u32 + 6;
    let sub = (j % SUB as usize) as u64;
    let width = 1u64 << (e - SUB_BITS);
    let low = (1u64 << e) + sub * width;
    low + width / 2
}

impl Histogram {
    pub fn new() -> Self {
        Self {
            counts: Box::new([0; BUCKETS]),
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    pub fn record_ns(&mut self, ns: u64) {
        self.counts[index(ns)] += 1;
        self.count += 1;
        self.sum += u128::from(ns);
        self.min = self.min.min(ns);
        self.max = self.max.max(ns);
    }

    pub fn record(&mut self, d: Duration) {
        self.record_ns(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max_ns(&self) -> u64 {
        self.max
    }

    pub fn min_ns(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            self.min
        }
    }

    pub fn mean_ns(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            (self.sum / u128::from(self.count)) as u64
        }
    }

    /// The value at quantile `q` (0..=1), within a bucket's width (about 3 %), never above
    /// the maximum or below the minimum seen.
    pub fn quantile_ns(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return value_of(i).clamp(self.min, self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_below_64_and_bucket_bounds_hold() {
        for v in 0..64 {
            assert_eq!(value_of(index(v)), v);
        }
        for v in [
            64u64,
            65,
            100,
            1000,
            12_345,
            1 << 20,
            987_654_321,
            u64::MAX / 3,
        ] {
            let got = value_of(index(v)) as f64;
            assert!(
                (got - v as f64).abs() / v as f64 <= 1.0 / 32.0,
                "{v} -> {got}"
            );
        }
        assert!(index(u64::MAX) < BUCKETS);
    }

    #[test]
    fn quantiles_of_a_uniform_spread() {
        let mut h = Histogram::new();
        for us in 1..=1000u64 {
            h.record_ns(us * 1000);
        }
        assert_eq!(h.count(), 1000);
        assert_eq!(h.max_ns(), 1_000_000);
        assert_eq!(h.min_ns(), 1000);
        let p50 = h.quantile_ns(0.5) as f64;
        assert!((p50 - 500_000.0).abs() < 500_000.0 * 0.04, "{p50}");
        let p99 = h.quantile_ns(0.99) as f64;
        assert!((p99 - 990_000.0).abs() < 990_000.0 * 0.04, "{p99}");
        assert_eq!(h.quantile_ns(1.0), 1_000_000);
        assert_eq!(h.mean_ns(), 500_500);
    }

    #[test]
    fn merge_adds_up() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        a.record_ns(10);
        b.record_ns(1_000_000);
        b.record_ns(5);
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.min_ns(), 5);
        assert_eq!(a.max_ns(), 1_000_000);
        assert_eq!(a.quantile_ns(0.5), 10);
    }
}
