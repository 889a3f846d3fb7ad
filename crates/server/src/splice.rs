//! Zero-copy READ: the file's pages go into a pipe with `splice(2)` (no copy: the pipe holds
//! references to the page cache), and from the pipe into the socket the same way. The bytes are
//! in the pipe before the reply's head is written, so the head carries the exact count and EOF,
//! as the Linux server does it. Pipes are reused from a bounded pool.
//!
//! This module owns a READ's pipe for its whole life: [`PipePool::read`] takes one from the pool
//! and fills it from the file, [`SplicedData::send_some`] drains it into the socket, and dropping the
//! [`SplicedData`] gives the pipe back (or closes it, if bytes were left in it). Nothing else
//! touches a pipe.
use rustix::fd::{AsFd, OwnedFd};
use rustix::pipe::{
    fcntl_getpipe_size, fcntl_setpipe_size, pipe_with, splice, PipeFlags, SpliceFlags,
};
use std::fs::File;
use std::sync::{Arc, Mutex};

/// A pipe able to hold a whole READ.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes in the pipe not yet sent.
    pending: usize,
}

/// What [`PipePool::read`] got.
pub(crate) enum Spliced {
    /// The bytes are in a pipe, ready to be sent after the reply's head.
    Ready(SplicedData),
    /// Nothing was read: no pipe to be had, or no splice on this file system. Read by copying.
    CopyInstead,
    /// The read failed part-way; what moved cannot be put back.
    Failed,
}

/// A READ's bytes waiting in a pipe. Dropping it gives the pipe back to its pool.
pub(crate) struct SplicedData {
    pipe: Option<Pipe>,
    pool: Arc<PipePool>,
}

impl SplicedData {
    /// Bytes in the pipe not yet sent.
    pub(crate) fn len(&self) -> usize {
        self.pipe.as_ref().map_or(0, |p| p.pending)
    }

