//! `/update/{platform}/{arch}/{version}[/{file}]`: one feed URL for every updater
//! (SPEC §2.3). Extraction and response mapping here; the answers come from `feeds`.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::response::Response;
use bytes::Bytes;
use http::{Extensions, HeaderMap, header};
use ipnet::IpNet;
use serde::Deserialize;

use crate::error::AppError;
use crate::feeds::{self, JsonAnswer, Need, UpdateCheck};
use crate::metrics::{Served, ServedKind};
use crate::release::channel::Channel;
use crate::release::electron::ChannelFile;
use crate::release::parse_version;
use crate::release::platform::{Arch, DetectError, Platform};
use crate::response::feed::{FeedBody, FeedCaching, feed_response, label_for_cdn};
use crate::state::{App, AppState};

const YAML: &str = "application/yaml";
const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

/// Query parameters of the update routes; unknown ones (`noCache`, `localVersion`, ...)
/// are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct UpdateQuery {
    channel: Option<String>,
    id: Option<String>,
}

/// The client, as the path describes it.
struct Client {
    platform: Platform,
    arch: Arch,
    version: semver::Version,
}

fn bad(code: &'static str, message: String) -> AppError {
    AppError::BadRequest { code, message }
}

fn parse_client(platform: &str, arch: &str, version: &str) -> Result<Client, AppError> {
    Ok(Client {
        platform: Platform::parse(platform)
            .ok_or_else(|| DetectError::Platform(platform.to_owned()))?,
        arch: Arch::parse(arch).ok_or_else(|| DetectError::Arch(arch.to_owned()))?,
        version: parse_version(version).ok_or_else(|| {
            bad(
                "invalid_version",
                format!("`{version}` is not a semver version (like 1.2.3 or v1.2.3-beta.1)"),
            )
        })?,
    })
}

fn channel(query: &UpdateQuery) -> Result<Channel, AppError> {
    Ok(Channel::from_query(query.channel.as_deref())?)
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json"))
}

/// Counts an answered update check, and the version the client runs (adoption).
fn count(app: &App, protocol: &str, channel: &Channel, client: &Client, update: bool) {
    app.metrics
        .update_checks
        .with_label_values(&[
            protocol,
            client.platform.as_str(),
            client.arch.as_str(),
            if update { "update" } else { "none" },
        ])
        .inc();
    let known = app.known_versions.current();
    app.metrics
        .client_versions
        .with_label_values(&known.adoption_labels(channel.as_str(), &client.version))
        .inc();
}

/// Marks a feed answer for `release_edge_served_bytes_total`: rendered from the manifest
/// cache.
fn from_cache(mut response: Response) -> Response {
    response.extensions_mut().insert(Served {
        origin: "cache",
        kind: ServedKind::Manifest,
    });
    response
}

/// `GET /update/{p}/{a}/{v}`: JSON (Squirrel.Mac, Tauri) when asked for, else the
/// platform's channel file as YAML.
pub async fn check(
    State(app): State<AppState>,
    Path((platform, arch, version)): Path<(String, String, String)>,
    Query(query): Query<UpdateQuery>,
    headers: HeaderMap,
    extensions: Extensions,
) -> Result<Response, AppError> {
    let client = parse_client(&platform, &arch, &version)?;
    let channel = channel(&query)?;
    if !wants_json(&headers) {
        let file = ChannelFile::for_client(&channel, client.platform, Some(client.arch));
        return channel_file_response(&app, &client, &file, &headers, true).await;
    }
    let check = UpdateCheck {
        platform: client.platform,
        arch: client.arch,
        version: client.version.clone(),
        channel,
        client_id: client_id(&app, &query, &headers, &extensions),
    };
    let decided = feeds::json_update(&app, &check).await?;
    let caching = if decided.per_client {
        FeedCaching::PerClient
    } else {
        FeedCaching::Shared
    };
    let body = match decided.answer {
        JsonAnswer::Update(update) => {
            count(&app, "json", &check.channel, &client, true);
            Some(FeedBody::new(Bytes::from(
                serde_json::to_vec(&update)
                    .map_err(|e| AppError::Internal(format!("cannot encode update JSON: {e}")))?,
            )))
        }
        JsonAnswer::UpToDate => {
            count(&app, "json", &check.channel, &client, false);
            None
        }
    };
    let response = feed_response(&headers, body, JSON, &app.cache_policy, caching);
    Ok(label_for_cdn(
        from_cache(response),
        app.cdn.as_ref(),
        &check.channel,
    ))
}

