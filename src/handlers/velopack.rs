//! Velopack feeds (SPEC §2.6): `/velopack/{base}/releases.{channel}.json`, the base URL a
//! Velopack app's `UpdateManager` is given, and `/update/{p}/{a}/{v}/releases.{channel}.json`
//! (dispatched from `update`). Velopack's `HttpSource` replaces the base URL's query with
//! `localVersion`, `id` (the app's id) and `stagingId` (the install's rollout identity).

use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;

use crate::error::AppError;
use crate::feeds;
use crate::handlers::update::{admit_with, answered, count_check, rollout_identity};
use crate::release::channel::Channel;
use crate::release::parse_version;
use crate::release::platform::{Arch, Platform};
use crate::release::velopack::{self, feed_channel, release_channel, valid_channel};
use crate::state::{App, AppState};

const JSON: &str = "application/json";
/// A package's redirect: its name belongs to one version's folder.
const PACKAGE_CACHING: &str = "public, max-age=86400";

/// What Velopack's clients send; unknown parameters are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct VelopackQuery {
    /// The version the app runs (`HttpSource`).
    #[serde(rename = "localVersion")]
    local_version: Option<String>,
    /// The install's rollout identity (a GUID Velopack keeps beside its packages).
    #[serde(rename = "stagingId")]
    staging_id: Option<String>,
    /// The machine's arch (Velopack Flow's source sends it): `x86_64`, `aarch64`, ...
    arch: Option<String>,
    /// The OS (Flow): `windows`, `macos`, `linux`.
    os: Option<String>,
    /// A .NET runtime identifier (`win-x64`, `osx-arm64`, `linux-x64`).
    rid: Option<String>,
    /// A private channel's token (Velopack's `HttpSource` replaces the base URL's query:
    /// its apps send `Authorization` through `HttpOptions` instead).
    token: Option<String>,
}

/// `[platform, arch]` metric labels from what a Velopack client said: `rid`, `os`/`arch`,
/// else the OS word of its channel (`win`, `osx`, `linux`); `other` for what is not known.
fn labels(query: &VelopackQuery, velopack_channel: &str) -> [&'static str; 2] {
    let (rid_os, rid_arch) = query
        .rid
        .as_deref()
        .and_then(|rid| rid.split_once('-'))
        .unwrap_or_default();
    let platform = [
        Some(rid_os),
        query.os.as_deref(),
        velopack_channel.split(['-', '_', '.']).next(),
    ]
    .into_iter()
    .flatten()
    .find_map(|word| match word.to_ascii_lowercase().as_str() {
        "osx" | "macos" | "darwin" => Some(Platform::Mac),
        w => Platform::parse(w),
    });
    let arch = [Some(rid_arch), query.arch.as_deref()]
        .into_iter()
        .flatten()
        .find_map(Arch::parse);
    [
        platform.map_or("other", Platform::as_str),
        arch.map_or("other", Arch::as_str),
    ]
}

