//! READs of one file in offset order, for backends that ask for it
//! ([`mountshare_fs::Capabilities::reads_in_order`]: FUSE over a network stream). The Linux
//! client's readahead sends several READs of a file at once, and the server's threads would hand
//! them to the file system in any order; rclone without a VFS cache (and debrid backends like it)
//! answers a read out of order by reopening its HTTP stream at the new offset, a whole first
//! byte each time. Here a READ waits while a READ of a lower offset of the same file is in
//! flight, so the file system sees one sequential stream per file, as a local `cat` gives it.
//!
//! The lowest offset never waits, so nothing can wait on itself; a READ that has waited `MAX_WAIT`
//! goes on regardless (the call's own deadline has long answered its client with JUKEBOX).
use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// The longest a READ waits for lower offsets of its file.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// The READs in flight, by file (its path hash), with their offsets.
#[derive(Default)]
pub(crate) struct ReadOrder {
    files: Mutex<HashMap<u64, Vec<u64>>>,
    done: Condvar,
}

/// A READ's place in its file's order; dropping it lets the next offset go.
pub(crate) struct Turn<'a> {
    order: &'a ReadOrder,
    file: u64,
    offset: u64,
}

impl ReadOrder {
    /// Wait until no READ of `file` at a lower offset is in flight, then take a turn.
    pub(crate) fn enter(&self, file: u64, offset: u64) -> Turn<'_> {
        let until = Instant::now() + MAX_WAIT;
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        files.entry(file).or_default().push(offset);
        loop {
            let lower = files
                .get(&file)
                .is_some_and(|offsets| offsets.iter().any(|&o| o < offset));
            let now = Instant::now();
            if !lower || now >= until {
                break;
            }
            files = self
                .done
                .wait_timeout(files, until - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Turn {
            order: self,
            file,
            offset,
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut files = self.order.files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(offsets) = files.get_mut(&self.file) {
            if let Some(i) = offsets.iter().position(|&o| o == self.offset) {
                offsets.swap_remove(i);
            }
            if offsets.is_empty() {
                files.remove(&self.file);
            }
        }
        drop(files);
        self.order.done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn reads_of_one_file_go_in_offset_order() {
        let order = Arc::new(ReadOrder::default());
        let log = Arc::new(Mutex::new(Vec::new()));
        // The READ at 0 holds its turn while those at 2, 1 and 3 arrive out of order.
        let first = order.enter(7, 0);
        let mut threads = Vec::new();
        for offset in [2u64, 1, 3] {
            let (order, log) = (order.clone(), log.clone());
            threads.push(std::thread::spawn(move || {
                let _turn = order.enter(7, offset);
                log.lock().unwrap().push(offset);
                std::thread::sleep(Duration::from_millis(20));
            }));
            std::thread::sleep(Duration::from_millis(20));
        }
        // Another file is not held up.
        drop(order.enter(8, 5));
        log.lock().unwrap().push(0);
        drop(first);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*log.lock().unwrap(), [0, 1, 2, 3]);
        assert!(order.files.lock().unwrap().is_empty());
    }
}