/// `GET /update/{p}/{a}/{v}/{file}`: electron-updater's channel file (`latest-mac.yml`,
/// ...) or Squirrel.Windows' `RELEASES`.
pub async fn feed_file(
    State(app): State<AppState>,
    Path((platform, arch, version, file)): Path<(String, String, String, String)>,
    Query(query): Query<UpdateQuery>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let client = parse_client(&platform, &arch, &version)?;
    if file == "RELEASES" {
        let channel = channel(&query)?;
        let Some(found) = feeds::squirrel_releases(&app, &channel).await? else {
            return Err(AppError::NoRelease {
                message: format!("no RELEASES for channel {channel}"),
                available: Vec::new(),
            });
        };
        let newer = found
            .newest
            .as_ref()
            .is_some_and(|n| feeds::is_newer(n, &client.version));
        count(&app, "squirrel-windows", &channel, &client, newer);
        let body = FeedBody {
            bytes: found.rendered.clone(),
            etag: found.etag.clone(),
        };
        let response = feed_response(
            &headers,
            Some(body),
            TEXT,
            &app.cache_policy,
            FeedCaching::Shared,
        );
        return Ok(label_for_cdn(
            from_cache(response),
            app.cdn.as_ref(),
            &channel,
        ));
    }
    let Some(channel_file) = ChannelFile::parse(&file) else {
        return Err(AppError::NotFound(format!(
            "`{file}` is not a channel file (like latest-mac.yml) or RELEASES"
        )));
    };
    channel_file_response(&app, &client, &channel_file, &headers, false).await
}

/// The channel file, rendered with absolute URLs. Never a `204`: electron-updater takes an
/// empty body for a broken manifest and compares versions itself.
async fn channel_file_response(
    app: &App,
    client: &Client,
    file: &ChannelFile,
    headers: &HeaderMap,
    fall_back_to_linux: bool,
) -> Result<Response, AppError> {
    let found = if fall_back_to_linux {
        feeds::client_channel_file(app, &file.channel, file.platform, file.arch, Need::Required)
            .await?
    } else {
        feeds::channel_file(app, file, Need::Required).await?
    };
    let Some(found) = found else {
        return Err(AppError::NoRelease {
            message: format!("no {} in the store", file.file_name()),
            available: Vec::new(),
        });
    };
    let newer = feeds::is_newer(&found.version, &client.version);
    count(app, "electron-updater", &file.channel, client, newer);
    let body = FeedBody {
        bytes: found.rendered.clone(),
        etag: found.etag.clone(),
    };
    let response = feed_response(
        headers,
        Some(body),
        YAML,
        &app.cache_policy,
        FeedCaching::Shared,
    );
    Ok(label_for_cdn(
        from_cache(response),
        app.cdn.as_ref(),
        &file.channel,
    ))
}

/// The rollout identity, first to last (SPEC §2.3): `?id=`, `X-Client-Id`,
/// electron-updater's `x-user-staging-id`, the client address (from `X-Forwarded-For` only
/// when the peer is a trusted proxy).
fn client_id(
    app: &App,
    query: &UpdateQuery,
    headers: &HeaderMap,
    extensions: &Extensions,
) -> Option<String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    query
        .id
        .clone()
        .filter(|id| !id.is_empty())
        .or_else(|| header("x-client-id"))
        .or_else(|| header("x-user-staging-id"))
        .or_else(|| {
            let peer = extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip();
            Some(client_address(peer, headers, &app.config.trusted_proxies).to_string())
        })
}

/// The client's address: the peer, or when the peer is a trusted proxy, the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy.
fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    forwarded
        .into_iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "203.0.113.7, 198.51.100.2, 10.1.1.1".parse().unwrap(),
        );
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let stranger: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            client_address(proxy, &headers, &trusted),
            "198.51.100.2".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_address(stranger, &headers, &trusted), stranger);
        assert_eq!(client_address(proxy, &HeaderMap::new(), &trusted), proxy);
    }
}
