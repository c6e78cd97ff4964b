//! Read buffers for file streams, recycled: a chunk handed to the connection comes back to
//! the pool when the connection is done with it ([`Bytes::from_owner`]).
//!
//! Without it every chunk is a fresh allocation of up to a megabyte, freed on whatever
//! thread hyper drops it; glibc keeps such memory in per-thread arenas, and 200 concurrent
//! downloads pushed the process to 80 MiB resident. With it, the memory of file streams is
//! what is in flight (at most [`IN_FLIGHT_BUDGET`], or 64 KiB a stream) plus at most
//! [`IDLE_BYTES`] kept for reuse, and a chunk costs no allocation.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Buffer sizes, powers of two from 4 KiB to 1 MiB: a read takes the smallest that holds
/// it, so at most about as much again is read and dropped (the tail of a range).
const CLASSES: [usize; 9] = [
    4 << 10,
    8 << 10,
    16 << 10,
    32 << 10,
    64 << 10,
    128 << 10,
    256 << 10,
    512 << 10,
    1 << 20,
];

/// Most bytes of idle buffers kept, all sizes together: enough that a steady load of
/// downloads recycles its buffers instead of going back to the allocator (whose per-thread
/// arenas keep what was freed: 200 downloads held 130 MiB resident that way), little enough
/// to be nothing when idle.
const IDLE_BYTES: usize = 4 << 20;

/// The first read of a stream, and every read while the streams together hold
/// [`IN_FLIGHT_BUDGET`].
pub const MIN_CHUNK: usize = 64 << 10;

/// The largest read: a fast download grows to it, and then costs one blocking-pool hop and
/// one system call per megabyte.
const MAX_CHUNK: usize = 1 << 20;

/// Bytes lent out to connections (reserved before the read, so that many streams growing
/// at once cannot overshoot it), beyond which every read is [`MIN_CHUNK`]: a few fast
/// downloads read a megabyte at a time, 200 slow ones 64 KiB each (12.5 MiB) and no more.
const IN_FLIGHT_BUDGET: usize = 8 << 20;

/// The pool. Cheap to clone.
#[derive(Clone, Default)]
pub struct BufferPool {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    classes: [Mutex<Vec<Vec<u8>>>; CLASSES.len()],
    /// Bytes of pooled buffers lent out (or reserved for a read) now.
    lent: AtomicUsize,
    /// Bytes of idle buffers kept in `classes`.
    idle: AtomicUsize,
}

/// A buffer lent for one read: taken (and its size reserved) on the caller's thread, so
/// that buffers are allocated by the runtime's few threads rather than by whichever of the
/// blocking pool's threads reads; filled by [`Loan::read_at`]. Dropped unused, it goes back.
pub struct Loan {
    pooled: Pooled,
    len: usize,
}

impl BufferPool {
    /// A buffer for a stream's next read after one of `last` bytes (0: none yet), of at most
    /// `remaining` bytes: the read starts at [`MIN_CHUNK`] and doubles while the bytes lent
    /// out, all streams together, stay within [`IN_FLIGHT_BUDGET`] (slow start, as TCP's: a
    /// burst of new downloads does not each begin with a megabyte).
    pub fn lend(&self, last: usize, remaining: u64) -> Loan {
        let fit = |size: usize| (remaining.min(size as u64)) as usize;
        let grown = fit((last * 2).clamp(MIN_CHUNK, MAX_CHUNK));
        let mut len = grown;
        let reserved = self
            .inner
            .lent
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |lent| {
                len = if lent + class_size(grown) <= IN_FLIGHT_BUDGET {
                    grown
                } else {
                    fit(MIN_CHUNK)
                };
                Some(lent + class_size(len))
            });
        debug_assert!(reserved.is_ok());
        let class = class_of(len);
        let reused = self.inner.classes[class]
            .lock()
            .ok()
            .and_then(|mut free| free.pop());
        let buf = match reused {
            Some(buf) => {
                self.inner.idle.fetch_sub(CLASSES[class], Ordering::Relaxed);
                buf
            }
            None => Vec::with_capacity(CLASSES[class]),
        };
        Loan {
            pooled: Pooled {
                buf,
                class,
                pool: self.clone(),
            },
            len,
        }
    }

    fn give(&self, class: usize, mut buf: Vec<u8>) {
        let size = CLASSES[class];
        self.inner.lent.fetch_sub(size, Ordering::Relaxed);
        let kept = self
            .inner
            .idle
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |idle| {
                (idle + size <= IDLE_BYTES).then_some(idle + size)
            });
        if kept.is_ok() {
            buf.clear();
            match self.inner.classes[class].lock() {
                Ok(mut free) => free.push(buf),
                Err(_) => {
                    self.inner.idle.fetch_sub(size, Ordering::Relaxed);
                }
            }
        }
    }
}

