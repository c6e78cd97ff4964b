//! Read buffers for file streams, recycled: a chunk handed to the connection comes back to
//! the pool when the connection is done with it ([`Bytes::from_owner`]).
//!
//! Without it every chunk is a fresh allocation of up to a megabyte, freed on whatever
//! thread hyper drops it; glibc keeps such memory in per-thread arenas, and 200 concurrent
//! downloads pushed the process to 80 MiB resident. With it, the memory of file streams is
//! what is in flight plus at most [`POOL_BYTES`] kept for reuse, and a chunk costs no
//! allocation.

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

/// Most bytes of idle buffers kept per size class.
const POOL_BYTES: usize = 2 << 20;

/// The first read of a stream, and every read while the streams together hold
/// [`IN_FLIGHT_BUDGET`]: 200 concurrent downloads hold 64 KiB each.
pub const MIN_CHUNK: usize = 64 << 10;

/// The largest read: a fast download grows to it, and then costs one blocking-pool hop and
/// one system call per megabyte.
const MAX_CHUNK: usize = 1 << 20;

/// Bytes lent out to connections, all streams together, beyond which no stream's reads
/// grow: the memory of file streams stays near this, or 64 KiB per stream when more.
const IN_FLIGHT_BUDGET: usize = 16 << 20;

/// The pool. Cheap to clone.
#[derive(Clone, Default)]
pub struct BufferPool {
    classes: Arc<[Mutex<Vec<Vec<u8>>>; CLASSES.len()]>,
    /// Bytes of pooled buffers lent out now.
    lent: Arc<AtomicUsize>,
}

impl BufferPool {
    /// The size of a stream's next read after one of `last` bytes (0: none yet): it starts
    /// at [`MIN_CHUNK`] and doubles while the bytes lent out, all streams together, stay
    /// within [`IN_FLIGHT_BUDGET`] (slow start, as TCP's: a burst of new downloads does not
    /// each begin with a megabyte).
    pub fn next_chunk(&self, last: usize) -> usize {
        let grown = (last * 2).clamp(MIN_CHUNK, MAX_CHUNK);
        if self.lent.load(Ordering::Relaxed) + grown <= IN_FLIGHT_BUDGET {
            grown
        } else {
            MIN_CHUNK
        }
    }

    /// Exactly `len` bytes of `file` at `pos`, read with `pread` straight into a pooled
    /// buffer's spare capacity (no zero-filling). A file that ends before is an error. At
    /// most one buffer's size beyond `len` is read and dropped.
    pub fn read_at(&self, file: &std::fs::File, pos: u64, len: usize) -> io::Result<Bytes> {
        let (class, mut buf) = self.take(len);
        while buf.len() < len {
            let offset = pos + buf.len() as u64;
            let read = rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), offset)?;
            if read == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file ended before the range did",
                ));
            }
        }
        buf.truncate(len);
        Ok(match class {
            Some(class) => {
                self.lent.fetch_add(CLASSES[class], Ordering::Relaxed);
                Bytes::from_owner(Pooled {
                    buf,
                    class,
                    pool: self.clone(),
                })
            }
            None => Bytes::from(buf),
        })
    }

    /// An empty buffer of at least `len` bytes of capacity, and its class (`None`: larger
    /// than any class, not pooled).
    fn take(&self, len: usize) -> (Option<usize>, Vec<u8>) {
        let Some(class) = CLASSES.iter().position(|&size| size >= len) else {
            return (None, Vec::with_capacity(len));
        };
        let reused = self.classes[class]
            .lock()
            .ok()
            .and_then(|mut free| free.pop());
        let buf = reused.unwrap_or_else(|| Vec::with_capacity(CLASSES[class]));
        (Some(class), buf)
    }

    fn give(&self, class: usize, mut buf: Vec<u8>) {
        self.lent.fetch_sub(CLASSES[class], Ordering::Relaxed);
        buf.clear();
        if let Ok(mut free) = self.classes[class].lock()
            && (free.len() + 1) * CLASSES[class] <= POOL_BYTES
        {
            free.push(buf);
        }
    }
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
        let chunk = pool.read_at(&file, 1000, 70_000).unwrap();
        assert_eq!(&chunk[..], &data[1000..71_000]);
        let address = chunk.as_ptr();
        drop(chunk);
        // The same buffer comes back for the next read of its class.
        let again = pool.read_at(&file, 5, 100_000).unwrap();
        assert_eq!(&again[..], &data[5..100_005]);
        assert_eq!(again.as_ptr(), address);
        // Past the end of the file: an error, never short data.
        assert!(pool.read_at(&file, 1_299_990, 100).is_err());
        // Larger than any class: read all the same, not pooled.
        let big = pool.read_at(&file, 0, 1_300_000).unwrap();
        assert_eq!(&big[..], &data[..]);
    }

    #[test]
    fn reads_grow_while_the_budget_allows() {
        let pool = BufferPool::default();
        assert_eq!(pool.next_chunk(0), MIN_CHUNK);
        assert_eq!(pool.next_chunk(MIN_CHUNK), 2 * MIN_CHUNK);
        assert_eq!(pool.next_chunk(MAX_CHUNK), MAX_CHUNK);
        // With the budget lent out, every stream reads the minimum.
        pool.lent.store(IN_FLIGHT_BUDGET, Ordering::Relaxed);
        assert_eq!(pool.next_chunk(MAX_CHUNK), MIN_CHUNK);
    }
}
