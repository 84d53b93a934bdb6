//! Latency samples and their percentiles.

use std::time::Duration;

/// A set of latency samples.
#[derive(Debug, Default, Clone)]
pub(crate) struct Latencies {
    samples: Vec<Duration>,
}

impl Latencies {
    /// An empty set with room for `n` samples.
    pub(crate) fn with_capacity(n: usize) -> Self {
        Latencies { samples: Vec::with_capacity(n) }
    }

    /// Adds one sample.
    pub(crate) fn push(&mut self, d: Duration) {
        self.samples.push(d);
    }

    /// Adds every sample of `other`.
    pub(crate) fn extend(&mut self, other: Latencies) {
        self.samples.extend(other.samples);
    }

    /// Number of samples.
    pub(crate) fn len(&self) -> usize {
        self.samples.len()
    }

    /// The `p`-th percentile (0–100, nearest rank) in milliseconds; 0 when empty.
    pub(crate) fn percentile_ms(&mut self, p: f64) -> f64 {
        if self.samples.is_empty() {
            return 0.0;
        }
        self.samples.sort_unstable();
        let rank = ((p / 100.0) * self.samples.len() as f64).ceil() as usize;
        let idx = rank.clamp(1, self.samples.len()) - 1;
        ms(self.samples[idx])
    }
}

/// A duration in (fractional) milliseconds.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(samples_ms: &[u64], p: f64, expect: f64) {
        let mut l = Latencies::default();
        for s in samples_ms {
            l.push(Duration::from_millis(*s));
        }
        assert_eq!(l.percentile_ms(p), expect, "p{p} of {samples_ms:?}");
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        check(&[], 50.0, 0.0);
        check(&[7], 99.0, 7.0);
        check(&[3, 1, 2], 50.0, 2.0);
        check(&[1, 2, 3, 4], 50.0, 2.0);
        check(&(1..=100).collect::<Vec<_>>(), 99.0, 99.0);
        check(&(1..=1000).collect::<Vec<_>>(), 99.0, 990.0);
        check(&[5, 1], 0.0, 1.0);
    }
}
