//! A bounded pool of READ buffers and of large reply buffers. A READ buffer is taken for one
//! READ, filled by `pread`, sent after the reply's head, and given back: no 1 MiB allocation and
//! no zeroing per call. A reply buffer holds a large reply (a READDIRPLUS of up to 1 MiB) while
//! it is built and sent. The pool keeps at most a fixed number of bytes of free buffers of both
//! kinds; more are allocated (and dropped) under a burst. Reusing them also keeps the allocator
//! from handing out and taking back a megabyte per call on whichever thread runs it, which is
//! what made the server's memory grow with every walk of a large tree (docs/BENCHMARKS.md).
use bytes::BytesMut;
use std::sync::Mutex;

/// Reply buffers smaller than this are not worth keeping.
const MIN_REPLY_BUFFER: usize = 64 << 10;

/// A buffer holding `len` valid bytes (its allocation may be larger).
pub(crate) struct DataBuf {
    buf: Vec<u8>,
    len: usize,
}

impl DataBuf {
    /// The first `n` bytes of the buffer (all of it, if it is smaller), to read into.
    pub(crate) fn room(&mut self, n: usize) -> &mut [u8] {
        let n = n.min(self.buf.len());
        self.buf.get_mut(..n).unwrap_or_default()
    }

    /// Mark the first `len` bytes as the data (at most the buffer's size).
    pub(crate) fn set_len(&mut self, len: usize) {
        self.len = len.min(self.buf.len());
    }

    pub(crate) fn data(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

pub(crate) struct BufferPool {
    free: Mutex<Free>,
    max_free_bytes: usize,
}

#[derive(Default)]
struct Free {
    bufs: Vec<Vec<u8>>,
    replies: Vec<BytesMut>,
    bytes: usize,
}

impl BufferPool {
    /// A pool that keeps at most `max_free_bytes` of free buffers.
    pub(crate) fn new(max_free_bytes: usize) -> Self {
        BufferPool {
            free: Mutex::new(Free::default()),
            max_free_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Free> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A buffer of at least `size` bytes (only the part that was never used before is zeroed).
    pub(crate) fn take(&self, size: usize) -> DataBuf {
        let mut buf = {
            let mut free = self.lock();
            let buf = free.bufs.pop().unwrap_or_default();
            free.bytes -= buf.len();
            buf
        };
        if buf.len() < size {
            buf.resize(size, 0);
        }
        DataBuf { buf, len: 0 }
    }

    pub(crate) fn give_back(&self, data: DataBuf) {
        let mut free = self.lock();
        if free.bytes + data.buf.len() <= self.max_free_bytes {
            free.bytes += data.buf.len();
            free.bufs.push(data.buf);
        }
    }

    /// An empty reply buffer of at least `size` bytes: a free one if there is one.
    pub(crate) fn take_reply(&self, size: usize) -> BytesMut {
        let reused = {
            let mut free = self.lock();
            let at = free.replies.iter().position(|b| b.capacity() >= size);
            at.map(|i| {
                let b = free.replies.swap_remove(i);
                free.bytes -= b.capacity();
                b
            })
        };
        reused.unwrap_or_else(|| BytesMut::with_capacity(size.max(MIN_REPLY_BUFFER)))
    }

    /// Keep a sent reply's buffer for another large reply, if it is large and there is room.
    pub(crate) fn give_back_reply(&self, mut buf: BytesMut) {
        let cap = buf.capacity();
        if cap < MIN_REPLY_BUFFER {
            return;
        }
        buf.clear();
        let mut free = self.lock();
        if free.bytes + cap <= self.max_free_bytes {
            free.bytes += cap;
            free.replies.push(buf);
        }
    }

    /// Bytes and buffers kept free now.
    pub(crate) fn usage(&self) -> (usize, usize) {
        let free = self.lock();
        (free.bytes, free.bufs.len() + free.replies.len())
    }

    pub(crate) fn max_bytes(&self) -> usize {
        self.max_free_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_the_pool_is_bounded() {
        let pool = BufferPool::new(15);
        let mut a = pool.take(10);
        assert_eq!(a.room(20).len(), 10, "no more than the buffer");
        a.room(3).copy_from_slice(b"abc");
        a.set_len(3);
        assert_eq!(a.data(), b"abc");
        let ptr = a.room(10).as_ptr();
        pool.give_back(a);
        let mut b = pool.take(5);
        assert_eq!(b.room(5).as_ptr(), ptr, "reused");
        assert_eq!(b.room(5).len(), 5);
        assert_eq!(b.data(), b"", "no stale data is marked valid");
        let c = pool.take(5);
        let d = pool.take(5);
        pool.give_back(b);
        pool.give_back(c);
        pool.give_back(d);
        assert_eq!(
            pool.usage(),
            (15, 2),
            "buffers of 10 and 5 bytes fit in 15, not a third"
        );
    }

    #[test]
    fn reply_buffers_are_reused_within_the_bound() {
        let pool = BufferPool::new(3 * MIN_REPLY_BUFFER);
        let mut a = pool.take_reply(100_000);
        a.extend_from_slice(b"reply");
        let cap = a.capacity();
        let ptr = a.as_ptr();
        pool.give_back_reply(a);
        assert_eq!(pool.usage().0, cap);
        let b = pool.take_reply(50_000);
        assert_eq!((b.as_ptr(), b.len()), (ptr, 0), "reused, empty");
        pool.give_back_reply(b);
        pool.give_back_reply(BytesMut::with_capacity(3 * MIN_REPLY_BUFFER));
        assert_eq!(pool.usage().0, cap, "no room for the third");
        pool.give_back_reply(BytesMut::with_capacity(100));
        assert_eq!(pool.usage().1, 1, "small ones are not kept");
    }
}
