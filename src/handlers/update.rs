//! `/update/{platform}/{arch}/{version}[/{file}]`: one feed URL for every updater
//! (SPEC §2.3). Extraction and response mapping here; the answers come from `feeds`.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::response::Response;
use http::{Extensions, HeaderMap, HeaderName, HeaderValue, header};
use ipnet::IpNet;
use serde::Deserialize;

use crate::access::Credentials;
use crate::error::AppError;
use crate::feeds::{self, Need, UpdateCheck};
use crate::metrics::{Served, ServedKind};
use crate::policy::{self, Answer};
use crate::release::channel::Channel;
use crate::release::electron::ChannelFile;
use crate::release::parse_version;
use crate::release::platform::{Arch, DetectError, Platform};
use crate::release::velopack;
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
    /// Velopack's rollout identity (its `id` is the app's, the same for every install).
    #[serde(rename = "stagingId")]
    staging_id: Option<String>,
    /// A private channel's token, for clients that cannot set `Authorization`.
    token: Option<String>,
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

/// Admits the request to `channel`'s feeds: at once for a public channel; for a private one
/// only with a token of it (SPEC §2.7).
fn admit(
    app: &App,
    channel: &Channel,
    query: &UpdateQuery,
    headers: &HeaderMap,
    extensions: &Extensions,
) -> Result<(), AppError> {
    admit_with(app, channel, query.token.as_deref(), headers, extensions)
}

/// [`admit`] for any feed: `token` is the request's `?token=`.
pub(crate) fn admit_with(
    app: &App,
    channel: &Channel,
    token: Option<&str>,
    headers: &HeaderMap,
    extensions: &Extensions,
) -> Result<(), AppError> {
    app.access.channel(channel, || {
        Credentials::from_request(headers, None, super::client_ip(app, headers, extensions))
            .or_token(token)
    })?;
    Ok(())
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
    count_check(
        app,
        protocol,
        channel,
        [client.platform.as_str(), client.arch.as_str()],
        Some(&client.version),
        update,
    );
}

/// Counts an answered update check of any protocol: `[platform, arch]` labels (`other` when
/// the client did not say), and the version it runs when it said.
pub(crate) fn count_check(
    app: &App,
    protocol: &str,
    channel: &Channel,
    [platform, arch]: [&str; 2],
    version: Option<&semver::Version>,
    update: bool,
) {
    app.metrics
        .update_checks
        .with_label_values(&[
            protocol,
            platform,
            arch,
            if update { "update" } else { "none" },
        ])
        .inc();
    if let Some(version) = version {
        let known = app.known_versions.current();
        app.metrics
            .client_versions
            .with_label_values(&known.adoption_labels(channel.as_str(), version))
            .inc();
    }
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
    request: Request,
) -> Result<Response, AppError> {
    // The parts by reference: extracting `HeaderMap` and `Extensions` would clone both.
    let parts = request.into_parts().0;
    let (headers, extensions) = (&parts.headers, &parts.extensions);
    let client = parse_client(&platform, &arch, &version)?;
    let channel = channel(&query)?;
    admit(&app, &channel, &query, headers, extensions)?;
    if !wants_json(headers) {
        let file = ChannelFile::for_client(&channel, client.platform, Some(client.arch));
        let id = || client_id(&app, &query, headers, extensions);
        return channel_file_response(&app, &client, &file, headers, true, id).await;
    }
    let check = UpdateCheck {
        platform: client.platform,
        arch: client.arch,
        version: client.version.clone(),
        channel,
        client_id: client_id(&app, &query, headers, extensions),
    };
    let answer = feeds::json_update(&app, &check).await?;
    count(&app, "json", &check.channel, &client, answer.update);
    Ok(answered(&app, headers, answer, JSON, &check.channel))
}

/// `X-Update-Required: true`: the client runs a version below the channel's
/// `minimum_version` (SPEC §2.5), in every protocol.
const UPDATE_REQUIRED: HeaderName = HeaderName::from_static("x-update-required");

/// What a per-client answer varies on, besides `Accept`: the rollout identities.
const VARY_PER_CLIENT: &str = "Accept, X-Client-Id, X-User-Staging-Id";

/// The response of a feed answer: a rollout's per-client answer is `private` (and says
/// what it varies on), a required update says so in `X-Update-Required`; labelled with the
/// channel for the CDN.
pub(crate) fn answered(
    app: &App,
    headers: &HeaderMap,
    answer: Answer,
    content_type: &'static str,
    channel: &Channel,
) -> Response {
    // A private channel's answer: its artifact URLs signed (once per window), and no shared
    // cache may keep it.
    let private = app.access.is_private(channel);
    let caching = if answer.per_client || private {
        FeedCaching::PerClient
    } else {
        FeedCaching::Shared
    };
    let body = match answer.body {
        Some(body) if private => Some(app.access.sign_body(&body)),
        body => body,
    };
    let mut response = feed_response(headers, body, content_type, &app.cache_policy, caching);
    if answer.per_client {
        response
            .headers_mut()
            .insert(header::VARY, HeaderValue::from_static(VARY_PER_CLIENT));
    }
    if answer.required {
        response
            .headers_mut()
            .insert(UPDATE_REQUIRED, HeaderValue::from_static("true"));
    }
    label_for_cdn(from_cache(response), app.cdn.as_ref(), channel)
}