impl Loan {
    /// How many bytes this loan reads.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Exactly [`Self::len`] bytes of `file` at `pos`, read with `pread` straight into the
    /// buffer's spare capacity (no zero-filling). A file that ends before is an error. The
    /// buffer comes back to the pool when the last clone of the answer is dropped.
    pub fn read_at(mut self, file: &std::fs::File, pos: u64) -> io::Result<Bytes> {
        let (len, buf) = (self.len, &mut self.pooled.buf);
        while buf.len() < len {
            let offset = pos + buf.len() as u64;
            let read = rustix::io::pread(file, rustix::buffer::spare_capacity(buf), offset)?;
            if read == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file ended before the range did",
                ));
            }
        }
        // A read may have gone past the range, up to the buffer's size.
        buf.truncate(len);
        Ok(Bytes::from_owner(self.pooled))
    }
}

/// The smallest class that holds `len` bytes (at most [`MAX_CHUNK`]).
fn class_of(len: usize) -> usize {
    CLASSES
        .iter()
        .position(|&size| size >= len)
        .unwrap_or(CLASSES.len() - 1)
}

fn class_size(len: usize) -> usize {
    CLASSES[class_of(len)]
}

/// A pooled buffer lent to a [`Bytes`]; back in the pool when the last clone is dropped.
struct Pooled {
    buf: Vec<u8>,
    class: usize,
    pool: BufferPool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(self.class, std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_exactly_and_recycles() {
        let mut file = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..1_300_000u32).map(|i| (i % 251) as u8).collect();
        file.write_all(&data).unwrap();
        let pool = BufferPool::default();
        let loan = pool.lend(MIN_CHUNK, 70_000);
        assert_eq!(loan.len(), 70_000);
        let chunk = loan.read_at(&file, 1000).unwrap();
        assert_eq!(&chunk[..], &data[1000..71_000]);
        assert_eq!(pool.inner.lent.load(Ordering::Relaxed), 128 << 10);
        let address = chunk.as_ptr();
        drop(chunk);
        assert_eq!(pool.inner.lent.load(Ordering::Relaxed), 0);
        assert_eq!(pool.inner.idle.load(Ordering::Relaxed), 128 << 10);
        // The same buffer comes back for the next read of its class.
        let again = pool.lend(MIN_CHUNK, 100_000).read_at(&file, 5).unwrap();
        assert_eq!(&again[..], &data[5..100_005]);
        assert_eq!(again.as_ptr(), address);
        assert_eq!(pool.inner.idle.load(Ordering::Relaxed), 0);
        // Past the end of the file: an error, never short data; the buffer goes back.
        assert!(pool.lend(0, 100).read_at(&file, 1_299_990).is_err());
        assert_eq!(pool.inner.lent.load(Ordering::Relaxed), 128 << 10);
    }

    #[test]
    fn reads_grow_while_the_budget_allows() {
        let pool = BufferPool::default();
        let first = pool.lend(0, u64::MAX);
        assert_eq!(first.len(), MIN_CHUNK);
        assert_eq!(pool.lend(MIN_CHUNK, u64::MAX).len(), 2 * MIN_CHUNK);
        assert_eq!(pool.lend(MAX_CHUNK, u64::MAX).len(), MAX_CHUNK);
        // The tail of a range: no more than it.
        assert_eq!(pool.lend(MAX_CHUNK, 10).len(), 10);
        // Loans count until they are dropped: with the budget reserved, every stream
        // reads the minimum.
        let held: Vec<Loan> = (0..7).map(|_| pool.lend(MAX_CHUNK, u64::MAX)).collect();
        assert!(held.iter().all(|loan| loan.len() == MAX_CHUNK));
        assert_eq!(pool.lend(MAX_CHUNK, u64::MAX).len(), MIN_CHUNK);
        drop(held);
        assert_eq!(pool.lend(MAX_CHUNK, u64::MAX).len(), MAX_CHUNK);
    }

    #[test]
    fn idle_buffers_are_bounded() {
        let pool = BufferPool::default();
        let loans: Vec<Loan> = (0..64).map(|_| pool.lend(0, u64::MAX)).collect();
        drop(loans);
        assert_eq!(pool.inner.lent.load(Ordering::Relaxed), 0);
        assert_eq!(pool.inner.idle.load(Ordering::Relaxed), IDLE_BYTES);
        let kept: usize = pool
            .inner
            .classes
            .iter()
            .map(|c| c.lock().unwrap().len())
            .sum();
        assert_eq!(kept, IDLE_BYTES / MIN_CHUNK);
    }
}
