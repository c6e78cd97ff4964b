//! Cloudflare: `POST /zones/{zone_id}/purge_cache` with an API token (`Authorization:
//! Bearer`), by cache tag (`{"tags": [...]}`, the `Cache-Tag` the server puts on feed and
//! `/latest` answers) and by URL (`{"files": [...]}`); one kind per request, at most 30
//! items each (the smallest per-request limit Cloudflare has had on any plan).

use secrecy::{ExposeSecret, SecretString};

use super::{Failure, Part, Targets, send_http, with_json};

/// Cloudflare's API.
const API: &str = "https://api.cloudflare.com/client/v4";
/// Items per purge request.
const CHUNK: usize = 30;

/// One zone's purge endpoint.
pub(super) struct Cloudflare {
    client: reqwest::Client,
    endpoint: String,
    token: SecretString,
}

impl Cloudflare {
    /// The client of this provider\'s purge API.
    pub(super) fn new(
        client: reqwest::Client,
        api_url: Option<&str>,
        zone_id: String,
        token: SecretString,
    ) -> Self {
        let api = api_url.unwrap_or(API).trim_end_matches('/');
        Self {
            client,
            endpoint: format!("{api}/zones/{}/purge_cache", zone_id.trim()),
            token,
        }
    }

    /// Makes one purge request: the provider\'s purge id, or why it failed.
    pub(super) async fn send(&self, part: &Part) -> Result<String, Failure> {
        let body = match part {
            Part::Tags(tags) => serde_json::json!({ "tags": tags }),
            Part::Urls(urls) => serde_json::json!({ "files": urls }),
            other => {
                return Err(Failure::transient(format!(
                    "not a Cloudflare purge: {other:?}"
                )));
            }
        };
        let request = with_json(
            self.client
                .post(&self.endpoint)
                .bearer_auth(self.token.expose_secret()),
            &body,
        );
        send_http(request, "Cloudflare purge_cache", |body| {
            // `{"success": true, "errors": [], "messages": [], "result": {"id": "..."}}`
            let answer: serde_json::Value =
                serde_json::from_str(body).map_err(|e| format!("answer is not JSON: {e}"))?;
            if answer.get("success").and_then(serde_json::Value::as_bool) != Some(true) {
                return Err(format!("success is not true: {}", answer["errors"]));
            }
            Ok(answer["result"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned())
        })
        .await
    }
}

/// The requests for `targets`: the channels' tags, then the changed files' URLs.
pub(super) fn parts(targets: &Targets) -> Vec<Part> {
    let tags = targets.tags.chunks(CHUNK).map(|c| Part::Tags(c.to_vec()));
    let urls = targets.urls.chunks(CHUNK).map(|c| Part::Urls(c.to_vec()));
    tags.chain(urls).collect()
}