/// `GET /update/{p}/{a}/{v}/{file}`: electron-updater's channel file (`latest-mac.yml`,
/// ...) or Squirrel.Windows' `RELEASES`.
pub async fn feed_file(
    State(app): State<AppState>,
    Path((platform, arch, version, file)): Path<(String, String, String, String)>,
    Query(query): Query<UpdateQuery>,
    request: Request,
) -> Result<Response, AppError> {
    let parts = request.into_parts().0;
    let (headers, extensions) = (&parts.headers, &parts.extensions);
    let client = parse_client(&platform, &arch, &version)?;
    if let Some(velopack_channel) = velopack::feed_channel(&file) {
        let id = || rollout_identity(&app, query.staging_id.as_deref(), headers, extensions);
        let labels = [client.platform.as_str(), client.arch.as_str()];
        return super::velopack::respond(
            &app,
            velopack_channel,
            labels,
            Some(&client.version),
            headers,
            |c| admit(&app, c, &query, headers, extensions),
            id,
        )
        .await;
    }
    if file.ends_with(".nupkg") {
        // Squirrel.Windows' RELEASES names absolute URLs: a package asked for here is one a
        // Velopack client found in the feed beside it.
        let os = velopack::default_channel(client.platform);
        let admit = |c: &Channel| admit(&app, c, &query, headers, extensions);
        return super::velopack::package(&app, &file, &[os], admit).await;
    }
    if file == "appcast.xml" {
        if client.platform != Platform::Mac {
            return Err(AppError::NotFound(format!(
                "appcast.xml is Sparkle's feed, for macOS (/update/darwin/...), not {}",
                client.platform
            )));
        }
        let channel = channel(&query)?;
        admit(&app, &channel, &query, headers, extensions)?;
        let id = || client_id(&app, &query, headers, extensions);
        let labels = [client.platform.as_str(), client.arch.as_str()];
        return super::sparkle::respond(&app, &channel, labels, Some(&client.version), headers, id)
            .await;
    }
    if file == "RELEASES" {
        let channel = channel(&query)?;
        admit(&app, &channel, &query, headers, extensions)?;
        let Some(found) = feeds::squirrel_releases(&app, &channel).await? else {
            return Err(AppError::NoRelease {
                message: format!("no RELEASES for channel {channel}"),
                available: Vec::new(),
            });
        };
        let answer = match policy::of_channel(&app, &channel).await {
            Some(policy) => app
                .policies
                .squirrel(&channel, found, policy)
                .await?
                .answer(&client.version, || {
                    client_id(&app, &query, headers, extensions)
                }),
            None => Answer {
                update: found
                    .newest
                    .as_ref()
                    .is_some_and(|n| feeds::is_newer(n, &client.version)),
                body: Some(FeedBody {
                    bytes: found.rendered.clone(),
                    etag: found.etag.clone(),
                }),
                per_client: false,
                required: false,
            },
        };
        count(&app, "squirrel-windows", &channel, &client, answer.update);
        return Ok(answered(&app, headers, answer, TEXT, &channel));
    }
    let Some(channel_file) = ChannelFile::parse(&file) else {
        return Err(AppError::NotFound(format!(
            "`{file}` is not a channel file (like latest-mac.yml) or RELEASES"
        )));
    };
    admit(&app, &channel_file.channel, &query, headers, extensions)?;
    let id = || client_id(&app, &query, headers, extensions);
    channel_file_response(&app, &client, &channel_file, headers, false, id).await
}

/// The channel file, rendered with absolute URLs, under the channel's policy when it has
/// one (`id`: the client's rollout identity, asked for only while a rollout is below 100%).
/// Never a `204`: electron-updater takes an empty body for a broken manifest and compares
/// versions itself.
async fn channel_file_response(
    app: &App,
    client: &Client,
    file: &ChannelFile,
    headers: &HeaderMap,
    fall_back_to_linux: bool,
    id: impl FnOnce() -> Option<String>,
) -> Result<Response, AppError> {
    let found = if fall_back_to_linux {
        feeds::resolve_channel_file(app, &file.channel, file.platform, file.arch, Need::Required)
            .await?
    } else {
        feeds::channel_file(app, file, Need::Required)
            .await?
            .map(|found| (file.clone(), found))
    };
    let Some((served, found)) = found else {
        return Err(AppError::NoRelease {
            message: format!("no {} in the store", file.file_name()),
            available: Vec::new(),
        });
    };
    let answer = match policy::of_channel(app, &file.channel).await {
        Some(policy) => app
            .policies
            .electron(app, &served, found, policy)
            .await?
            .yaml(&client.version, id),
        None => Answer {
            update: feeds::is_newer(&found.version, &client.version),
            body: Some(FeedBody {
                bytes: found.rendered.clone(),
                etag: found.etag.clone(),
            }),
            per_client: false,
            required: false,
        },
    };
    count(
        app,
        "electron-updater",
        &file.channel,
        client,
        answer.update,
    );
    Ok(answered(app, headers, answer, YAML, &file.channel))
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
    rollout_identity(app, query.id.as_deref(), headers, extensions)
}

/// The rollout identity of any request (the update routes and `/latest`), given its `?id=`.
pub(crate) fn rollout_identity(
    app: &App,
    query_id: Option<&str>,
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
    query_id
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .or_else(|| header("x-client-id"))
        .or_else(|| header("x-user-staging-id"))
        .or_else(|| {
            let peer = extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip();
            Some(client_address(peer, headers, &app.config.trusted_proxies).to_string())
        })
}

/// The client's address: the peer, or when the peer is a trusted proxy, the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy.
pub(crate) fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
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
