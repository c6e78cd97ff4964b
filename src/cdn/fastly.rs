//! Fastly: surrogate keys with `POST /service/{service_id}/purge` and the keys in a
//! `Surrogate-Key` request header (up to 256 a request), the changed files with
//! `POST /purge/{host}/{path}`; the API token in `Fastly-Key`, `Fastly-Soft-Purge: 1` when
//! `cdn.soft_purge` is set.

use secrecy::{ExposeSecret, SecretString};

use super::{Failure, Part, Targets, send_http};

/// Fastly's API.
const API: &str = "https://api.fastly.com";
/// Keys per batch purge (Fastly's limit).
const CHUNK: usize = 256;

/// One service's purge endpoints.
pub(super) struct Fastly {
    client: reqwest::Client,
    api: String,
    service_id: String,
    token: SecretString,
    soft: bool,
}

impl Fastly {
    /// The client of this provider\'s purge API.
    pub(super) fn new(
        client: reqwest::Client,
        api_url: Option<&str>,
        service_id: String,
        token: SecretString,
        soft: bool,
    ) -> Self {
        Self {
            client,
            api: api_url.unwrap_or(API).trim_end_matches('/').to_owned(),
            service_id: service_id.trim().to_owned(),
            token,
            soft,
        }
    }

    /// Makes one purge request: the provider\'s purge id, or why it failed.
    pub(super) async fn send(&self, part: &Part) -> Result<String, Failure> {
        let (request, what) = match part {
            Part::Tags(keys) => (
                self.client
                    .post(format!("{}/service/{}/purge", self.api, self.service_id))
                    .header("surrogate-key", keys.join(" ")),
                "Fastly surrogate-key purge",
            ),
            Part::Url(url) => {
                // `POST /purge/{cached_url}`: the URL without its scheme.
                let cached = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
                (
                    self.client.post(format!("{}/purge/{cached}", self.api)),
                    "Fastly URL purge",
                )
            }
            other => return Err(Failure::transient(format!("not a Fastly purge: {other:?}"))),
        };
        let mut request = request
            .header("fastly-key", self.token.expose_secret())
            .header(http::header::ACCEPT, "application/json");
        if self.soft {
            request = request.header("fastly-soft-purge", "1");
        }
        send_http(request, what, |body| {
            // A key purge answers `{"key": "purge id", ...}`, a URL purge
            // `{"status": "ok", "id": "..."}`.
            let answer: serde_json::Value =
                serde_json::from_str(body).map_err(|e| format!("answer is not JSON: {e}"))?;
            match answer.get("status").and_then(serde_json::Value::as_str) {
                Some("ok") | None => Ok(answer.to_string()),
                Some(other) => Err(format!("status {other}")),
            }
        })
        .await
    }
}

/// The requests for `targets`: the channels' keys, then each changed file's URL.
pub(super) fn parts(targets: &Targets) -> Vec<Part> {
    let keys = targets.tags.chunks(CHUNK).map(|c| Part::Tags(c.to_vec()));
    let urls = targets.urls.iter().map(|u| Part::Url(u.clone()));
    keys.chain(urls).collect()
}
