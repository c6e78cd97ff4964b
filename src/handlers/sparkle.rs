//! Sparkle appcasts (SPEC §2.6): `/sparkle/{channel}/appcast.xml`, the static `SUFeedURL` of
//! an app's `Info.plist`, and `/update/darwin/{a}/{v}/appcast.xml` (dispatched from
//! `update`) for apps that set their feed URL at run time with their version in it.

use axum::extract::{Path, Query, Request, State};
use axum::response::Response;
use http::HeaderMap;
use serde::Deserialize;

use crate::error::AppError;
use crate::feeds;
use crate::handlers::update::{admit_with, answered, count_check, rollout_identity};
use crate::release::channel::Channel;
use crate::state::{App, AppState};

const RSS: &str = "application/rss+xml; charset=utf-8";

/// Query parameters of the static feed; unknown ones (Sparkle's system profile) are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct SparkleQuery {
    /// A rollout identity, for apps that add one to their feed URL.
    id: Option<String>,
    /// A private channel's token, in the feed URL (`SUFeedURL`).
    token: Option<String>,
}

/// `GET /sparkle/{channel}/appcast.xml`. Sparkle sends no version here: a halt or a yank
/// leaves the items out for everyone (Sparkle never downgrades, so the clients already on
/// them are not moved), and a rollout buckets by `?id=`, `X-Client-Id` or the address.
pub async fn appcast(
    State(app): State<AppState>,
    Path(channel): Path<String>,
    Query(query): Query<SparkleQuery>,
    request: Request,
) -> Result<Response, AppError> {
    // The parts by reference: extracting `HeaderMap` and `Extensions` would clone both.
    let parts = request.into_parts().0;
    let (headers, extensions) = (&parts.headers, &parts.extensions);
    let channel = Channel::parse(&channel)?;
    admit_with(&app, &channel, query.token.as_deref(), headers, extensions)?;
    let id = || rollout_identity(&app, query.id.as_deref(), headers, extensions);
    respond(&app, &channel, ["darwin", "other"], None, headers, id).await
}

/// The appcast for a client on `client`, counted and mapped to a response.
pub(crate) async fn respond(
    app: &App,
    channel: &Channel,
    labels: [&str; 2],
    client: Option<&semver::Version>,
    headers: &HeaderMap,
    id: impl FnOnce() -> Option<String>,
) -> Result<Response, AppError> {
    let answer = feeds::sparkle_update(app, channel, client, id).await?;
    count_check(app, "sparkle", channel, labels, client, answer.update);
    Ok(answered(app, headers, answer, RSS, channel))
}
