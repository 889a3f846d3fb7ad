//! A log line at most once per period, with a count of the occasions it stood for: what the
//! server says when the exported file system fails or stalls, without a line per call.
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// At most one report every `period_secs`; occasions in between are counted.
pub(crate) struct Throttle {
    period_secs: u64,
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl Throttle {
    pub(crate) const fn every(period_secs: u64) -> Throttle {
        Throttle {
            period_secs,
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when this occasion should be reported: `n` occasions went unreported since the
    /// last report. `None`: counted, to be reported with the next.
    pub(crate) fn admit(&self) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last.load(Ordering::Relaxed);
        if now >= last + self.period_secs
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_report_per_period_and_the_rest_counted() {
        let t = Throttle::every(3600);
        assert_eq!(t.admit(), Some(0));
        assert_eq!(t.admit(), None);
        assert_eq!(t.admit(), None);
        // Next period: the report carries the two it stood for.
        t.last.store(0, Ordering::Relaxed);
        assert_eq!(t.admit(), Some(2));
    }
}
