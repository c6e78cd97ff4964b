//! `/admin/*`: the release manager's API (SPEC §2.4), JSON in and out. The layer
//! [`authorize`] admits a request; each handler extracts, calls `manage`, and makes the
//! change visible on this node at once (its cached policy dropped); the other nodes see it
//! within `cache.manifest_ttl`.

use axum::extract::{Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::json;

use std::collections::BTreeSet;

use crate::cdn;
use crate::error::AppError;
use crate::manage::{AUDIT_DEFAULT, Actor, Change, Manager};
use crate::release::channel::Channel;
use crate::release::policy::ChannelPolicy;
use crate::state::{App, AppState};
use crate::store::{ObjectKey, Precondition};

/// Admits a request to `/admin/*`: a known bearer token (`401` without one, `403` with a
/// wrong one), from an address that has not been presenting wrong ones (`429`); puts the
/// token holder's name in the request for the audit trail.
pub async fn authorize(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let address = super::client_ip(&app, req.headers(), req.extensions());
    if let Err(retry_after) = app.admin_failures.admit(address) {
        return AppError::TooManyAttempts { retry_after }.into_response();
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        })
        .map(|(_, token)| token.trim());
    let Some(presented) = presented.filter(|t| !t.is_empty()) else {
        return AppError::Unauthorized(
            "the admin API needs `Authorization: Bearer <token>` (a token of RELEASE_EDGE_ADMIN_TOKENS)"
                .into(),
        )
        .into_response();
    };
    let Some(holder) = app.admin_tokens.holder(presented) else {
        let wait = app.admin_failures.failed(address);
        tracing::warn!(%address, slowed_for = ?wait, "admin API: wrong token");
        return AppError::Forbidden("that token is not an admin token".into()).into_response();
    };
    app.admin_failures.succeeded(address);
    req.extensions_mut().insert(Actor(holder.to_owned()));
    next.run(req).await
}

/// `405` for a method an admin route does not take, with the `Allow` of that route (the
/// public routes' fallback allows `GET, HEAD`).
fn wrong_method(allow: &'static str) -> Response {
    let mut response = AppError::MethodNotAllowed.into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// The fallback of the `POST` routes.
pub async fn post_only() -> Response {
    wrong_method("POST")
}

/// The fallback of the `GET` routes.
pub async fn get_only() -> Response {
    wrong_method("GET, HEAD")
}

/// The fallback of the policy route.
pub async fn get_or_put() -> Response {
    wrong_method("GET, HEAD, PUT")
}

/// The store the manager changes.
fn manager(app: &App) -> Result<Manager, AppError> {
    app.manager.clone().ok_or_else(|| AppError::Refused {
        status: StatusCode::CONFLICT,
        code: "no_store",
        message: "the admin API changes the store, and store.kind is \"none\" (GitHub only)".into(),
    })
}

fn channel(name: &str) -> Result<Channel, AppError> {
    Ok(Channel::parse(name)?)
}

/// A JSON body, or a `400` that says what is wrong with it. An empty body is `{}`.
fn body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T, AppError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(bytes).map_err(|e| AppError::BadRequest {
        code: "invalid_json",
        message: format!("the request body is not the JSON expected: {e}"),
    })
}

/// Makes a change visible on this node now: its cached policy dropped, the gauges set, the
/// change counted, the CDN's copies of the channel's answers purged (`[cdn]`). What the
/// purge did, for the answer: a failure is reported there (and logged, and counted in
/// `release_edge_cdn_purges_total`), never hidden; the change itself is made.
async fn changed(app: &App, change: &Change) -> Option<serde_json::Value> {
    if !change.changed {
        return None;
    }
    app.manifests
        .invalidate(&ObjectKey::policy(&change.channel))
        .await;
    app.metrics
        .set_rollout(change.channel.as_str(), change.after.rollout);
    count(app, change.action);
    let cdn = app.cdn.as_ref()?;
    Some(purge_report(
        cdn.purge_channel(&change.channel, cdn::ChangeKind::Policy)
            .await
            .map(|_| ()),
    ))
}

/// What a CDN purge did, for the answer: `{"purged": true}` or the failure.
fn purge_report(purged: Result<(), cdn::PurgeError>) -> serde_json::Value {
    match purged {
        Ok(()) => json!({ "purged": true }),
        Err(err) => json!({
            "purged": false,
            "error": format!("the change is made, but the CDN was not purged: {err}; it serves its old copies until they expire (purge by hand)"),
        }),
    }
}

fn count(app: &App, action: &str) {
    app.metrics.admin_changes.with_label_values(&[action]).inc();
}

