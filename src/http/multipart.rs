//! `multipart/byteranges` bodies (RFC 9110 §14.6) with a length known in advance.
//!
//! electron-updater's differential downloader splits the body by byte counts: it skips
//! `--boundary` at the start, finds each part's headers by the blank line, then takes exactly
//! the length it asked for. So the body starts with the boundary (no preamble), parts come in
//! request order, each exactly its range, and `Content-Length` is fixed so that a CDN in
//! front does not replace a chunked answer with the whole object.

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream;

use crate::store::parts::read_parts;
use crate::store::{ByteRange, ByteStream, Object};

/// A planned multipart body: boundary, part headers and total length.
#[derive(Debug, Clone)]
pub struct MultipartBody {
    boundary: String,
    /// Delimiter plus headers of each part, in order.
    heads: Vec<Bytes>,
    ranges: Vec<ByteRange>,
    tail: Bytes,
}

impl MultipartBody {
    /// Plans the body for `ranges` of a `size`-byte object of type `part_type`.
    pub fn new(ranges: Vec<ByteRange>, size: u64, part_type: &str) -> Self {
        Self::with_boundary(random_boundary(), ranges, size, part_type)
    }

    /// As [`MultipartBody::new`], with a chosen boundary (for tests).
    fn with_boundary(boundary: String, ranges: Vec<ByteRange>, size: u64, part_type: &str) -> Self {
        let heads = ranges
            .iter()
            .enumerate()
            .map(|(i, range)| {
                // The CRLF before a delimiter belongs to the delimiter (RFC 2046 §5.1.1);
                // the first one has none, which is what electron-updater expects.
                let lead = if i == 0 { "" } else { "\r\n" };
                Bytes::from(format!(
                    "{lead}--{boundary}\r\nContent-Type: {part_type}\r\nContent-Range: {}\r\n\r\n",
                    range.content_range(size)
                ))
            })
            .collect();
        let tail = Bytes::from(format!("\r\n--{boundary}--\r\n"));
        Self {
            boundary,
            heads,
            ranges,
            tail,
        }
    }

    /// The response `Content-Type`; the boundary is its last (and only) parameter.
    pub fn content_type(&self) -> String {
        format!("multipart/byteranges; boundary={}", self.boundary)
    }

    /// Exact body length.
    pub fn content_length(&self) -> u64 {
        let heads: u64 = self.heads.iter().map(|h| h.len() as u64).sum();
        let data: u64 = self.ranges.iter().map(ByteRange::len).sum();
        heads + data + self.tail.len() as u64
    }

    /// The body: the parts read from `object` in order, ranges close to each other read
    /// together when the object is remote (see [`crate::store::parts`]).
    pub fn stream(self, object: Object) -> ByteStream {
        let gap = object.read_gap();
        let heads = self.heads;
        let mut next_head = 0;
        let body = read_parts(object, self.ranges, gap).flat_map(move |chunk| {
            let mut out = Vec::with_capacity(2);
            match chunk {
                Ok(chunk) => {
                    // A part's head goes out just before its first bytes.
                    while next_head <= chunk.part && next_head < heads.len() {
                        out.push(Ok(heads[next_head].clone()));
                        next_head += 1;
                    }
                    out.push(Ok(chunk.bytes));
                }
                Err(err) => out.push(Err(err)),
            }
            stream::iter(out)
        });
        Box::pin(body.chain(stream::once(async move { Ok(self.tail) })))
    }
}

/// 128 random bits, hex: cannot plausibly occur inside an artifact.
fn random_boundary() -> String {
    format!("{:032x}", fastrand::u128(..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_length() {
        let body = MultipartBody::with_boundary(
            "B".into(),
            vec![
                ByteRange { start: 0, end: 1 },
                ByteRange { start: 5, end: 7 },
            ],
            10,
            "application/octet-stream",
        );
        assert_eq!(body.content_type(), "multipart/byteranges; boundary=B");
        let expected_heads = "--B\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 0-1/10\r\n\r\n"
            .len()
            + "\r\n--B\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 5-7/10\r\n\r\n"
                .len();
        assert_eq!(
            body.content_length(),
            (expected_heads + 2 + 3 + "\r\n--B--\r\n".len()) as u64
        );
    }

    #[test]
    fn boundaries_differ() {
        assert_ne!(random_boundary(), random_boundary());
        assert_eq!(random_boundary().len(), 32);
    }
}
