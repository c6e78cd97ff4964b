//! Amazon CloudFront: one `CreateInvalidation` per purge through the AWS SDK, with the
//! standard AWS credentials chain (or explicit keys in tests) and, when `cdn.api_url` is set,
//! that endpoint instead of CloudFront's. CloudFront has no tags: the paths are wildcards
//! (`/update/*`, `/latest*`, `/releases/latest/*`), three paths a purge whatever the
//! channel, well inside the 15 wildcard invalidations CloudFront runs at once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudfront::Client;
use aws_sdk_cloudfront::config::retry::RetryConfig;
use aws_sdk_cloudfront::config::timeout::TimeoutConfig;
use aws_sdk_cloudfront::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_cloudfront::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudfront::types::{InvalidationBatch, Paths};

use super::{Failure, MAX_RETRY_AFTER, Part, Targets};
use crate::config::CdnConfig;

/// CloudFront is a global service, signed for us-east-1.
const REGION: &str = "us-east-1";

/// One distribution.
pub(super) struct Cloudfront {
    distribution_id: String,
    endpoint: Option<String>,
    credentials: Option<Credentials>,
    timeout: std::time::Duration,
    /// Built on first use: loading the AWS chain is asynchronous.
    client: tokio::sync::OnceCell<Client>,
}

impl Cloudfront {
    /// The client of this provider\'s purge API.
    pub(super) fn new(config: &CdnConfig, credentials: Option<Credentials>) -> Self {
        Self {
            distribution_id: config.distribution_id.clone().unwrap_or_default(),
            endpoint: config.api_url.clone(),
            credentials,
            timeout: config.timeout,
            client: tokio::sync::OnceCell::new(),
        }
    }

    async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async {
                // Our retry loop decides (and counts) the attempts, so the SDK makes one.
                let timeouts = TimeoutConfig::builder()
                    .operation_timeout(self.timeout)
                    .build();
                let mut builder = match &self.credentials {
                    Some(credentials) => aws_sdk_cloudfront::config::Builder::new()
                        .behavior_version(BehaviorVersion::latest())
                        .credentials_provider(credentials.clone()),
                    None => {
                        let shared = aws_config::defaults(BehaviorVersion::latest())
                            .region(Region::new(REGION))
                            .load()
                            .await;
                        aws_sdk_cloudfront::config::Builder::from(&shared)
                    }
                };
                builder = builder
                    .region(Region::new(REGION))
                    .retry_config(RetryConfig::disabled())
                    .timeout_config(timeouts);
                if let Some(endpoint) = &self.endpoint {
                    builder = builder.endpoint_url(endpoint);
                }
                Client::from_conf(builder.build())
            })
            .await
    }

    /// Makes one purge request: the provider\'s purge id, or why it failed.
    pub(super) async fn send(&self, part: &Part) -> Result<String, Failure> {
        let Part::Paths(paths, caller_reference) = part else {
            return Err(Failure::transient(format!(
                "not a CloudFront invalidation: {part:?}"
            )));
        };
        let batch = Paths::builder()
            .quantity(i32::try_from(paths.len()).unwrap_or(i32::MAX))
            .set_items(Some(paths.clone()))
            .build()
            .and_then(|paths| {
                InvalidationBatch::builder()
                    .paths(paths)
                    .caller_reference(caller_reference)
                    .build()
            })
            .map_err(|err| Failure::transient(format!("building the invalidation: {err}")))?;
        let sent = self
            .client()
            .await
            .create_invalidation()
            .distribution_id(&self.distribution_id)
            .invalidation_batch(batch)
            .send()
            .await;
        match sent {
            Ok(out) => Ok(out
                .invalidation()
                .map(|i| i.id().to_owned())
                .unwrap_or_default()),
            Err(err) => Err(failure(err)),
        }
    }
}

/// What an SDK error means for another attempt: throttling, too many invalidations in
/// progress, a 5xx, a timeout or a connection failure may pass; a refusal will not.
fn failure<E: ProvideErrorMetadata + std::error::Error + 'static>(
    err: SdkError<E, aws_sdk_cloudfront::config::http::HttpResponse>,
) -> Failure {
    let message = match &err {
        // The status and CloudFront's own words, not the raw answer.
        SdkError::ServiceError(ctx) => format!(
            "CloudFront answered {} to CreateInvalidation: {}: {}",
            ctx.raw().status().as_u16(),
            ctx.err().code().unwrap_or("error"),
            ctx.err().message().unwrap_or_default()
        ),
        other => format!(
            "CloudFront CreateInvalidation: {}",
            aws_sdk_cloudfront::error::DisplayErrorContext(other)
        ),
    };
    let (retryable, retry_after) = match &err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code().unwrap_or_default();
            let retry_after = ctx
                .raw()
                .headers()
                .get("retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
            let retryable = status >= 500
                || status == 429
                || matches!(code, "Throttling" | "TooManyInvalidationsInProgress");
            (retryable, retry_after)
        }
        SdkError::ResponseError(_) => (false, None),
        _ => (true, None),
    };
    Failure {
        retryable,
        retry_after,
        message,
    }
}

/// One invalidation of every path, with a caller reference that stays the same across its
/// retries (CloudFront answers a repeated reference with the first invalidation instead of
/// making a second).
pub(super) fn parts(targets: &Targets) -> Vec<Part> {
    if targets.paths.is_empty() {
        return Vec::new();
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let reference = format!("release-edge-{nanos}-{:08x}", fastrand::u32(..));
    vec![Part::Paths(targets.paths.clone(), reference)]
}