/// The answer to a change: the policy now, its ETag in `ETag` too, and what the CDN purge
/// did (when there is a CDN).
fn change_response(change: &Change, cdn: Option<serde_json::Value>) -> Response {
    let mut body = change.to_json();
    if let Some(cdn) = cdn {
        body["cdn"] = cdn;
    }
    let mut response = Json(body).into_response();
    if let Some(etag) = change
        .etag
        .as_deref()
        .and_then(|e| HeaderValue::from_str(e).ok())
    {
        response.headers_mut().insert(header::ETAG, etag);
    }
    no_store(response)
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn now(app: &App) -> std::time::SystemTime {
    app.clock.system_time()
}

/// `GET /admin/releases`: channels, versions, their files and policies.
pub async fn releases(State(app): State<AppState>) -> Result<Response, AppError> {
    let locations = crate::inventory::gather(&app.origins).await?;
    let inventory = manager(&app)?.inventory(&locations).await?;
    Ok(no_store(Json(inventory).into_response()))
}

/// `GET /admin/channels/{channel}/policy`: the document, its ETag in `ETag` (absent when
/// there is no document yet: create it with `If-None-Match: *`).
pub async fn get_policy(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, AppError> {
    let channel = channel(&name)?;
    let stored = manager(&app)?.policy(&channel).await?;
    let mut response = Json(json!({
        "channel": channel.as_str(),
        "policy": stored.policy.to_json(),
        "etag": stored.etag,
    }))
    .into_response();
    if let Some(etag) = stored
        .etag
        .as_deref()
        .and_then(|e| HeaderValue::from_str(e).ok())
    {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(no_store(response))
}

/// `If-Match: "etag"` or `If-None-Match: *`, as the write's precondition.
fn precondition(headers: &HeaderMap) -> Result<Option<Precondition>, AppError> {
    let text = |name: header::HeaderName| {
        headers
            .get(&name)
            .map(|v| {
                v.to_str().map(str::trim).map_err(|_| AppError::BadRequest {
                    code: "invalid_precondition",
                    message: format!("{name} is not text"),
                })
            })
            .transpose()
    };
    match (text(header::IF_MATCH)?, text(header::IF_NONE_MATCH)?) {
        (Some(etag), _) if etag.starts_with('"') && etag.ends_with('"') && etag.len() >= 2 => {
            Ok(Some(Precondition::Matches(etag.to_owned())))
        }
        (Some(other), _) => Err(AppError::BadRequest {
            code: "invalid_precondition",
            message: format!(
                "If-Match must be the policy's quoted ETag (as GET .../policy gives it), got `{other}`"
            ),
        }),
        (None, Some("*")) => Ok(Some(Precondition::Absent)),
        (None, Some(other)) => Err(AppError::BadRequest {
            code: "invalid_precondition",
            message: format!("only `If-None-Match: *` (create) is understood, got `{other}`"),
        }),
        (None, None) => Ok(None),
    }
}

/// `PUT /admin/channels/{channel}/policy`: replaces the document whole, with `If-Match`.
pub async fn put_policy(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Extension(actor): Extension<Actor>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, AppError> {
    let channel = channel(&name)?;
    let precondition = precondition(&headers)?;
    let value: serde_json::Value = body(&bytes)?;
    let policy = ChannelPolicy::from_json(value).map_err(crate::manage::ManageError::from)?;
    let change = manager(&app)?
        .replace(&channel, policy, precondition, &actor, now(&app))
        .await?;
    let cdn = changed(&app, &change).await;
    Ok(change_response(&change, cdn))
}

/// `POST /admin/channels/{channel}/halt`.
pub async fn halt(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Extension(actor): Extension<Actor>,
) -> Result<Response, AppError> {
    let change = manager(&app)?
        .halt(&channel(&name)?, &actor, now(&app))
        .await?;
    let cdn = changed(&app, &change).await;
    Ok(change_response(&change, cdn))
}

/// `POST /admin/channels/{channel}/resume`.
pub async fn resume(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Extension(actor): Extension<Actor>,
) -> Result<Response, AppError> {
    let change = manager(&app)?
        .resume(&channel(&name)?, &actor, now(&app))
        .await?;
    let cdn = changed(&app, &change).await;
    Ok(change_response(&change, cdn))
}

/// The body of `/rollout`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RolloutBody {
    percentage: serde_json::Value,
}

/// `POST /admin/channels/{channel}/rollout {"percentage": N}`.
pub async fn rollout(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Extension(actor): Extension<Actor>,
    bytes: Bytes,
) -> Result<Response, AppError> {
    let channel = channel(&name)?;
    let RolloutBody { percentage } = body(&bytes)?;
    let change = manager(&app)?
        .rollout(&channel, &percentage, &actor, now(&app))
        .await?;
    let cdn = changed(&app, &change).await;
    Ok(change_response(&change, cdn))
}

/// `?channel=` of the version routes: by default the version's own channel.
#[derive(Deserialize)]
pub struct VersionQuery {
    channel: Option<String>,
}

/// The body of `/yank`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YankBody {
    #[serde(default)]
    reason: String,
}

/// `POST /admin/versions/{version}/yank {"reason"}` (`?channel=`).
pub async fn yank(
    State(app): State<AppState>,
    Path(version): Path<String>,
    Query(query): Query<VersionQuery>,
    Extension(actor): Extension<Actor>,
    bytes: Bytes,
) -> Result<Response, AppError> {
    let YankBody { reason } = body(&bytes)?;
    let change = manager(&app)?
        .yank(
            &version,
            query.channel.as_deref(),
            &reason,
            &actor,
            now(&app),
        )
        .await?;
    let cdn = changed(&app, &change).await;
    Ok(change_response(&change, cdn))
}

/// `POST /admin/versions/{version}/unyank` (`?channel=`).
pub async fn unyank(
    State(app): State<AppState>,
    Path(version): Path<String>,
    Query(query): Query<VersionQuery>,
    Extension(actor): Extension<Actor>,
) -> Result<Response, AppError> {
    let change = manager(&app)?
        .unyank(&version, query.channel.as_deref(), &actor, now(&app))
        .await?;
    let cdn = changed(&app, &change).await;
    Ok(change_response(&change, cdn))
}

/// The body of `/rollback`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    channel: String,
    version: String,
}

/// `POST /admin/rollback {"channel","version"}`.
pub async fn rollback(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    bytes: Bytes,
) -> Result<Response, AppError> {
    let RollbackBody { channel, version } = body(&bytes)?;
    let written = manager(&app)?
        .rollback(&channel, &version, &actor, now(&app))
        .await?;
    for key in &written {
        if let Ok(key) = ObjectKey::from_trusted(key.clone()) {
            app.manifests.invalidate(&key).await;
        }
    }
    count(&app, "rollback");
    let mut body = json!({ "channel": channel, "version": version, "written": written });
    if let Ok(parsed) = Channel::parse(&channel) {
        let change = cdn::Change {
            kind: cdn::ChangeKind::Rollback,
            channels: BTreeSet::from([parsed]),
            files: written.into_iter().collect(),
        };
        if let Some(cdn) = &app.cdn {
            body["cdn"] = purge_report(cdn.purge(&change).await.map(|_| ()));
        }
    }
    Ok(no_store(Json(body).into_response()))
}

/// The body of `/cache/purge`: no keys purges everything.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PurgeBody {
    #[serde(default)]
    keys: Option<Vec<String>>,
}

