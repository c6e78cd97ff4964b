//! `GET|HEAD /releases/{path}`: artifacts and manifests straight from the store, or from
//! GitHub Releases when the store cannot answer (SPEC §2.1, §3).

use axum::extract::{Request, State};
use axum::response::Response;
use http::{HeaderValue, Method, StatusCode, header};

use crate::error::AppError;
use crate::metrics::{Served, ServedKind};
use crate::origin::Opened;
use crate::release::download_labels;
use crate::response::object::ObjectResponse;
use crate::state::AppState;
use crate::store::key::KeyKind;
use crate::store::{ObjectKey, ObjectOrigin};

/// Route prefix; the rest of the path, still percent-encoded, is the key below `releases/`.
const PREFIX: &str = "/releases/";

/// Streams the object, honouring ranges and preconditions.
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
    let object = match app.origins.open(&key).await? {
        None => return Err(AppError::NotFound(format!("no object at {key}"))),
        Some(Opened::Object(object)) => object,
        Some(Opened::Redirect(url)) => {
            // The download starts at GitHub; it is counted here, where we see it.
            let from_start = headers
                .get(header::RANGE)
                .and_then(|v| v.to_str().ok())
                .is_none_or(|r| r.trim_start().starts_with("bytes=0-"));
            count_download(&app, method, &key, from_start);
            return redirect(&app, &url).map(|r| served(r, "github", ServedKind::Redirect));
        }
    };
    let origin = match object.origin() {
        ObjectOrigin::Store => "store",
        // The one other origin is GitHub Releases (streamed through, private repositories).
        ObjectOrigin::External => "github",
        ObjectOrigin::Stale => "stale",
    };
    let guard = (*method == Method::GET).then(|| app.metrics.download_guard());
    let response = ObjectResponse {
        key: &key,
        object,
        policy: &app.cache_policy,
        guard,
    }
    .respond(method, headers)?;
    count_download(&app, method, &key, carries_first_byte(&response));
    let kind = match key.kind() {
        KeyKind::Versioned => ServedKind::Artifact,
        KeyKind::Mutable | KeyKind::Policy => ServedKind::Manifest,
    };
    Ok(served(response, origin, kind))
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