    /// Move as many of the bytes as the (non-blocking) socket `sock` takes; `more` corks it
    /// for what follows. Returns how many moved: 0 when the socket is full.
    pub(crate) fn send_some(&mut self, sock: impl AsFd, more: bool) -> std::io::Result<usize> {
        let Some(pipe) = self.pipe.as_mut() else {
            return Ok(0);
        };
        let mut moved = 0;
        while pipe.pending > 0 {
            match drain_into(pipe, &sock, more) {
                Ok(0) => break,
                Ok(n) => moved += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(moved)
    }
}

impl SplicedData {
    /// The bytes in the pipe, read out of it (for a reply that must be copied). A failure to
    /// read them is a broken pipe: what was read is returned, and the pipe is not reused.
    pub(crate) fn read_out(&mut self) -> Vec<u8> {
        let Some(pipe) = self.pipe.as_mut() else {
            return Vec::new();
        };
        let mut out = vec![0; pipe.pending];
        let mut at = 0;
        while at < out.len() {
            match rustix::io::read(&pipe.read, out.get_mut(at..).unwrap_or_default()) {
                Ok(0) => break,
                Ok(n) => at += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => break,
            }
        }
        out.truncate(at);
        pipe.pending -= at;
        out
    }
}

impl Drop for SplicedData {
    fn drop(&mut self) {
        if let Some(pipe) = self.pipe.take() {
            self.pool.give_back(pipe);
        }
    }
}

/// Pipes kept for reuse, all of one capacity. Each may pin up to its capacity of page-cache
/// pages while in use, and a reply may hold one while its client is slow to read it, so there
/// are never more than `max` pipes at once: past it, READ copies instead.
pub(crate) struct PipePool {
    free: Mutex<Vec<Pipe>>,
    max: usize,
    /// Pipes that exist: free or in use.
    live: std::sync::atomic::AtomicUsize,
    capacity: usize,
    /// Cleared when the host refuses pipes of the size needed: READ then copies instead.
    usable: std::sync::atomic::AtomicBool,
}

impl PipePool {
    /// A pool of at most `max_bytes` of pipes (free or in use) that each hold `capacity` bytes.
    pub(crate) fn new(max_bytes: usize, capacity: usize) -> Self {
        PipePool {
            free: Mutex::new(Vec::new()),
            max: max_bytes / capacity.max(1),
            live: std::sync::atomic::AtomicUsize::new(0),
            capacity,
            usable: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// Up to `count` bytes of `file` from `offset`, moved into a pipe without a copy: fewer at
    /// end of file, or when the pipe is full (a short READ, which NFS allows).
    pub(crate) fn read(self: &Arc<Self>, file: &File, offset: u64, count: usize) -> Spliced {
        let Some(mut pipe) = self.take(count) else {
            return Spliced::CopyInstead;
        };
        match fill(&mut pipe, file, offset, count) {
            Ok(_) => Spliced::Ready(SplicedData {
                pipe: Some(pipe),
                pool: self.clone(),
            }),
            Err(_) if pipe.pending == 0 => {
                self.give_back(pipe);
                Spliced::CopyInstead
            }
            Err(_) => Spliced::Failed,
        }
    }

    /// An empty pipe that holds at least `size` bytes, or `None` when all the pool may have are
    /// in use or the host won't give one (`fs.pipe-max-size` or the per-user pipe limit), in
    /// which case READ copies instead.
    fn take(&self, size: usize) -> Option<Pipe> {
        use std::sync::atomic::Ordering;
        if size > self.capacity || !self.usable.load(Ordering::Relaxed) {
            return None;
        }
        if let Some(p) = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Some(p);
        }
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()?;
        let made = self.make();
        if made.is_none() {
            self.live.fetch_sub(1, Ordering::AcqRel);
        }
        made
    }

    fn make(&self) -> Option<Pipe> {
        let (read, write) = pipe_with(PipeFlags::CLOEXEC).ok()?;
        // Always the pool's full capacity: a pipe made for a small READ is reused for large ones.
        let size = self.capacity;
        let ok = fcntl_setpipe_size(&write, size).is_ok()
            && fcntl_getpipe_size(&write).is_ok_and(|c| c >= size);
        if !ok {
            tracing::info!(
                size,
                "pipes of this size are refused here; READ copies its data instead"
            );
            self.usable
                .store(false, std::sync::atomic::Ordering::Relaxed);
            return None;
        }
        Some(Pipe {
            read,
            write,
            pending: 0,
        })
    }

    /// Bytes (capacity) and pipes that exist now: free, or holding a reply.
    pub(crate) fn usage(&self) -> (usize, usize) {
        let n = self.live.load(std::sync::atomic::Ordering::Acquire);
        (n * self.capacity, n)
    }

    pub(crate) fn max_bytes(&self) -> usize {
        self.max * self.capacity
    }

    /// Keep an emptied pipe for the next READ; a pipe with bytes left in it is closed.
    fn give_back(&self, pipe: Pipe) {
        if pipe.pending != 0 {
            drop(pipe);
            self.live.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            return;
        }
        self.free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pipe);
    }
}

/// Move up to `count` bytes of `file` from `offset` into the empty `pipe`. Returns how many:
/// fewer at end of file, or when the pipe is full (a short READ, which NFS allows). Never waits
/// on the pipe. An error before any byte moved (a file system without splice support answers
/// EINVAL) leaves the pipe empty, so the caller can read the ordinary way.
fn fill(pipe: &mut Pipe, file: &File, offset: u64, count: usize) -> std::io::Result<usize> {
    let mut off = offset;
    while pipe.pending < count {
        let len = count - pipe.pending;
        match splice(
            file,
            Some(&mut off),
            &pipe.write,
            None,
            len,
            SpliceFlags::NONBLOCK,
        ) {
            Ok(0) => break,
            Ok(n) => pipe.pending += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) if pipe.pending > 0 => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(pipe.pending)
}

/// Move what `pipe` holds into the (non-blocking) socket `sock`; returns bytes moved, or
/// `WouldBlock` when the socket is full.
fn drain_into(pipe: &mut Pipe, sock: impl AsFd, more: bool) -> std::io::Result<usize> {
    let mut flags = SpliceFlags::NONBLOCK | SpliceFlags::MOVE;
    if more {
        flags |= SpliceFlags::MORE;
    }
    let n = splice(&pipe.read, None, sock, None, pipe.pending, flags)?;
    pipe.pending -= n;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn fill_stops_at_end_of_file_and_drains_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"deep").unwrap();
        let file = File::open(&path).unwrap();
        let pool = PipePool::new(2 << 20, 1 << 20);
        let mut pipe = pool.take(1 << 20).unwrap();
        assert_eq!(fill(&mut pipe, &file, 0, 1 << 20).unwrap(), 4);
        assert_eq!(
            fill(&mut pipe, &file, 4, 1 << 20).unwrap(),
            4,
            "nothing more at EOF"
        );
        let mut out = [0u8; 16];
        let n = File::from(pipe.read.try_clone().unwrap())
            .read(&mut out)
            .unwrap();
        assert_eq!(&out[..n], b"deep");
    }

    /// Regression: a pipe first used for a small READ must still hold a whole large one (a pipe
    /// sized for 10 bytes used to be reused for 1 MiB, and the splice waited forever).
    #[test]
    fn pooled_pipes_always_hold_a_full_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 3 << 20]).unwrap();
        let file = File::open(&path).unwrap();
        let pool = PipePool::new(2 << 20, 1 << 20);
        let mut small = pool.take(10).unwrap();
        assert_eq!(fill(&mut small, &file, 0, 10).unwrap(), 10);
        let mut sink = vec![0u8; 10];
        File::from(small.read.try_clone().unwrap())
            .read_exact(&mut sink)
            .unwrap();
        small.pending = 0;
        pool.give_back(small);
        let mut big = pool.take(1 << 20).unwrap();
        assert_eq!(fill(&mut big, &file, 0, 1 << 20).unwrap(), 1 << 20);
        assert!(pool.take(2 << 20).is_none(), "larger than the pool's pipes");
    }

    /// A reply waiting on a slow client holds its pipe: the pool never makes more than its
    /// bound, and a pipe closed with bytes left in it frees its place.
    #[test]
    fn the_pool_makes_no_more_pipes_than_its_bound() {
        let pool = PipePool::new(2 << 16, 1 << 16);
        let mut a = pool.take(10).unwrap();
        let b = pool.take(10).unwrap();
        assert!(pool.take(10).is_none(), "both pipes are in use");
        a.pending = 3; // given back with bytes left in it: closed
        pool.give_back(a);
        pool.give_back(b);
        let _c = pool.take(10).unwrap();
        let _d = pool.take(10).unwrap();
        assert!(pool.take(10).is_none());
    }
}