/// `POST /admin/cache/purge` (`{"keys": [...]}`, or everything): this node's cached
/// manifests and policies, read again on the next request.
pub async fn purge(State(app): State<AppState>, bytes: Bytes) -> Result<Response, AppError> {
    let PurgeBody { keys } = body(&bytes)?;
    let purged = match keys {
        None => {
            app.manifests.purge();
            json!("all")
        }
        Some(keys) => {
            let mut parsed = Vec::with_capacity(keys.len());
            for key in &keys {
                parsed.push(ObjectKey::from_trusted(key.clone()).map_err(|e| {
                    AppError::BadRequest {
                        code: "invalid_key",
                        message: format!("`{key}` is not a store key: {e}"),
                    }
                })?);
            }
            for key in &parsed {
                app.manifests.invalidate(key).await;
            }
            json!(keys)
        }
    };
    count(&app, "purge");
    Ok(no_store(Json(json!({ "purged": purged })).into_response()))
}

/// `?limit=&channel=` of `/admin/audit`.
#[derive(Deserialize)]
pub struct AuditQuery {
    limit: Option<usize>,
    channel: Option<String>,
}

/// `GET /admin/audit`: the newest changes first.
pub async fn audit(
    State(app): State<AppState>,
    Query(query): Query<AuditQuery>,
) -> Result<Response, AppError> {
    let channel = query.channel.as_deref().map(channel).transpose()?;
    let entries = manager(&app)?
        .audit(query.limit.unwrap_or(AUDIT_DEFAULT), channel.as_ref())
        .await?;
    Ok(no_store(
        Json(json!({ "entries": entries })).into_response(),
    ))
}
