//! The response for an object of the store: headers, status and body chosen by
//! [`conditional::evaluate`], body streamed from the store.

use axum::body::Body;
use axum::response::Response;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::error::AppError;
use crate::http::conditional::{self, ResponsePlan, Validators};
use crate::http::multipart::MultipartBody;
use crate::metrics::InflightGuard;
use crate::store::key::CachePolicy;
use crate::store::{ByteRange, ByteStream, Object, ObjectKey, ObjectMeta};

/// How the object is to be served.
pub struct ObjectResponse<'a> {
    /// The key, for Content-Type, Content-Disposition and Cache-Control.
    pub key: &'a ObjectKey,
    /// The opened object.
    pub object: Object,
    /// `Cache-Control` of mutable objects.
    pub policy: &'a CachePolicy,
    /// Held by the body until it is dropped (streamed or abandoned).
    pub guard: Option<InflightGuard>,
}

impl ObjectResponse<'_> {
    /// Builds the response to `method` with request `headers`.
    pub fn respond(self, method: &Method, headers: &HeaderMap) -> Result<Response, AppError> {
        let meta = &self.object.meta;
        let plan = plan(meta, method, headers);

        let mut response = Response::new(Body::empty());
        let out = response.headers_mut();
        if let Ok(etag) = HeaderValue::from_str(&meta.etag) {
            out.insert(header::ETAG, etag);
        }
        if let Some(modified) = meta.last_modified
            && let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(modified))
        {
            out.insert(header::LAST_MODIFIED, value);
        }
        out.insert(header::CACHE_CONTROL, self.key.cache_control(self.policy));
        out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));

        let content_type = meta
            .content_type
            .as_deref()
            .and_then(|ct| HeaderValue::from_str(ct).ok())
            .unwrap_or_else(|| self.key.guessed_content_type());
        let size = meta.size;
        let head = method == Method::HEAD;

        match plan {
            ResponsePlan::NotModified => {
                *response.status_mut() = StatusCode::NOT_MODIFIED;
                return Ok(response);
            }
            ResponsePlan::PreconditionFailed => return Err(AppError::PreconditionFailed),
            ResponsePlan::Unsatisfiable => return Err(AppError::RangeNotSatisfiable { size }),
            ResponsePlan::Full => {
                let out = response.headers_mut();
                out.insert(header::CONTENT_TYPE, content_type);
                out.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
                if !head && let Some(whole) = ByteRange::whole(size) {
                    *response.body_mut() = body(self.object.read(whole), self.guard);
                }
            }
            ResponsePlan::Partial(ranges) if ranges.len() == 1 => {
                let range = ranges[0];
                *response.status_mut() = StatusCode::PARTIAL_CONTENT;
                let out = response.headers_mut();
                out.insert(header::CONTENT_TYPE, content_type);
                out.insert(header::CONTENT_LENGTH, HeaderValue::from(range.len()));
                if let Ok(value) = HeaderValue::from_str(&range.content_range(size)) {
                    out.insert(header::CONTENT_RANGE, value);
                }
                *response.body_mut() = body(self.object.read(range), self.guard);
            }
            ResponsePlan::Partial(ranges) => {
                let part_type = content_type.to_str().unwrap_or("application/octet-stream");
                let multipart = MultipartBody::new(ranges, size, part_type);
                *response.status_mut() = StatusCode::PARTIAL_CONTENT;
                let out = response.headers_mut();
                if let Ok(value) = HeaderValue::from_str(&multipart.content_type()) {
                    out.insert(header::CONTENT_TYPE, value);
                }
                out.insert(
                    header::CONTENT_LENGTH,
                    HeaderValue::from(multipart.content_length()),
                );
                *response.body_mut() = body(multipart.stream(self.object), self.guard);
            }
        }
        if let Some(disposition) = self.key.content_disposition() {
            response
                .headers_mut()
                .insert(header::CONTENT_DISPOSITION, disposition);
        }
        Ok(response)
    }
}

/// What a request for an object described by `meta` gets ([`conditional::evaluate`]): what
/// `/releases/*` answers, and what decides whether a redirect to the bucket can answer it.
pub fn plan(meta: &ObjectMeta, method: &Method, headers: &HeaderMap) -> ResponsePlan {
    // Parsed only for a request that compares entity tags (most do not).
    let compares = [header::IF_MATCH, header::IF_NONE_MATCH, header::IF_RANGE]
        .iter()
        .any(|name| headers.contains_key(name));
    let etag = if compares {
        meta.etag.parse().ok()
    } else {
        None
    };
    let validators = Validators {
        etag,
        last_modified: meta.last_modified,
        size: meta.size,
    };
    conditional::evaluate(method, headers, &validators)
}

/// A streamed body that keeps `guard` alive for as long as it is.
fn body(stream: ByteStream, guard: Option<InflightGuard>) -> Body {
    Body::from_stream(stream.map(move |chunk| {
        let _held = &guard;
        chunk
    }))
}
