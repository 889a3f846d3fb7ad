//! Process supervision for `serve --run -- COMMAND`: the FUSE daemon runs as our child in our
//! mount namespace, SIGTERM, SIGINT and SIGHUP are passed on to it, its exit status becomes ours,
//! and as PID 1 of a container we also reap the orphans it leaves behind. Without a child
//! (`--from-process`), SIGTERM and SIGINT stop us.

use anyhow::Context;
use rustix::process::{Pid, Signal, WaitOptions, WaitStatus};
use std::ffi::OsString;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// The child started by `--run`. It is reaped here, not by `std`, because as PID 1 of a
/// container we also reap the orphans it leaves behind.
pub struct Child {
    pid: Pid,
    reap_all: bool,
}

impl Child {
    pub fn spawn(command: &[OsString]) -> anyhow::Result<Child> {
        let (program, args) = command
            .split_first()
            .context("--run needs a command after --")?;
        let child = std::process::Command::new(program)
            .args(args)
            .spawn()
            .with_context(|| format!("cannot start {}", program.to_string_lossy()))?;
        let pid = Pid::from_child(&child);
        tracing::info!(pid = pid.as_raw_nonzero().get(), command = %program.to_string_lossy(), "child started");
        Ok(Child {
            pid,
            reap_all: std::process::id() == 1,
        })
    }

    /// The child's status once it has exited; never blocks.
    fn try_exit(&self) -> Option<WaitStatus> {
        if self.reap_all {
            let mut status = None;
            while let Ok(Some((pid, st))) = rustix::process::wait(WaitOptions::NOHANG) {
                if pid == self.pid {
                    status = Some(st);
                }
            }
            status
        } else {
            rustix::process::waitpid(Some(self.pid), WaitOptions::NOHANG)
                .ok()
                .flatten()
        }
    }

    fn forward(&self, sig: Signal) {
        if let Err(e) = rustix::process::kill_process(self.pid, sig) {
            tracing::warn!(signal = ?sig, error = %e, "cannot pass the signal on to the child");
        }
    }
}

/// Our exit code for the child's status: its own code, or 128 + the signal that killed it.
pub fn exit_code(status: WaitStatus) -> u8 {
    if let Some(code) = status.exit_status() {
        code as u8
    } else if let Some(sig) = status.terminating_signal() {
        (128 + sig) as u8
    } else {
        1
    }
}

/// What happened while waiting.
pub enum Event {
    /// The child exited, with this status.
    ChildExited(WaitStatus),
    /// SIGTERM or SIGINT, with no child to pass it on to.
    Stop,
    /// The interval passed, or a signal was passed on to the child.
    Tick,
}

/// The signals `serve --run` and `--from-process` wait on: SIGTERM, SIGINT, SIGHUP, SIGCHLD.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    chld: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn new() -> anyhow::Result<Signals> {
        let make = |kind| signal(kind).context("cannot install a signal handler");
        Ok(Signals {
            term: make(SignalKind::terminate())?,
            int: make(SignalKind::interrupt())?,
            hup: make(SignalKind::hangup())?,
            chld: make(SignalKind::child())?,
        })
    }

    /// Waits for the next event. With a child, SIGTERM/SIGINT/SIGHUP go to it and we carry on
    /// until it exits; without one, SIGTERM/SIGINT stop us.
    pub async fn next(&mut self, child: Option<&Child>, interval: Duration) -> Event {
        if let Some(st) = child.and_then(Child::try_exit) {
            return Event::ChildExited(st);
        }
        let sig = tokio::select! {
            _ = self.term.recv() => Signal::Term,
            _ = self.int.recv() => Signal::Int,
            _ = self.hup.recv() => Signal::Hup,
            _ = self.chld.recv() => {
                return match child.and_then(Child::try_exit) {
                    Some(st) => Event::ChildExited(st),
                    None => Event::Tick,
                };
            }
            _ = tokio::time::sleep(interval) => return Event::Tick,
        };
        match child {
            Some(c) => {
                tracing::info!(signal = ?sig, "passing the signal on to the child");
                c.forward(sig);
                Event::Tick
            }
            None if sig == Signal::Hup => Event::Tick,
            None => {
                tracing::info!(signal = ?sig, "stopping");
                Event::Stop
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::zombie_processes)] // reaped by waitpid, which std does not see
    fn exit_code_is_the_childs_or_128_plus_signal() {
        let status = |cmd: &str| {
            let c = std::process::Command::new("sh")
                .args(["-c", cmd])
                .spawn()
                .unwrap();
            let pid = Pid::from_child(&c);
            rustix::process::waitpid(Some(pid), WaitOptions::empty())
                .unwrap()
                .unwrap()
        };
        assert_eq!(exit_code(status("exit 3")), 3);
        assert_eq!(exit_code(status("kill -TERM $$")), 128 + 15);
    }
}
