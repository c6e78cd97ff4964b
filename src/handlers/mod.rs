//! Request handlers: extract, call a service, map to a response.

pub mod admin;
pub mod health;
pub mod latest;
pub mod releases;
pub mod sparkle;
pub mod update;
pub mod velopack;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::ConnectInfo;
use http::{Extensions, HeaderMap};

use crate::access::Credentials;
use crate::error::AppError;
use crate::state::App;

/// Any path no route matches.
pub async fn not_found(uri: http::Uri) -> AppError {
    AppError::NotFound(format!("no route for {}", uri.path()))
}

/// A route that exists, with a method it does not serve.
pub async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}

/// The client's address: the peer, or the forwarded one behind a trusted proxy. In-process
/// requests (tests) carry no peer: one shared address.
pub(crate) fn client_ip(app: &App, headers: &HeaderMap, extensions: &Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|peer| update::client_address(peer.0.ip(), headers, &app.config.trusted_proxies))
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// What a request presents to a private channel (read only when the channel or object is
/// private): its token, its URL signature, its address.
pub(crate) fn credentials<'a>(
    app: &App,
    headers: &'a HeaderMap,
    query: Option<&'a str>,
    extensions: &Extensions,
) -> Credentials<'a> {
    Credentials::from_request(headers, query, client_ip(app, headers, extensions))
}
