//! Preconditions and byte ranges (RFC 9110 §13 and §14) decided by one pure function.

use std::time::SystemTime;

use headers::{ETag, HeaderMapExt, IfMatch, IfModifiedSince, IfNoneMatch, IfUnmodifiedSince};
use http::{HeaderMap, Method, header};
use http_range_header::{EndPosition, RangeUnsatisfiableError, StartPosition};

use crate::store::ByteRange;

/// Most ranges one request may ask for. electron-updater's differential download sends up to
/// 1000; beyond this the whole body is cheaper for everyone than a multipart of crumbs.
const MAX_RANGES: usize = 1024;

/// The validators of the selected representation.
#[derive(Debug, Clone)]
pub struct Validators {
    /// Its entity tag (strong).
    pub etag: Option<ETag>,
    /// Its modification time.
    pub last_modified: Option<SystemTime>,
    /// Its length in bytes.
    pub size: u64,
}

/// What the response must be, once preconditions and ranges have been evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponsePlan {
    /// `304 Not Modified`.
    NotModified,
    /// `412 Precondition Failed`.
    PreconditionFailed,
    /// `200` with the whole representation.
    Full,
    /// `206` with one range (`Content-Range`) or several (`multipart/byteranges`), in the
    /// order the client asked for them.
    Partial(Vec<ByteRange>),
    /// `416` with `Content-Range: bytes */{size}`.
    Unsatisfiable,
}

/// What a `Range` header asks for, resolved against a representation size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeDecision {
    /// Not a valid `bytes` range set: ignored, as RFC 9110 §14.2 requires.
    Ignore,
    /// Valid, but answered with the whole body: more than [`MAX_RANGES`] ranges, or ranges
    /// that overlap or go backwards (RFC 9110 §14.2 lets a server refuse to amplify).
    WholeBody,
    /// The satisfiable ranges, in request order.
    Ranges(Vec<ByteRange>),
    /// No range overlaps the representation.
    Unsatisfiable,
}

/// Decides the response to a `GET` or `HEAD` of a representation with validators `v`.
///
/// Order of RFC 9110 §13.2.2:
/// 1. `If-Match` present and false → 412.
/// 2. Otherwise `If-Unmodified-Since` present and the representation is newer → 412.
/// 3. `If-None-Match` present and matching (weak comparison) → 304 for GET/HEAD.
/// 4. Otherwise `If-Modified-Since` present and not modified → 304.
/// 5. `Range` on a GET (§14.2: the only method range handling is defined for), honoured
///    only when `If-Range` is absent or matches: an entity-tag by strong comparison, a date
///    only when it equals `Last-Modified` exactly (§13.1.5).
///
/// Header values that do not parse are ignored, as the RFC allows for each of these fields.
pub fn evaluate(method: &Method, headers: &HeaderMap, v: &Validators) -> ResponsePlan {
    if let Some(if_match) = headers.typed_get::<IfMatch>() {
        let passes = v
            .etag
            .as_ref()
            .is_some_and(|etag| if_match.precondition_passes(etag))
            || if_match == IfMatch::any();
        if !passes {
            return ResponsePlan::PreconditionFailed;
        }
    } else if let (Some(since), Some(modified)) =
        (headers.typed_get::<IfUnmodifiedSince>(), v.last_modified)
        && !since.precondition_passes(modified)
    {
        return ResponsePlan::PreconditionFailed;
    }

    if let Some(if_none_match) = headers.typed_get::<IfNoneMatch>() {
        let matched = match &v.etag {
            Some(etag) => !if_none_match.precondition_passes(etag),
            None => if_none_match == IfNoneMatch::any(),
        };
        if matched {
            return if method == Method::GET || method == Method::HEAD {
                ResponsePlan::NotModified
            } else {
                ResponsePlan::PreconditionFailed
            };
        }
    } else if let (Some(since), Some(modified)) =
        (headers.typed_get::<IfModifiedSince>(), v.last_modified)
        && (method == Method::GET || method == Method::HEAD)
        && !since.is_modified(modified)
    {
        return ResponsePlan::NotModified;
    }

    if method != Method::GET {
        return ResponsePlan::Full;
    }
    let Some(range) = headers.get(header::RANGE).and_then(|r| r.to_str().ok()) else {
        return ResponsePlan::Full;
    };
    if let Some(if_range) = headers.get(header::IF_RANGE)
        && !if_range_matches(if_range.as_bytes(), v)
    {
        return ResponsePlan::Full;
    }
    match resolve_range(range, v.size) {
        RangeDecision::Ignore | RangeDecision::WholeBody => ResponsePlan::Full,
        RangeDecision::Ranges(ranges) => ResponsePlan::Partial(ranges),
        RangeDecision::Unsatisfiable => ResponsePlan::Unsatisfiable,
    }
}

