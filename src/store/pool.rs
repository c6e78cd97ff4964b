//! Read buffers for file streams, recycled: a chunk handed to the connection comes back to
//! the pool when the connection is done with it ([`Bytes::from_owner`]).
//!
//! Without it every chunk is a fresh allocation of up to a megabyte, freed on whatever
//! thread hyper drops it; glibc keeps such memory in per-thread arenas, and 200 concurrent
//! downloads pushed the process to 80 MiB resident. With it, the memory of file streams is
//! what is in flight plus at most [`POOL_BYTES`] kept for reuse, and a chunk costs no
//! allocation.

use std::io;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Buffer sizes, powers of two from 4 KiB to 1 MiB: a read takes the smallest that holds
/// it, so at most about as much again is read and dropped (the tail of a range).
pub const CLASSES: [usize; 9] = [
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
const POOL_BYTES: usize = 4 << 20;

/// The pool. Cheap to clone.
#[derive(Clone, Default)]
pub struct BufferPool {
    classes: Arc<[Mutex<Vec<Vec<u8>>>; CLASSES.len()]>,
}

impl BufferPool {
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
            Some(class) => Bytes::from_owner(Pooled {
                buf,
                class,
                pool: self.clone(),
            }),
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
}
