//! `GET|HEAD /releases/{path}`: artifacts and manifests straight from the store, or from
//! GitHub Releases when the store cannot answer (SPEC §2.1, §3).

use axum::extract::{Request, State};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::config::Downloads;
use crate::error::AppError;
use crate::handlers::credentials;
use crate::http::conditional::ResponsePlan;
use crate::metrics::{Served, ServedKind};
use crate::origin::Opened;
use crate::release::download_labels;
use crate::response::object::{self, ObjectResponse};
use crate::state::AppState;
use crate::store::key::KeyKind;
use crate::store::{Object, ObjectKey, ObjectOrigin};
use crate::versions::channel_of_file;

/// `Cache-Control` of an immutable object of a private channel: the client may keep it, a
/// shared cache may not.
const CACHE_CONTROL_PRIVATE_IMMUTABLE: &str = "private, max-age=31536000, immutable";

/// Route prefix; the rest of the path, still percent-encoded, is the key below `releases/`.
const PREFIX: &str = "/releases/";

/// Streams the object, honouring ranges and preconditions; an object of a private channel
/// only to a token or a signed URL (checked before the object is opened), an artifact with
/// `store.downloads = "redirect"` as a `302` to the bucket.
pub async fn get_release(
    State(app): State<AppState>,
    request: Request,
) -> Result<Response, AppError> {
    // The parts by reference: extracting `HeaderMap` would clone it for every request.
    let parts = request.into_parts().0;
    let (method, headers) = (&parts.method, &parts.headers);
    // The raw path, not axum's decoded capture: we decode exactly once, then validate.
    let raw = parts.uri.path().strip_prefix(PREFIX).unwrap_or_default();
    let key = ObjectKey::release_from_url_path(raw)?;
    let private = app
        .access
        .object(&key, || {
            credentials(&app, headers, parts.uri.query(), &parts.extensions)
        })
        .await?
        .is_some();
    let object = match app.origins.open(&key).await? {
        None => return Err(AppError::NotFound(format!("no object at {key}"))),
        Some(Opened::Object(object)) => object,
        Some(Opened::Redirect(url)) => {
            // The download starts at GitHub; it is counted here, where we see it.
            count_download(&app, method, &key, range_from_start(headers));
            return redirect(&app, &url).map(|r| served(r, "github", ServedKind::Redirect));
        }
    };
    let origin = match object.origin() {
        ObjectOrigin::Store => "store",
        // The one other origin is GitHub Releases (streamed through, private repositories).
        ObjectOrigin::External => "github",
        ObjectOrigin::Stale => "stale",
    };
    if let Some(response) = to_bucket(&app, method, headers, &key, &object, private).await? {
        count_download(&app, method, &key, range_from_start(headers));
        return Ok(served(response, "store", ServedKind::Redirect));
    }
    let guard = (*method == Method::GET).then(|| app.metrics.download_guard());
    let mut response = ObjectResponse {
        key: &key,
        object,
        policy: &app.cache_policy,
        guard,
    }
    .respond(method, headers)?;
    if private {
        let cache_control = match key.kind() {
            KeyKind::Versioned => HeaderValue::from_static(CACHE_CONTROL_PRIVATE_IMMUTABLE),
            KeyKind::Mutable | KeyKind::Policy => app.cache_policy.per_client.clone(),
        };
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, cache_control);
    }
    count_download(&app, method, &key, carries_first_byte(&response));
    let kind = match key.kind() {
        KeyKind::Versioned => ServedKind::Artifact,
        KeyKind::Mutable | KeyKind::Policy => ServedKind::Manifest,
    };
    Ok(served(response, origin, kind))
}

