//! Responses for update feeds and manifests rendered by the server: a strong ETag over the
//! body, `304` on `If-None-Match`, the manifest caching policy and `Vary: Accept`.

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use headers::{ETag, HeaderMapExt, IfNoneMatch};
use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::cdn::Cdn;
use crate::release::body_etag;
use crate::release::channel::Channel;
use crate::store::key::CachePolicy;

/// How a feed answer may be cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedCaching {
    /// The same URL gives every client the same answer: the CDN may share it.
    Shared,
    /// The answer depended on who asked (a staged rollout): browsers and clients may keep
    /// it, shared caches must not.
    PerClient,
}

/// A feed body and its strong ETag.
#[derive(Debug, Clone)]
pub struct FeedBody {
    /// The bytes.
    pub bytes: Bytes,
    /// `"..."`, from [`body_etag`] (precomputed for cached manifests).
    pub etag: String,
}

impl FeedBody {
    /// A body whose ETag is computed now.
    pub fn new(bytes: Bytes) -> Self {
        let etag = body_etag(&bytes);
        Self { bytes, etag }
    }
}

/// A `200` (or `304`) with `body`, or a `204` when `body` is `None`.
pub fn feed_response(
    request: &HeaderMap,
    body: Option<FeedBody>,
    content_type: &'static str,
    policy: &CachePolicy,
    caching: FeedCaching,
) -> Response {
    let mut response = Response::new(Body::empty());
    let headers = response.headers_mut();
    let cache_control = match caching {
        FeedCaching::Shared => policy.shared.clone(),
        FeedCaching::PerClient => policy.per_client.clone(),
    };
    headers.insert(header::CACHE_CONTROL, cache_control);
    headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    let Some(body) = body else {
        *response.status_mut() = StatusCode::NO_CONTENT;
        return response;
    };
    let FeedBody { bytes: body, etag } = body;
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    // Parsed only when the client sent `If-None-Match` (a CDN revalidating, most clients not).
    let matches = request.typed_get::<IfNoneMatch>().is_some_and(|inm| {
        etag.parse::<ETag>()
            .is_ok_and(|tag| !inm.precondition_passes(&tag))
    });
    if matches {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        return response;
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    *response.body_mut() = Body::from(body);
    response
}

/// Labels an answer of `channel` for the CDN's purge by label (Cloudflare's `Cache-Tag`,
/// Fastly's `Surrogate-Key`, both `{tag_prefix}{channel}`) when `[cdn]` purges that way: a
/// feed URL holds the client's version, so the channel's answers cannot be listed, and a
/// purge names the label instead (see `crate::cdn`). The CDN drops these headers before
/// the answer reaches clients.
pub fn label_for_cdn(mut response: Response, cdn: Option<&Cdn>, channel: &Channel) -> Response {
    if let Some(cdn) = cdn {
        response.headers_mut().extend(cdn.labels(channel));
    }
    response
}
