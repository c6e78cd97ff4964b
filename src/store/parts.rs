//! Several ranges of one object, read with as few upstream requests as is sensible.
//!
//! electron-updater's differential download asks for up to 1000 ranges in one request. From
//! a bucket or GitHub's storage host each read is one HTTP request with its round trip, so
//! ranges close to each other are read as one span and the bytes between them dropped: the
//! client still gets exactly the parts it asked for, in its order. From a local file a read
//! costs no round trip and nothing is merged.

use std::collections::VecDeque;
use std::io;

use bytes::Bytes;
use futures_util::StreamExt;

use super::{ByteRange, ByteStream, Object};

/// Ranges at most this far apart are read as one span from a remote origin: reading 256 KiB
/// more takes a few milliseconds, another round trip to a bucket tens of them, and the
/// bytes read in vain (billed as egress by some stores) stay bounded per merged pair.
pub const REMOTE_GAP: u64 = 256 * 1024;

/// One upstream read covering `parts` (indexes into the requested ranges).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Span {
    /// What is read.
    pub range: ByteRange,
    /// The first requested range it covers.
    pub first: usize,
    /// The last requested range it covers.
    pub last: usize,
}

/// Groups `ranges` into spans: consecutive ranges in ascending order whose gap is at most
/// `gap` bytes share one. A range that goes backwards starts a new span, so any order is
/// served (in the order asked).
fn spans(ranges: &[ByteRange], gap: u64) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    for (i, range) in ranges.iter().enumerate() {
        if let Some(span) = spans.last_mut()
            && range.start > span.range.end
            && range.start - span.range.end - 1 <= gap
        {
            span.range.end = range.end;
            span.last = i;
            continue;
        }
        spans.push(Span {
            range: *range,
            first: i,
            last: i,
        });
    }
    spans
}

/// A piece of one requested range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartChunk {
    /// Which requested range.
    pub part: usize,
    /// Its next bytes.
    pub bytes: Bytes,
}

/// The bytes of `ranges` of `object`, in order, tagged with the range they belong to; read
/// span by span, each only when the one before is done.
pub fn read_parts(object: Object, ranges: Vec<ByteRange>, gap: u64) -> PartStream {
    let spans = spans(&ranges, gap).into();
    let state = Reader {
        object,
        ranges,
        spans,
        current: None,
    };
    Box::pin(futures_util::stream::try_unfold(state, Reader::next))
}

/// What [`read_parts`] returns.
pub type PartStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = io::Result<PartChunk>> + Send>>;

struct Reader {
    object: Object,
    ranges: Vec<ByteRange>,
    spans: VecDeque<Span>,
    current: Option<Current>,
}

/// The span being read.
struct Current {
    stream: ByteStream,
    last: usize,
    /// The requested range being filled.
    part: usize,
    /// Offset in the object of the next byte.
    pos: u64,
    /// Bytes read and not yet handed out.
    pending: Bytes,
}

impl Reader {
    async fn next(mut self) -> io::Result<Option<(PartChunk, Self)>> {
        loop {
            let Some(current) = self.current.as_mut() else {
                let Some(span) = self.spans.pop_front() else {
                    return Ok(None);
                };
                self.current = Some(Current {
                    stream: self.object.read(span.range),
                    last: span.last,
                    part: span.first,
                    pos: span.range.start,
                    pending: Bytes::new(),
                });
                continue;
            };
            if current.pending.is_empty() {
                current.pending = match current.stream.next().await {
                    Some(chunk) => chunk?,
                    None => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the object ended before the range did",
                        ));
                    }
                };
                continue;
            }
            let range = self.ranges[current.part];
            // Bytes between two requested ranges: read through, not sent.
            if current.pos < range.start {
                let skip = (range.start - current.pos).min(current.pending.len() as u64);
                let _ = current.pending.split_to(skip as usize);
                current.pos += skip;
                continue;
            }
            let take = (range.end + 1 - current.pos).min(current.pending.len() as u64);
            let bytes = current.pending.split_to(take as usize);
            current.pos += take;
            let part = current.part;
            if current.pos > range.end {
                if current.part == current.last {
                    // The span is done; whatever the stream has left is not ours.
                    self.current = None;
                } else {
                    current.part += 1;
                }
            }
            return Ok(Some((PartChunk { part, bytes }, self)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ObjectMeta;
    use futures_util::TryStreamExt;

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    #[test]
    fn close_ranges_share_a_span_and_far_or_backward_ones_do_not() {
        let ranges = [r(0, 9), r(15, 19), r(1000, 1009), r(1012, 1013), r(5, 6)];
        assert_eq!(
            spans(&ranges, 10),
            vec![
                Span {
                    range: r(0, 19),
                    first: 0,
                    last: 1
                },
                Span {
                    range: r(1000, 1013),
                    first: 2,
                    last: 3
                },
                Span {
                    range: r(5, 6),
                    first: 4,
                    last: 4
                },
            ]
        );
        // No gap allowed: only adjacent ranges merge.
        assert_eq!(spans(&[r(0, 9), r(10, 19), r(21, 30)], 0).len(), 2);
    }

    fn object(bytes: &'static [u8]) -> Object {
        let meta = ObjectMeta {
            size: bytes.len() as u64,
            etag: "\"x\"".into(),
            last_modified: None,
            content_type: None,
        };
        Object::from_bytes(meta, Bytes::from_static(bytes))
    }

    async fn parts(object: Object, ranges: &[ByteRange], gap: u64) -> Vec<(usize, Vec<u8>)> {
        let chunks: Vec<PartChunk> = read_parts(object, ranges.to_vec(), gap)
            .try_collect()
            .await
            .unwrap();
        let mut out: Vec<(usize, Vec<u8>)> = Vec::new();
        for chunk in chunks {
            match out.last_mut() {
                Some((part, bytes)) if *part == chunk.part => bytes.extend_from_slice(&chunk.bytes),
                _ => out.push((chunk.part, chunk.bytes.to_vec())),
            }
        }
        out
    }

    #[tokio::test]
    async fn every_part_is_exactly_its_range_in_request_order() {
        let data = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let ranges = [r(0, 2), r(5, 5), r(30, 35), r(10, 12)];
        for gap in [0, 3, 100] {
            assert_eq!(
                parts(object(data), &ranges, gap).await,
                vec![
                    (0, b"012".to_vec()),
                    (1, b"5".to_vec()),
                    (2, b"uvwxyz".to_vec()),
                    (3, b"abc".to_vec()),
                ],
                "gap {gap}"
            );
        }
    }

    #[tokio::test]
    async fn a_short_object_is_an_error_not_short_data() {
        let meta = ObjectMeta {
            size: 100,
            etag: "\"x\"".into(),
            last_modified: None,
            content_type: None,
        };
        let short = Object::from_bytes(meta, Bytes::from_static(b"0123456789"));
        let result: io::Result<Vec<PartChunk>> = read_parts(short, vec![r(0, 3), r(8, 20)], 100)
            .try_collect()
            .await;
        assert!(result.is_err());
    }
}
