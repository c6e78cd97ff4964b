//! A byte range of an object: what every backend reads and every range answer carries.

/// An inclusive byte range `start..=end`, always inside the representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive, as in `Content-Range`).
    pub end: u64,
}

impl ByteRange {
    /// The whole of a non-empty representation of `size` bytes.
    pub fn whole(size: u64) -> Option<Self> {
        size.checked_sub(1).map(|end| Self { start: 0, end })
    }

    /// Number of bytes in the range.
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// Never true: a `ByteRange` holds at least one byte. Here for clippy's `len` convention.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `Content-Range` value for this range of a `size`-byte representation.
    pub fn content_range(&self, size: u64) -> String {
        format!("bytes {}-{}/{}", self.start, self.end, size)
    }
}