/// `GET /velopack/{base}/{file}`: `file` is `releases.{channel}.json`. `{base}` only names
/// the base URL: the feed's channel picks the policy (its channel without the OS words:
/// `win` → `latest`), whatever the base says, so that an app switching channels
/// (`ExplicitChannel`) keeps working from one base URL.
pub async fn feed(
    State(app): State<AppState>,
    Path((base, file)): Path<(String, String)>,
    Query(query): Query<VelopackQuery>,
    request: Request,
) -> Result<Response, AppError> {
    // The parts by reference: extracting `HeaderMap` and `Extensions` would clone both.
    let parts = request.into_parts().0;
    let (headers, extensions) = (&parts.headers, &parts.extensions);
    if !valid_channel(&base) {
        return Err(AppError::BadRequest {
            code: "invalid_channel",
            message: format!("`{base}` is not a channel name (letters, digits, `-`, `_`, `.`)"),
        });
    }
    let Some(velopack_channel) = feed_channel(&file) else {
        let os = velopack::default_channel(match labels(&query, &base)[0] {
            "darwin" => Platform::Mac,
            "win32" => Platform::Windows,
            _ => Platform::Linux,
        });
        let admit = |c: &Channel| admit_with(&app, c, query.token.as_deref(), headers, extensions);
        return package(&app, &file, &[&base, os, "win", "osx", "linux"], admit).await;
    };
    let client = match query.local_version.as_deref().filter(|v| !v.is_empty()) {
        Some(text) => Some(parse_version(text).ok_or_else(|| AppError::BadRequest {
            code: "invalid_version",
            message: format!("localVersion `{text}` is not a semver version"),
        })?),
        None => None,
    };
    let id = || rollout_identity(&app, query.staging_id.as_deref(), headers, extensions);
    let admit = |c: &Channel| admit_with(&app, c, query.token.as_deref(), headers, extensions);
    respond(
        &app,
        velopack_channel,
        labels(&query, velopack_channel),
        client.as_ref(),
        headers,
        admit,
        id,
    )
    .await
}

/// A package the client found in a feed, downloaded from beside the feed (`{base}/{FileName}`):
/// a redirect to its folder under `/releases/`, as every other download. The redirect may be
/// shared: a package name belongs to one version.
/// `admit`: the private-channel check of the channel whose feed lists the package (SPEC
/// §2.7); a private channel's package is redirected to a signed URL, never cached.
pub(crate) async fn package(
    app: &App,
    file: &str,
    channels: &[&str],
    admit: impl FnOnce(&Channel) -> Result<(), AppError>,
) -> Result<Response, AppError> {
    let channels = velopack::package_channels(file, channels);
    let Some((url, velopack_channel)) = feeds::velopack_package_url(app, &channels, file).await?
    else {
        return Err(AppError::NotFound(format!(
            "`{file}` is neither a Velopack feed (releases.{{channel}}.json) nor a package one lists"
        )));
    };
    let channel = release_channel(&velopack_channel);
    admit(&channel)?;
    let (url, caching) = if app.access.is_private(&channel) {
        (app.access.sign_url(&url), "private, no-store")
    } else {
        (url, PACKAGE_CACHING)
    };
    let location = HeaderValue::from_str(&url)
        .map_err(|e| AppError::Internal(format!("unencodable package URL: {e}")))?;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, HeaderValue::from_static(caching)),
        ],
    )
        .into_response())
}

/// The feed for a client on `client`, counted and mapped to a response.
pub(crate) async fn respond(
    app: &App,
    velopack_channel: &str,
    labels: [&str; 2],
    client: Option<&semver::Version>,
    headers: &HeaderMap,
    admit: impl FnOnce(&Channel) -> Result<(), AppError>,
    id: impl FnOnce() -> Option<String>,
) -> Result<Response, AppError> {
    let channel = release_channel(velopack_channel);
    admit(&channel)?;
    let answer = feeds::velopack_update(app, velopack_channel, client, id).await?;
    count_check(app, "velopack", &channel, labels, client, answer.update);
    Ok(answered(app, headers, answer, JSON, &channel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_and_arch_from_what_the_client_said() {
        let q = |rid: Option<&str>, os: Option<&str>, arch: Option<&str>| VelopackQuery {
            rid: rid.map(Into::into),
            os: os.map(Into::into),
            arch: arch.map(Into::into),
            ..VelopackQuery::default()
        };
        assert_eq!(
            labels(&q(Some("osx-arm64"), None, None), "beta"),
            ["darwin", "arm64"]
        );
        assert_eq!(
            labels(&q(None, Some("windows"), Some("x86_64")), "beta"),
            ["win32", "x64"]
        );
        assert_eq!(labels(&q(None, None, None), "linux"), ["linux", "other"]);
        assert_eq!(
            labels(&q(None, None, None), "win-arm64"),
            ["win32", "other"]
        );
        assert_eq!(labels(&q(None, None, None), "beta"), ["other", "other"]);
    }
}