/// RFC 9110 §13.1.5: an entity-tag matches by strong comparison (a weak one never does);
/// an HTTP-date matches only when it equals `Last-Modified`.
fn if_range_matches(value: &[u8], v: &Validators) -> bool {
    let Ok(text) = std::str::from_utf8(value) else {
        return false;
    };
    let text = text.trim();
    if text.starts_with('"') || text.starts_with("W/") {
        let Ok(tag) = text.parse::<ETag>() else {
            return false;
        };
        return match &v.etag {
            // `ETag` equality includes the weak flag: equal means both strong and same tag.
            Some(ours) => !text.starts_with("W/") && ours == &tag,
            None => false,
        };
    }
    match (httpdate::parse_http_date(text), v.last_modified) {
        (Ok(date), Some(modified)) => {
            httpdate::fmt_http_date(date) == httpdate::fmt_http_date(modified)
        }
        _ => false,
    }
}

/// Resolves a `Range` header against a representation of `size` bytes (RFC 9110 §14.1.2).
///
/// Syntax is checked by `http-range-header`; the semantics the crate leaves to the server
/// (or decides differently from the RFC) are here: a suffix longer than the representation
/// selects all of it, a range starting past the end is unsatisfiable and dropped, a last
/// position past the end is clamped, and a range whose last position is before its first
/// makes the whole header invalid.
fn resolve_range(header_value: &str, size: u64) -> RangeDecision {
    // The range unit is case-insensitive (RFC 9110 §14.1); the crate wants `bytes=`.
    let Some(spec) = header_value
        .get(..6)
        .filter(|unit| unit.eq_ignore_ascii_case("bytes="))
        .map(|_| &header_value[6..])
    else {
        return RangeDecision::Ignore;
    };
    if spec.bytes().filter(|&b| b == b',').count() >= MAX_RANGES {
        return RangeDecision::WholeBody;
    }
    let parsed = match http_range_header::parse_range_header(&format!("bytes={spec}")) {
        Ok(parsed) => parsed,
        // `bytes=-0` is well-formed but can never be satisfied (§14.1.1).
        Err(RangeUnsatisfiableError::ZeroSuffix) => return RangeDecision::Unsatisfiable,
        Err(_) => return RangeDecision::Ignore,
    };
    let mut ranges = Vec::with_capacity(parsed.ranges.len());
    for r in &parsed.ranges {
        let resolved = match (r.start, r.end) {
            (StartPosition::Index(first), EndPosition::Index(last)) if last < first => {
                return RangeDecision::Ignore;
            }
            (StartPosition::Index(first), _) if first >= size => None,
            (StartPosition::Index(first), EndPosition::Index(last)) => Some(ByteRange {
                start: first,
                end: last.min(size - 1),
            }),
            (StartPosition::Index(first), EndPosition::LastByte) => Some(ByteRange {
                start: first,
                end: size - 1,
            }),
            (StartPosition::FromLast(_), _) if size == 0 => None,
            (StartPosition::FromLast(suffix), _) => Some(ByteRange {
                start: size.saturating_sub(suffix),
                end: size - 1,
            }),
        };
        ranges.extend(resolved);
    }
    if ranges.is_empty() {
        return RangeDecision::Unsatisfiable;
    }
    // electron-updater needs every part as asked for: never merged, never reordered. A set
    // that overlaps or goes backwards gets the whole body instead (§14.2).
    if ranges.windows(2).any(|pair| pair[1].start <= pair[0].end) {
        return RangeDecision::WholeBody;
    }
    RangeDecision::Ranges(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;
    use std::time::{Duration, UNIX_EPOCH};

    const SIZE: u64 = 10_000;

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    fn validators() -> Validators {
        Validators {
            etag: Some("\"abc\"".parse().unwrap()),
            last_modified: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            size: SIZE,
        }
    }

    fn lm_string() -> String {
        httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
    }

    fn plan(method: Method, pairs: &[(&str, &str)]) -> ResponsePlan {
        let mut headers = HeaderMap::new();
        for (k, val) in pairs {
            headers.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(val).unwrap(),
            );
        }
        evaluate(&method, &headers, &validators())
    }

    #[test]
    fn range_table() {
        use RangeDecision::*;
        let cases: &[(&str, &str, RangeDecision)] = &[
            ("single", "bytes=0-499", Ranges(vec![r(0, 499)])),
            (
                "single, upper case unit",
                "Bytes=0-0",
                Ranges(vec![r(0, 0)]),
            ),
            ("open", "bytes=9500-", Ranges(vec![r(9500, 9999)])),
            ("suffix", "bytes=-500", Ranges(vec![r(9500, 9999)])),
            (
                "suffix longer than body",
                "bytes=-20000",
                Ranges(vec![r(0, 9999)]),
            ),
            (
                "last clamped",
                "bytes=9000-20000",
                Ranges(vec![r(9000, 9999)]),
            ),
            ("last byte", "bytes=9999-9999", Ranges(vec![r(9999, 9999)])),
            (
                "electron-updater multi (comma space)",
                "bytes=0-9, 20-29, 100-199",
                Ranges(vec![r(0, 9), r(20, 29), r(100, 199)]),
            ),
            (
                "adjacent ranges stay separate",
                "bytes=0-9,10-19",
                Ranges(vec![r(0, 9), r(10, 19)]),
            ),
            (
                "unsatisfiable member dropped",
                "bytes=0-9, 20000-30000",
                Ranges(vec![r(0, 9)]),
            ),
            ("start past end", "bytes=10000-", Unsatisfiable),
            ("all past end", "bytes=10000-10001, 20000-", Unsatisfiable),
            ("zero suffix", "bytes=-0", Unsatisfiable),
            ("overlap", "bytes=0-100, 50-150", WholeBody),
            ("backwards", "bytes=500-600, 0-100", WholeBody),
            ("suffix overlapping", "bytes=9000-, -500", WholeBody),
            ("last before first", "bytes=500-400", Ignore),
            ("other unit", "items=0-5", Ignore),
            ("no equals", "bytes 0-5", Ignore),
            ("garbage", "bytes=abc", Ignore),
            ("empty set", "bytes=", Ignore),
            ("leading plus", "bytes=+1-5", Ignore),
            ("negative", "bytes=--5", Ignore),
            ("huge number", "bytes=0-99999999999999999999999", Ignore),
        ];
        for (name, header, want) in cases {
            assert_eq!(&resolve_range(header, SIZE), want, "{name}: {header}");
        }
    }

    #[test]
    fn thousand_ranges_are_served_and_more_than_the_cap_are_not() {
        let thousand: Vec<String> = (0..1000)
            .map(|i| format!("{}-{}", i * 5, i * 5 + 2))
            .collect();
        match resolve_range(&format!("bytes={}", thousand.join(", ")), SIZE) {
            RangeDecision::Ranges(ranges) => {
                assert_eq!(ranges.len(), 1000);
                assert_eq!(ranges[999], r(4995, 4997));
            }
            other => panic!("1000 ranges: {other:?}"),
        }
        let too_many: Vec<String> = (0..1025)
            .map(|i| format!("{}-{}", i * 5, i * 5 + 2))
            .collect();
        assert_eq!(
            resolve_range(&format!("bytes={}", too_many.join(",")), SIZE),
            RangeDecision::WholeBody
        );
    }

    #[test]
    fn empty_representation_has_no_satisfiable_range() {
        assert_eq!(resolve_range("bytes=0-", 0), RangeDecision::Unsatisfiable);
        assert_eq!(resolve_range("bytes=-5", 0), RangeDecision::Unsatisfiable);
    }

    #[test]
    fn precondition_table() {
        use ResponsePlan::*;
        let lm = lm_string();
        let older = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(1_600_000_000));
        let newer = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        let get = Method::GET;
        type Case<'a> = (&'a str, Method, Vec<(&'a str, &'a str)>, ResponsePlan);
        let cases: Vec<Case> = vec![
            ("no conditions", get.clone(), vec![], Full),
            (
                "inm match",
                get.clone(),
                vec![("if-none-match", "\"abc\"")],
                NotModified,
            ),
            (
                "inm weak match",
                get.clone(),
                vec![("if-none-match", "W/\"abc\"")],
                NotModified,
            ),
            (
                "inm list",
                get.clone(),
                vec![("if-none-match", "\"x\", \"abc\"")],
                NotModified,
            ),
            (
                "inm star",
                get.clone(),
                vec![("if-none-match", "*")],
                NotModified,
            ),
            (
                "inm other",
                get.clone(),
                vec![("if-none-match", "\"zzz\"")],
                Full,
            ),
            (
                "inm on HEAD",
                Method::HEAD,
                vec![("if-none-match", "\"abc\"")],
                NotModified,
            ),
            (
                "ims equal",
                get.clone(),
                vec![("if-modified-since", lm.as_str())],
                NotModified,
            ),
            (
                "ims newer",
                get.clone(),
                vec![("if-modified-since", newer.as_str())],
                NotModified,
            ),
            (
                "ims older",
                get.clone(),
                vec![("if-modified-since", older.as_str())],
                Full,
            ),
            (
                "inm wins over ims",
                get.clone(),
                vec![
                    ("if-none-match", "\"zzz\""),
                    ("if-modified-since", lm.as_str()),
                ],
                Full,
            ),
            (
                "if-match ok",
                get.clone(),
                vec![("if-match", "\"abc\"")],
                Full,
            ),
            ("if-match star", get.clone(), vec![("if-match", "*")], Full),
            (
                "if-match fails",
                get.clone(),
                vec![("if-match", "\"zzz\"")],
                PreconditionFailed,
            ),
            (
                "if-match is strong",
                get.clone(),
                vec![("if-match", "W/\"abc\"")],
                PreconditionFailed,
            ),
            (
                "ius older fails",
                get.clone(),
                vec![("if-unmodified-since", older.as_str())],
                PreconditionFailed,
            ),
            (
                "ius equal ok",
                get.clone(),
                vec![("if-unmodified-since", lm.as_str())],
                Full,
            ),
            (
                "if-match beats ius",
                get.clone(),
                vec![
                    ("if-match", "\"abc\""),
                    ("if-unmodified-since", older.as_str()),
                ],
                Full,
            ),
            (
                "412 beats 304",
                get.clone(),
                vec![("if-match", "\"zzz\""), ("if-none-match", "\"abc\"")],
                PreconditionFailed,
            ),
            (
                "range",
                get.clone(),
                vec![("range", "bytes=0-9")],
                Partial(vec![r(0, 9)]),
            ),
            (
                "range on HEAD ignored",
                Method::HEAD,
                vec![("range", "bytes=0-9")],
                Full,
            ),
            (
                "range unsatisfiable",
                get.clone(),
                vec![("range", "bytes=20000-")],
                Unsatisfiable,
            ),
            (
                "if-range etag match",
                get.clone(),
                vec![("range", "bytes=0-9"), ("if-range", "\"abc\"")],
                Partial(vec![r(0, 9)]),
            ),
            (
                "if-range etag mismatch",
                get.clone(),
                vec![("range", "bytes=0-9"), ("if-range", "\"old\"")],
                Full,
            ),
            (
                "if-range weak never matches",
                get.clone(),
                vec![("range", "bytes=0-9"), ("if-range", "W/\"abc\"")],
                Full,
            ),
            (
                "if-range date match",
                get.clone(),
                vec![("range", "bytes=0-9"), ("if-range", lm.as_str())],
                Partial(vec![r(0, 9)]),
            ),
            (
                "if-range date newer is not a match",
                get.clone(),
                vec![("range", "bytes=0-9"), ("if-range", newer.as_str())],
                Full,
            ),
            (
                "if-range garbage",
                get.clone(),
                vec![("range", "bytes=0-9"), ("if-range", "yesterday")],
                Full,
            ),
            (
                "304 beats range",
                get.clone(),
                vec![("range", "bytes=0-9"), ("if-none-match", "\"abc\"")],
                NotModified,
            ),
        ];
        for (name, method, headers, want) in cases {
            assert_eq!(plan(method, &headers), want, "{name}");
        }
    }

    proptest! {
        #[test]
        fn resolve_range_never_panics_and_stays_in_bounds(header in ".{0,200}", size in any::<u64>()) {
            if let RangeDecision::Ranges(ranges) = resolve_range(&header, size) {
                for range in &ranges {
                    prop_assert!(range.start <= range.end);
                    prop_assert!(range.end < size);
                }
                for pair in ranges.windows(2) {
                    prop_assert!(pair[0].end < pair[1].start);
                }
            }
        }

        #[test]
        fn structured_ranges_stay_in_bounds(
            specs in proptest::collection::vec((any::<Option<u64>>(), any::<Option<u64>>()), 1..20),
            size in prop_oneof![Just(0u64), Just(1u64), 0u64..100_000, Just(u64::MAX)],
        ) {
            let header = specs
                .iter()
                .map(|(a, b)| format!(
                    "{}-{}",
                    a.map(|x| x.to_string()).unwrap_or_default(),
                    b.map(|x| x.to_string()).unwrap_or_default()
                ))
                .collect::<Vec<_>>()
                .join(", ");
            let decision = resolve_range(&format!("bytes={header}"), size);
            if let RangeDecision::Ranges(ranges) = decision {
                let total: u128 = ranges.iter().map(|r| u128::from(r.len())).sum();
                prop_assert!(total <= u128::from(size));
                for range in &ranges {
                    prop_assert!(range.end < size);
                }
            }
        }

        #[test]
        fn evaluate_never_panics(
            range in ".{0,80}",
            if_range in ".{0,40}",
            inm in ".{0,40}",
            size in any::<u64>(),
        ) {
            let mut headers = HeaderMap::new();
            for (name, value) in [("range", &range), ("if-range", &if_range), ("if-none-match", &inm)] {
                if let Ok(v) = HeaderValue::from_str(value) {
                    headers.insert(http::HeaderName::from_static(name), v);
                }
            }
            let v = Validators { size, ..validators() };
            let _ = evaluate(&Method::GET, &headers, &v);
        }
    }
}
