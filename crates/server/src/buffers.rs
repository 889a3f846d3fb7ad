//! A bounded pool of READ buffers. A buffer is taken for one READ, filled by `pread`, sent after
//! the reply's head, and given back: no 1 MiB allocation and no zeroing per call. The pool keeps
//! at most a fixed number of buffers; more are allocated (and dropped) under a burst.
use std::sync::Mutex;

/// A buffer holding `len` valid bytes (its allocation may be larger).
pub(crate) struct DataBuf {
    buf: Vec<u8>,
    len: usize,
}

impl DataBuf {
    /// The whole buffer, to read into.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// Mark the first `len` bytes as the data (at most the buffer's size).
    pub(crate) fn set_len(&mut self, len: usize) {
        self.len = len.min(self.buf.len());
    }

    pub(crate) fn data(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

pub(crate) struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
    max_free: usize,
}

impl BufferPool {
    pub(crate) fn new(max_free: usize) -> Self {
        BufferPool {
            free: Mutex::new(Vec::new()),
            max_free,
        }
    }

    /// A buffer of at least `size` bytes (only the part that was never used before is zeroed).
    pub(crate) fn take(&self, size: usize) -> DataBuf {
        let mut buf = self
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default();
        if buf.len() < size {
            buf.resize(size, 0);
        }
        DataBuf { buf, len: 0 }
    }

    pub(crate) fn give_back(&self, data: DataBuf) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < self.max_free {
            free.push(data.buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_the_pool_is_bounded() {
        let pool = BufferPool::new(2);
        let mut a = pool.take(10);
        a.as_mut_slice()[..3].copy_from_slice(b"abc");
        a.set_len(3);
        assert_eq!(a.data(), b"abc");
        let ptr = a.as_mut_slice().as_ptr();
        pool.give_back(a);
        let mut b = pool.take(5);
        assert_eq!(b.as_mut_slice().as_ptr(), ptr, "reused");
        assert!(b.as_mut_slice().len() >= 5);
        assert_eq!(b.data(), b"", "no stale data is marked valid");
        let c = pool.take(5);
        let d = pool.take(5);
        pool.give_back(b);
        pool.give_back(c);
        pool.give_back(d);
        assert_eq!(pool.free.lock().unwrap().len(), 2);
    }
}
