//! A generic webhook: the change POSTed as JSON to `cdn.url` (with
//! `Authorization: Bearer $RELEASE_EDGE_CDN_WEBHOOK_TOKEN` when it is set), for a CDN or a
//! purge script of one's own. Any 2xx is success.

use secrecy::{ExposeSecret, SecretString};

use super::{Change, Failure, Part, Targets, send_http, with_json};

/// The webhook's target.
pub(super) struct Webhook {
    client: reqwest::Client,
    url: String,
    token: Option<SecretString>,
}

impl Webhook {
    /// The client of this provider\'s purge API.
    pub(super) fn new(client: reqwest::Client, url: String, token: Option<SecretString>) -> Self {
        Self { client, url, token }
    }

    /// Makes one purge request: the provider\'s purge id, or why it failed.
    pub(super) async fn send(&self, part: &Part) -> Result<String, Failure> {
        let Part::Webhook(body) = part else {
            return Err(Failure::transient(format!("not a webhook call: {part:?}")));
        };
        let mut request = with_json(self.client.post(&self.url), body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose_secret());
        }
        send_http(request, "the purge webhook", |_| Ok(String::new())).await
    }
}

/// The JSON a webhook receives: what happened, to which channels, and the change's URLs in
/// every form (exact URLs, cache tags / surrogate keys, path wildcards).
pub(super) fn body(change: &Change, targets: &Targets, public_url: &str) -> Part {
    Part::Webhook(serde_json::json!({
        "event": change.kind.as_str(),
        "public_url": public_url,
        "channels": change.channels.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        "urls": targets.urls,
        "tags": targets.tags,
        "paths": targets.paths,
    }))
}