/// With `store.downloads = "redirect"`: a `302` to a presigned URL of the bucket for a `GET`
/// of an artifact of the store (`releases/v*/`, not a channel file: manifests are always
/// served here) that the bucket can answer as we would: the whole object or one range (a
/// client follows the redirect with its `Range`, and S3 serves it). Not for several
/// ranges (S3 cannot answer them: electron-updater's differential download stays here),
/// nor for what ends without bytes (`304`, `412`, `416`: answered here, from the metadata),
/// nor for a `Range` answered in full (an `If-Range` that failed).
/// A private object's redirect is made only after its token or signature was accepted,
/// and no shared cache may keep it.
async fn to_bucket(
    app: &AppState,
    method: &Method,
    headers: &HeaderMap,
    key: &ObjectKey,
    object: &Object,
    private: bool,
) -> Result<Option<Response>, AppError> {
    if app.config.store.downloads != Downloads::Redirect
        || *method != Method::GET
        || key.kind() != KeyKind::Versioned
        || channel_of_file(key.file_name()).is_some()
        || object.origin() != ObjectOrigin::Store
    {
        return Ok(None);
    }
    match object::plan(&object.meta, method, headers) {
        // A `Range` we answer in full (an `If-Range` that did not match, a range we ignore)
        // is ours too: `If-Range` is not in S3's GetObject API, and a store that ignores
        // it would send the range of a file the client no longer has.
        ResponsePlan::Full if !headers.contains_key(header::RANGE) => {}
        ResponsePlan::Partial(ranges) if ranges.len() == 1 => {}
        _ => return Ok(None),
    }
    let Some(store) = app.origins.store() else {
        return Ok(None);
    };
    let disposition = key.content_disposition();
    let disposition = disposition.as_ref().and_then(|v| v.to_str().ok());
    let Some(url) = store
        .presigned_get(key, disposition)
        .await
        .map_err(|err| AppError::Origin(crate::origin::OriginError::Store(err)))?
    else {
        return Ok(None);
    };
    let location = HeaderValue::from_str(&url)
        .map_err(|_| AppError::Internal(format!("presigned URL is not a header: {url}")))?;
    // A shared cache may hand a public redirect on for half the URL's guaranteed life.
    let cache_control = if private {
        HeaderValue::from_static("private, no-store")
    } else {
        HeaderValue::from_str(&format!(
            "public, max-age={}",
            app.config.store.presign_ttl.as_secs() / 2
        ))
        .unwrap_or(HeaderValue::from_static("no-store"))
    };
    let mut response = Response::new(axum::body::Body::empty());
    *response.status_mut() = StatusCode::FOUND;
    response.headers_mut().insert(header::LOCATION, location);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, cache_control);
    Ok(Some(response))
}

/// A request that starts at byte 0 (no `Range`, or one from 0), for a download counted
/// where the bytes are not ours to see (a redirect).
fn range_from_start(headers: &HeaderMap) -> bool {
    headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|r| r.trim_start().starts_with("bytes=0-"))
}

/// Marks a response for `release_edge_served_bytes_total`.
fn served(mut response: Response, origin: &'static str, kind: ServedKind) -> Response {
    response.extensions_mut().insert(Served { origin, kind });
    response
}

/// Counts a download of an installer or update archive that starts (`from_start`) with
/// this `GET`.
fn count_download(app: &AppState, method: &Method, key: &ObjectKey, from_start: bool) {
    if *method == Method::GET
        && from_start
        && let Some(labels) = download_labels(key.as_str())
    {
        app.metrics.downloads.with_label_values(&labels).inc();
    }
}

/// A download "starts" with the response that carries byte 0: a whole body, or the first
/// range of a resumed or segmented one. aria2c's eight segments count once.
fn carries_first_byte(response: &Response) -> bool {
    match response.status() {
        StatusCode::OK => true,
        StatusCode::PARTIAL_CONTENT => response
            .headers()
            .get(header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("bytes 0-")),
        _ => false,
    }
}

/// `302` to the asset's public URL on GitHub. Cached like a manifest: the store may have
/// the object again soon, and the redirect must not outlive that for a year.
fn redirect(app: &AppState, url: &str) -> Result<Response, AppError> {
    let location = HeaderValue::from_str(url)
        .map_err(|_| AppError::Internal(format!("GitHub download URL is not a header: {url}")))?;
    let mut response = Response::new(axum::body::Body::empty());
    *response.status_mut() = StatusCode::FOUND;
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, location);
    headers.insert(header::CACHE_CONTROL, app.cache_policy.shared.clone());
    Ok(response)
}
