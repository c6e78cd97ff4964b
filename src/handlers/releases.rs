//! `GET|HEAD /releases/{path}`: artifacts and manifests straight from the store (SPEC §2.1).

use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, Method, Uri};

use crate::error::AppError;
use crate::http::object::ObjectResponse;
use crate::state::AppState;
use crate::store::ObjectKey;

/// Route prefix; the rest of the path, still percent-encoded, is the key below `releases/`.
const PREFIX: &str = "/releases/";

/// Streams the object, honouring ranges and preconditions.
pub async fn get_release(
    State(app): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    // The raw path, not axum's decoded capture: we decode exactly once, then validate.
    let raw = uri.path().strip_prefix(PREFIX).unwrap_or_default();
    let key = ObjectKey::release_from_url_path(raw)?;
    let object = app.store.open(&key).await?;
    let guard = (method == Method::GET).then(|| app.metrics.download_guard());
    ObjectResponse {
        key: &key,
        object,
        manifest_max_age: app.config.cache.manifest_max_age,
        guard,
    }
    .respond(&method, &headers)
}
