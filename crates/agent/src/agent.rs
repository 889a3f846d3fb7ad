//! Running the reconcile loop on its own thread, stoppable at any moment.
//!
//! The loop lives on a plain thread (its operations are blocking but deadline-bounded), so the
//! async side (health endpoint, signal handling) never waits on it.

use crate::ops::MountOps;
use crate::reconcile::Reconciler;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running loop.
pub struct AgentHandle {
    stop: mpsc::Sender<()>,
    done: mpsc::Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

/// Start ticking `reconciler` until stopped; on stop it runs [`Reconciler::shutdown`].
pub fn spawn<O: MountOps + Send + 'static>(
    mut reconciler: Reconciler<O>,
) -> std::io::Result<AgentHandle> {
    let (stop, stopped) = mpsc::channel::<()>();
    let (finished, done) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("ms-reconcile".into())
        .spawn(move || {
            loop {
                let wait = reconciler.tick(Instant::now());
                match stopped.recv_timeout(wait) {
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    _ => break,
                }
            }
            reconciler.shutdown();
            let _ = finished.send(());
        })?;
    Ok(AgentHandle {
        stop,
        done,
        thread: Some(thread),
    })
}

impl AgentHandle {
    /// Ask the loop to stop and wait up to `wait` for it (including `--unmount-on-exit`).
    /// Returns false if it did not finish in time (it is then left to die with the process).
    pub fn stop(mut self, wait: Duration) -> bool {
        let _ = self.stop.send(());
        let finished = self.done.recv_timeout(wait).is_ok();
        if finished {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
        finished
    }
}
