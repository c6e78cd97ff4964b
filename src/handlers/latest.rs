//! `/latest`, `/latest/{platform}`, `/latest/{platform}/{arch}`: a redirect to the right
//! installer for the visitor (SPEC §2.2).

use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use serde::Deserialize;

use crate::error::AppError;
use crate::feeds;
use crate::handlers::credentials;
use crate::handlers::update::rollout_identity;
use crate::release::channel::Channel;
use crate::release::platform::{Format, Hints, detect};
use crate::response::feed::label_for_cdn;
use crate::state::AppState;

/// What a cacheable (URL-only) answer may be shared for.
const CACHE_URL_ONLY: &str = "public, max-age=300";
/// The client hints we ask browsers for.
const ACCEPT_CH: &str = "Sec-CH-UA-Platform, Sec-CH-UA-Arch, Sec-CH-UA-Bitness";
/// Everything in the request that can change the answer.
const VARY: &str = "User-Agent, Sec-CH-UA-Platform, Sec-CH-UA-Arch";

/// Query parameters of `/latest`; unknown ones are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct LatestQuery {
    platform: Option<String>,
    arch: Option<String>,
    channel: Option<String>,
    format: Option<String>,
    /// A rollout identity (SPEC §2.3), for a staged release.
    id: Option<String>,
    /// A private channel's token (a download link cannot carry a header).
    token: Option<String>,
}

/// `/latest`.
pub async fn latest(
    state: State<AppState>,
    query: Query<LatestQuery>,
    request: Request,
) -> Result<Response, AppError> {
    redirect(state, None, None, query, &request.into_parts().0).await
}

/// `/latest/{platform}`.
pub async fn latest_platform(
    state: State<AppState>,
    Path(platform): Path<String>,
    query: Query<LatestQuery>,
    request: Request,
) -> Result<Response, AppError> {
    redirect(state, Some(platform), None, query, &request.into_parts().0).await
}

/// `/latest/{platform}/{arch}`.
pub async fn latest_platform_arch(
    state: State<AppState>,
    Path((platform, arch)): Path<(String, String)>,
    query: Query<LatestQuery>,
    request: Request,
) -> Result<Response, AppError> {
    let parts = request.into_parts().0;
    redirect(state, Some(platform), Some(arch), query, &parts).await
}

/// Client hint headers, named once: a lookup by `&str` parses the name on every request.
static SEC_CH_UA_PLATFORM: HeaderName = HeaderName::from_static("sec-ch-ua-platform");
static SEC_CH_UA_ARCH: HeaderName = HeaderName::from_static("sec-ch-ua-arch");
static SEC_CH_UA_BITNESS: HeaderName = HeaderName::from_static("sec-ch-ua-bitness");
static ACCEPT_CH_HEADER: HeaderName = HeaderName::from_static("accept-ch");

fn header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn redirect(
    State(app): State<AppState>,
    path_platform: Option<String>,
    path_arch: Option<String>,
    Query(query): Query<LatestQuery>,
    request: &Parts,
) -> Result<Response, AppError> {
    // The request's parts by reference: extracting `HeaderMap` and `Extensions` would clone
    // both for every request.
    let (headers, extensions) = (&request.headers, &request.extensions);
    let hints = Hints {
        path_platform: path_platform.as_deref(),
        path_arch: path_arch.as_deref(),
        query_platform: query.platform.as_deref(),
        query_arch: query.arch.as_deref(),
        ch_platform: header(headers, &SEC_CH_UA_PLATFORM),
        ch_arch: header(headers, &SEC_CH_UA_ARCH),
        ch_bitness: header(headers, &SEC_CH_UA_BITNESS),
        user_agent: header(headers, &header::USER_AGENT),
    };
    let detected = detect(&hints)?;
    let channel = Channel::from_query(query.channel.as_deref())?;
    let private = app
        .access
        .channel(&channel, || {
            credentials(&app, headers, None, extensions).or_token(query.token.as_deref())
        })?
        .is_some();
    let format = match query.format.as_deref() {
        Some(f) => Format::parse(f).ok_or_else(|| AppError::BadRequest {
            code: "invalid_format",
            message: format!(
                "unknown format `{f}` (expected dmg, zip, pkg, exe, msi, AppImage, deb, rpm or snap)"
            ),
        })?,
        None => detected.platform.default_installer(),
    };
    let id = || rollout_identity(&app, query.id.as_deref(), headers, extensions);
    let (location, per_client) =
        feeds::latest_installer(&app, &channel, detected.platform, detected.arch, format, id)
            .await?;
    // A staged release's rollout decided it for this visitor, or it is a private channel's
    // (a signed URL, given to a token): no cache may hand it on.
    let cache_control = if detected.from_headers || per_client || private {
        "no-store"
    } else {
        CACHE_URL_ONLY
    };
    // A private channel's visitor gets the URL signed (the token is not carried along).
    let location = if private {
        let url = location
            .to_str()
            .map_err(|e| AppError::Internal(format!("unencodable download URL: {e}")))?;
        feeds::location(&app.access.sign_url(url))?
    } else {
        location
    };
    let response = (
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static(cache_control),
            ),
            (header::VARY, HeaderValue::from_static(VARY)),
            (
                ACCEPT_CH_HEADER.clone(),
                HeaderValue::from_static(ACCEPT_CH),
            ),
        ],
    )
        .into_response();
    Ok(label_for_cdn(response, app.cdn.as_ref(), &channel))
}
