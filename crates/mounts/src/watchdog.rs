//! Running calls that may hang in the kernel (on a dead NFS server) without hanging the agent.
//!
//! A call runs on a detached thread; the caller waits up to a deadline and then walks away. A
//! thread left behind may stay in uninterruptible sleep for as long as the mount is dead (forever
//! on a `hard` mount), so each lane bounds how many such threads exist: while the lane is full,
//! new calls are refused at once instead of piling up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// The outcome of a call under a deadline.
#[derive(Debug, PartialEq, Eq)]
pub enum Deadlined<T> {
    /// The call returned in time.
    Done(T),
    /// The deadline passed; the thread was left behind.
    TimedOut,
    /// Too many earlier calls on this lane are still stuck; this one was not started.
    Busy,
}

/// A lane of calls with a bound on threads in flight (running or abandoned).
#[derive(Debug, Clone)]
pub struct Lane {
    name: &'static str,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: usize,
}

struct Release(Arc<AtomicUsize>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Lane {
    pub fn new(name: &'static str, max_in_flight: usize) -> Self {
        Self {
            name,
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_in_flight: max_in_flight.max(1),
        }
    }

    /// Run `f` on its own thread and wait at most `deadline` for it.
    pub fn run<T, F>(&self, deadline: Duration, f: F) -> Deadlined<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let claimed = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_in_flight).then_some(n + 1)
            });
        if claimed.is_err() {
            return Deadlined::Busy;
        }
        let release = Release(self.in_flight.clone());
        let (tx, rx) = mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new()
            .name(format!("ms-{}", self.name))
            .stack_size(128 * 1024)
            .spawn(move || {
                let _release = release;
                let _ = tx.send(f());
            });
        if spawned.is_err() {
            // The closure (and its Release) was dropped with the failed spawn.
            return Deadlined::Busy;
        }
        match rx.recv_timeout(deadline) {
            Ok(v) => Deadlined::Done(v),
            Err(_) => Deadlined::TimedOut,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stuck_call_is_abandoned_and_the_lane_refuses_more_until_it_returns() {
        let lane = Lane::new("test", 1);
        let (unstick, stuck) = mpsc::channel::<()>();
        let r = lane.run(Duration::from_millis(20), move || {
            let _ = stuck.recv();
        });
        assert_eq!(r, Deadlined::TimedOut);
        assert_eq!(lane.run(Duration::from_secs(5), || 1), Deadlined::Busy);
        unstick.send(()).unwrap();
        // Once the stuck thread returns, the lane takes calls again.
        let mut r = Deadlined::Busy;
        for _ in 0..500 {
            r = lane.run(Duration::from_secs(5), || 2);
            if r != Deadlined::Busy {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(r, Deadlined::Done(2));
    }
}
