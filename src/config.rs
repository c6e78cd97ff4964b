//! Configuration: one typed serde tree, built from defaults, then the TOML file, then
//! `RELEASE_EDGE_*` environment variables (`__` between levels). Secrets never come from
//! the file: they are read from the environment into [`Secrets`] and never printed.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ipnet::IpNet;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// The config file read when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "config/release-edge.toml";

/// Prefix of every environment override.
pub const ENV_PREFIX: &str = "RELEASE_EDGE_";

/// The whole configuration (SPEC §4). Every section has documented defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address of the public listener.
    pub listen: SocketAddr,
    /// Base of every absolute URL the server writes (no trailing slash).
    pub public_url: String,
    /// Separate listener for `/metrics`; without it `/metrics` is on `listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// Separate listener for the admin API (`/admin/*`), so that it need not face the
    /// internet; without it `/admin/*` is on `listen`. Either way the API is off (404)
    /// without `RELEASE_EDGE_ADMIN_TOKENS`.
    pub admin_listen: Option<SocketAddr>,
    /// CIDRs whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// The object store.
    pub store: StoreConfig,
    /// The manifest and metadata cache.
    pub cache: CacheConfig,
    /// GitHub Releases as fallback origin (optional).
    pub github: Option<GithubConfig>,
    /// Connection handling.
    pub server: ServerConfig,
    /// Logging.
    pub log: LogConfig,
    /// Prices for the dashboard's cost estimate.
    pub cost: CostConfig,
    /// The CDN in front, purged after every change (optional).
    pub cdn: Option<CdnConfig>,
    /// HTTPS on `listen` (optional; plain HTTP without it).
    pub tls: Option<TlsConfig>,
    /// Private channels and signed download URLs (SPEC §2.7).
    pub access: AccessConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: "http://127.0.0.1:8080".into(),
            metrics_listen: None,
            admin_listen: None,
            trusted_proxies: Vec::new(),
            store: StoreConfig::default(),
            cache: CacheConfig::default(),
            github: None,
            server: ServerConfig::default(),
            log: LogConfig::default(),
            cost: CostConfig::default(),
            cdn: None,
            tls: None,
            access: AccessConfig::default(),
        }
    }
}

/// Which store backend serves `releases/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// A local directory.
    Fs,
    /// S3 or an S3-compatible store (R2, MinIO, Garage, B2).
    S3,
    /// No store: GitHub Releases is the only origin (`[github]` required).
    None,
}

/// `[store]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Backend; default `fs`.
    pub kind: StoreKind,
    /// fs: the directory that holds `releases/`. Default `samples` (the sample releases
    /// shipped in the repository), relative to the working directory.
    pub root: PathBuf,
    /// Longest a single store operation (open, metadata) may take before it counts as failed.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// s3: the bucket.
    pub bucket: Option<String>,
    /// s3: endpoint URL for S3-compatible stores (`https://<account>.r2.cloudflarestorage.com`,
    /// `http://127.0.0.1:9000`); unset for AWS.
    pub endpoint: Option<String>,
    /// s3: region (`auto` for R2). Default `us-east-1`.
    pub region: String,
    /// s3: path-style addressing (`endpoint/bucket/key`), needed by MinIO and Garage.
    pub force_path_style: bool,
    /// s3: key prefix inside the bucket under which `releases/` lives.
    pub prefix: String,
    /// s3: TCP connect timeout. Default 3 s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// s3: time from sending a request to the first byte of its answer. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub first_byte_timeout: Duration,
    /// s3: attempts per request, retries included (the SDK's standard retry mode). Default 3.
    pub max_attempts: u32,
    /// Consecutive store failures (errors, timeouts; not missing objects) that open the
    /// circuit breaker: while open, requests go straight to the fallback origin instead of
    /// paying the store's timeout. `0` disables the breaker. Default 5.
    pub circuit_failures: u32,
    /// How long the circuit stays open before one request probes the store again. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub circuit_open_for: Duration,
    /// Who carries the bytes of `releases/v*/` artifacts: release-edge (`proxy`, the
    /// default) or the bucket, through a `302` to a presigned URL (`redirect`, S3 only).
    pub downloads: Downloads,
    /// s3 with `downloads = "redirect"`: how long a presigned URL stays valid at least (it is
    /// made once per quarter of this and reused, so it lives up to 1.25 times this).
    /// Default 15 min.
    #[serde(with = "humantime_serde")]
    pub presign_ttl: Duration,
}

/// `store.downloads`: who carries an artifact's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Downloads {
    /// release-edge streams them from the store.
    Proxy,
    /// `302` to a presigned URL of the bucket, which serves them (and their ranges).
    Redirect,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: StoreKind::Fs,
            root: PathBuf::from("samples"),
            timeout: Duration::from_secs(10),
            bucket: None,
            endpoint: None,
            region: "us-east-1".into(),
            force_path_style: false,
            prefix: String::new(),
            connect_timeout: Duration::from_secs(3),
            first_byte_timeout: Duration::from_secs(10),
            max_attempts: 3,
            circuit_failures: 5,
            circuit_open_for: Duration::from_secs(30),
            downloads: Downloads::Proxy,
            presign_ttl: Duration::from_secs(15 * 60),
        }
    }
}

/// `[access]`: private channels (SPEC §2.7). Their tokens and the URL signing keys are
/// secrets: they come from the environment ([`Secrets`]), never from here.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// Channels whose feeds, `/latest` and artifacts need a token
    /// (`RELEASE_EDGE_ACCESS_TOKENS`) or, for artifacts, a signed URL. Default: none.
    pub private_channels: Vec<String>,
    /// How long an artifact URL signed into a private channel's feed stays valid at least:
    /// long enough for a slow download to be resumed. Expiries are rounded up to an eighth of
    /// this, so a URL lives up to 1.125 times this. Default 6 h.
    #[serde(with = "humantime_serde")]
    pub url_ttl: Duration,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            private_channels: Vec::new(),
            url_ttl: Duration::from_secs(6 * 3600),
        }
    }
}

/// `[cache]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// How long a manifest is trusted before revalidation. Default 60 s.
    #[serde(with = "humantime_serde")]
    pub manifest_ttl: Duration,
    /// How long a stale manifest may stand in for a failing origin. Default 24 h.
    #[serde(with = "humantime_serde")]
    pub stale_if_error: Duration,
    /// `Cache-Control: max-age` of manifest responses, in seconds. Default 300.
    pub manifest_max_age: u64,
    /// How long the store's answer about a mutable object (`releases/latest/...`: its
    /// metadata, and a small file's bytes) is reused before the store is asked again.
    /// Immutable `releases/v*/` objects are reused for an hour. `0s` asks every time.
    /// Default 1 s.
    #[serde(with = "humantime_serde")]
    pub object_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            manifest_ttl: Duration::from_secs(60),
            stale_if_error: Duration::from_secs(24 * 3600),
            manifest_max_age: 300,
            object_ttl: Duration::from_secs(1),
        }
    }
}

/// `[github]`: the fallback origin.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    /// Repository owner.
    pub owner: String,
    /// Repository name.
    pub repo: String,
    /// API base URL (GitHub Enterprise, or a local stand-in in tests).
    #[serde(default = "default_github_api")]
    pub api_url: String,
    /// Whether the repository is private: downloads are then streamed through release-edge
    /// with `GITHUB_TOKEN` instead of redirected to GitHub. Unset: private when
    /// `GITHUB_TOKEN` is set (hazel's rule).
    #[serde(default)]
    pub private: Option<bool>,
    /// Which store outcomes fall back to GitHub: `missing` (no such object, or a manifest
    /// that does not parse), `error`, `timeout`, `circuit_open`. Default: all four.
    #[serde(default = "default_fallback_on")]
    pub fallback_on: Vec<FallbackReason>,
    /// Longest a GitHub request may take to its response headers. Default 10 s.
    #[serde(default = "default_github_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// How long the list of releases is used before it is revalidated (with
    /// `If-None-Match`). Anonymous clients get 60 API requests an hour per address, so the
    /// default, 5 minutes, spends 12 of them per node.
    #[serde(default = "default_github_refresh", with = "humantime_serde")]
    pub refresh_interval: Duration,
}

fn default_github_refresh() -> Duration {
    Duration::from_secs(300)
}

fn default_github_api() -> String {
    "https://api.github.com".into()
}

fn default_fallback_on() -> Vec<FallbackReason> {
    FallbackReason::ALL.to_vec()
}

fn default_github_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Why a request left the store for the fallback origin (also the `reason` label of
/// `release_edge_fallback_total`, beside `stale`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackReason {
    /// The store has no such object (or the manifest does not parse).
    Missing,
    /// The store failed (I/O error, throttled, denied).
    Error,
    /// The store did not answer in time.
    Timeout,
    /// The circuit breaker is open: the store failed repeatedly and is not asked.
    CircuitOpen,
}

impl FallbackReason {
    /// Every reason.
    pub const ALL: [FallbackReason; 4] = [
        FallbackReason::Missing,
        FallbackReason::Error,
        FallbackReason::Timeout,
        FallbackReason::CircuitOpen,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::Missing => "missing",
            FallbackReason::Error => "error",
            FallbackReason::Timeout => "timeout",
            FallbackReason::CircuitOpen => "circuit_open",
        }
    }
}

/// `[server]`: connection handling.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// A client must send its request headers within this time (slowloris). Default 10 s.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A connection on which no byte moves either way for this long is closed: idle
    /// keep-alive, half-open peers, clients that stopped reading. Default 60 s.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Longest time from request to response headers. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// `/readyz` is 200 when the store answered a probe within this interval. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub readiness_interval: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            shutdown_grace: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            readiness_interval: Duration::from_secs(10),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (default).
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter (`info`, `release_edge=debug,tower_http=info`); `RUST_LOG` wins.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// `[cost]`: optional prices, exported as metrics so that a dashboard turns bytes into money.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CostConfig {
    /// What one GiB of egress costs, in the operator's currency (`0.09` for AWS's first
    /// tier out to the internet). Exported as `release_edge_egress_cost_per_gib`; unset, that
    /// metric is absent and the dashboard's cost panels show no data.
    pub egress_per_gib: Option<f64>,
}

/// Which CDN `[cdn]` purges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CdnKind {
    /// Cloudflare's purge API: cache tags and URLs (`CLOUDFLARE_API_TOKEN`).
    Cloudflare,
    /// Amazon CloudFront's `CreateInvalidation` (credentials: the AWS chain).
    Cloudfront,
    /// Fastly's purge API: surrogate keys and URLs (`FASTLY_API_TOKEN`).
    Fastly,
    /// A POST of the change as JSON to `url` (`RELEASE_EDGE_CDN_WEBHOOK_TOKEN`, optional).
    Webhook,
}

impl CdnKind {
    /// The name used in logs and errors.
    pub fn as_str(self) -> &'static str {
        match self {
            CdnKind::Cloudflare => "cloudflare",
            CdnKind::Cloudfront => "cloudfront",
            CdnKind::Fastly => "fastly",
            CdnKind::Webhook => "webhook",
        }
    }
}

/// `[cdn]`: the CDN in front of release-edge, whose copies of the changed mutable URLs are
/// purged after `publish`, `rollback`, `mirror` and policy changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdnConfig {
    /// The provider.
    pub kind: CdnKind,
    /// cloudflare: the zone id (32 hex digits, on the zone's overview page).
    #[serde(default)]
    pub zone_id: Option<String>,
    /// cloudfront: the distribution id (`E2QWRUHAPOMQZL`).
    #[serde(default)]
    pub distribution_id: Option<String>,
    /// fastly: the service id.
    #[serde(default)]
    pub service_id: Option<String>,
    /// webhook: the URL the change is POSTed to.
    #[serde(default)]
    pub url: Option<String>,
    /// The provider's API base URL, when not the public one: cloudflare
    /// `https://api.cloudflare.com/client/v4`, fastly `https://api.fastly.com`, cloudfront
    /// the SDK's endpoint (a local stand-in in tests).
    #[serde(default)]
    pub api_url: Option<String>,
    /// Prefix of the cache tags (Cloudflare `Cache-Tag`) and surrogate keys (Fastly
    /// `Surrogate-Key`) the server puts on feed and `/latest` answers: `{prefix}{channel}`.
    /// Default `release-edge-`.
    #[serde(default = "default_cdn_tag_prefix")]
    pub tag_prefix: String,
    /// fastly: mark purged objects stale (`Fastly-Soft-Purge: 1`) instead of dropping them,
    /// so that the origin is not stampeded. Default false.
    #[serde(default)]
    pub soft_purge: bool,
    /// Attempts per purge request, the first included. Default 4.
    #[serde(default = "default_cdn_attempts")]
    pub attempts: u32,
    /// Wait after the first failed attempt, doubled after each further one (a `Retry-After`
    /// from the provider wins). Default 1 s.
    #[serde(default = "default_cdn_backoff", with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// Longest one purge request may take. Default 10 s.
    #[serde(default = "default_cdn_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_cdn_tag_prefix() -> String {
    "release-edge-".into()
}

fn default_cdn_attempts() -> u32 {
    4
}

fn default_cdn_backoff() -> Duration {
    Duration::from_secs(1)
}

fn default_cdn_timeout() -> Duration {
    Duration::from_secs(10)
}

impl CdnConfig {
    /// The id or URL the kind needs, present and well-formed; attempts and timeout sane.
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| ConfigError::Invalid {
            key,
            message: message.to_owned(),
        };
        let required = |value: &Option<String>, key: &'static str| match value {
            Some(v) if !v.trim().is_empty() => Ok(()),
            _ => Err(invalid(
                key,
                &format!("required when cdn.kind = \"{}\"", self.kind.as_str()),
            )),
        };
        match self.kind {
            CdnKind::Cloudflare => required(&self.zone_id, "cdn.zone_id")?,
            CdnKind::Cloudfront => required(&self.distribution_id, "cdn.distribution_id")?,
            CdnKind::Fastly => required(&self.service_id, "cdn.service_id")?,
            CdnKind::Webhook => required(&self.url, "cdn.url")?,
        }
        for (key, url) in [("cdn.url", &self.url), ("cdn.api_url", &self.api_url)] {
            if let Some(url) = url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(invalid(key, "must be an http:// or https:// URL"));
            }
        }
        let tag_ok = self
            .tag_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        if !tag_ok || self.tag_prefix.len() > 64 {
            return Err(invalid(
                "cdn.tag_prefix",
                "letters, digits, `-`, `_`, `.` and `:` only, at most 64 (no spaces or commas: they separate tags)",
            ));
        }
        if self.attempts == 0 {
            return Err(invalid("cdn.attempts", "must be at least 1"));
        }
        if self.timeout.is_zero() {
            return Err(invalid("cdn.timeout", "must be more than 0"));
        }
        Ok(())
    }
}

/// `[tls]`: serve HTTPS on `listen` with this certificate (rustls; TLS 1.2 and 1.3; ALPN
/// `h2` and `http/1.1`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first (`fullchain.pem`).
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the leaf certificate.
    pub key: PathBuf,
    /// How often both files are re-read; changed contents are loaded for new connections
    /// (ACME renewals need no restart). Default 10 s.
    #[serde(default = "default_tls_reload", with = "humantime_serde")]
    pub reload_interval: Duration,
}

fn default_tls_reload() -> Duration {
    Duration::from_secs(10)
}

impl AccessConfig {
    /// Channel names valid (duplicates dropped), the URL lifetime sane.
    fn validate(&mut self) -> Result<(), ConfigError> {
        let invalid = |key, message: String| ConfigError::Invalid { key, message };
        for name in &self.private_channels {
            crate::release::channel::Channel::parse(name)
                .map_err(|e| invalid("access.private_channels", e.to_string()))?;
        }
        self.private_channels.sort();
        self.private_channels.dedup();
        if !(Duration::from_secs(60)..=Duration::from_secs(30 * 86_400)).contains(&self.url_ttl) {
            return Err(invalid(
                "access.url_ttl",
                "must be between 1m and 30d".into(),
            ));
        }
        Ok(())
    }
}

/// Secrets: read from the environment only, never from the file, never printed.
#[derive(Default)]
pub struct Secrets {
    /// S3 credentials given explicitly (tests running a local S3 server with keys made at
    /// run time). `None`, always, from the environment: S3 then uses the standard AWS chain.
    pub s3_credentials: Option<aws_sdk_s3::config::Credentials>,
    /// `RELEASE_EDGE_ADMIN_TOKENS`: comma-separated bearer tokens for `/admin/*`, each
    /// `name:token` (the name is what the audit trail records) or a bare token (named
    /// `token-{n}` by its position).
    pub admin_tokens: Vec<AdminToken>,
    /// `GITHUB_TOKEN`, for private repositories and a higher rate limit.
    pub github_token: Option<SecretString>,
    /// `CLOUDFLARE_API_TOKEN`: a Cloudflare API token with the zone's "Cache Purge" permission.
    pub cloudflare_api_token: Option<SecretString>,
    /// `FASTLY_API_TOKEN`: a Fastly API token with the `purge_select` scope.
    pub fastly_api_token: Option<SecretString>,
    /// `RELEASE_EDGE_CDN_WEBHOOK_TOKEN`: sent as `Authorization: Bearer` to the purge webhook.
    pub cdn_webhook_token: Option<SecretString>,
    /// AWS credentials for CloudFront given explicitly (tests with a local stand-in).
    /// `None`, always, from the environment: CloudFront then uses the standard AWS chain.
    pub cdn_aws_credentials: Option<aws_sdk_s3::config::Credentials>,
    /// `RELEASE_EDGE_ACCESS_TOKENS`: the private channels' tokens, comma-separated
    /// `channel:name:token` entries (checked, and refused when malformed, by `crate::access`).
    pub access_tokens: Option<SecretString>,
    /// `RELEASE_EDGE_URL_SIGNING_KEY`: comma-separated HMAC keys for the signed download URLs
    /// of private channels; the first signs, any verifies (rotation).
    pub url_signing_key: Option<SecretString>,
}

/// One admin token and the name the audit trail gives its holder.
#[derive(Clone)]
pub struct AdminToken {
    /// Who holds it (`alice`, `ci`); not secret.
    pub name: String,
    /// The bearer token.
    pub token: SecretString,
}

impl AdminToken {
    /// Parses `RELEASE_EDGE_ADMIN_TOKENS`: comma-separated `name:token` or bare tokens. A
    /// name is letters, digits and `._@-` (at most 64); anything else before a `:` is part
    /// of a bare token.
    pub fn parse_list(value: &str) -> Vec<AdminToken> {
        value
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .enumerate()
            .filter_map(|(i, entry)| {
                let named = entry.split_once(':').filter(|(name, token)| {
                    !name.is_empty()
                        && name.len() <= 64
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c))
                        && !token.is_empty()
                });
                let (name, token) = match named {
                    Some((name, token)) => (name.to_owned(), token),
                    None => (format!("token-{}", i + 1), entry),
                };
                (!token.is_empty()).then(|| AdminToken {
                    name,
                    token: SecretString::from(token.to_owned()),
                })
            })
            .collect()
    }
}

impl Secrets {
    /// Reads the secrets from the process environment.
    pub fn from_env() -> Self {
        let admin_tokens =
            AdminToken::parse_list(&std::env::var("RELEASE_EDGE_ADMIN_TOKENS").unwrap_or_default());
        let secret = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|t| !t.is_empty())
                .map(SecretString::from)
        };
        Self {
            s3_credentials: None,
            admin_tokens,
            github_token: secret("GITHUB_TOKEN"),
            cloudflare_api_token: secret("CLOUDFLARE_API_TOKEN"),
            fastly_api_token: secret("FASTLY_API_TOKEN"),
            cdn_webhook_token: secret("RELEASE_EDGE_CDN_WEBHOOK_TOKEN"),
            cdn_aws_credentials: None,
            access_tokens: secret("RELEASE_EDGE_ACCESS_TOKENS"),
            url_signing_key: secret("RELEASE_EDGE_URL_SIGNING_KEY"),
        }
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |present: bool| if present { "<set>" } else { "<unset>" };
        f.debug_struct("Secrets")
            .field(
                "admin_tokens",
                &format_args!("<{} set>", self.admin_tokens.len()),
            )
            .field(
                "github_token",
                &format_args!("{}", set(self.github_token.is_some())),
            )
            .field(
                "s3_credentials",
                &format_args!("{}", set(self.s3_credentials.is_some())),
            )
            .field(
                "cloudflare_api_token",
                &format_args!("{}", set(self.cloudflare_api_token.is_some())),
            )
            .field(
                "fastly_api_token",
                &format_args!("{}", set(self.fastly_api_token.is_some())),
            )
            .field(
                "cdn_webhook_token",
                &format_args!("{}", set(self.cdn_webhook_token.is_some())),
            )
            .field(
                "access_tokens",
                &format_args!("{}", set(self.access_tokens.is_some())),
            )
            .field(
                "url_signing_key",
                &format_args!("{}", set(self.url_signing_key.is_some())),
            )
            .finish()
    }
}

/// A configuration that could not be loaded; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file, the environment or a value did not parse.
    #[error("{0}")]
    Parse(Box<figment::Error>),
    /// A value parsed but makes no sense.
    #[error("invalid `{key}`: {message}")]
    Invalid {
        /// Dotted path of the key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// `--config` named a file that does not exist.
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
}

impl Config {
    /// Loads defaults, then `path` (or [`DEFAULT_CONFIG_PATH`] when it exists), then the
    /// environment, and validates the result.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let file = match path {
            Some(p) if !p.exists() => return Err(ConfigError::MissingFile(p.to_path_buf())),
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_PATH)).filter(|p| p.exists()),
        };
        Self::from_figment(Self::figment(file.as_deref()))
    }

    /// The layered sources: defaults, file, environment.
    pub fn figment(file: Option<&Path>) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        // Secrets share the prefix but are not config keys (see `Secrets`).
        figment.merge(Env::prefixed(ENV_PREFIX).split("__").ignore(&[
            "admin_tokens",
            "cdn_webhook_token",
            "access_tokens",
            "url_signing_key",
        ]))
    }

    /// Extracts and validates.
    pub fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let mut config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Parse(Box::new(e)))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| ConfigError::Invalid {
            key,
            message: message.to_owned(),
        };
        let trimmed = self.public_url.trim_end_matches('/').to_owned();
        let uri: http::Uri = trimmed
            .parse()
            .map_err(|e| invalid("public_url", &format!("not a URL: {e}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
            return Err(invalid(
                "public_url",
                "must be an absolute http:// or https:// URL",
            ));
        }
        if uri.query().is_some() {
            return Err(invalid("public_url", "must not have a query string"));
        }
        self.public_url = trimmed;
        if self.server.header_read_timeout.is_zero() {
            return Err(invalid("server.header_read_timeout", "must be more than 0"));
        }
        if self.server.idle_timeout.is_zero() {
            return Err(invalid("server.idle_timeout", "must be more than 0"));
        }
        if self.server.request_timeout.is_zero() {
            return Err(invalid("server.request_timeout", "must be more than 0"));
        }
        if self.server.readiness_interval.is_zero() {
            return Err(invalid("server.readiness_interval", "must be more than 0"));
        }
        if self.store.timeout.is_zero() {
            return Err(invalid("store.timeout", "must be more than 0"));
        }
        if let Some(admin) = self.admin_listen
            && (admin == self.listen || Some(admin) == self.metrics_listen)
        {
            return Err(invalid(
                "admin_listen",
                "must differ from listen and metrics_listen (leave it unset to serve /admin on listen)",
            ));
        }
        if self.store.kind == StoreKind::S3 {
            if self.store.bucket.as_deref().is_none_or(str::is_empty) {
                return Err(invalid("store.bucket", "required when store.kind = \"s3\""));
            }
            if let Some(endpoint) = &self.store.endpoint
                && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
            {
                return Err(invalid(
                    "store.endpoint",
                    "must be an http:// or https:// URL",
                ));
            }
            if self.store.max_attempts == 0 {
                return Err(invalid("store.max_attempts", "must be at least 1"));
            }
        }
        if self.store.kind == StoreKind::Fs && !self.store.root.is_dir() {
            return Err(invalid(
                "store.root",
                &format!("{} is not a directory", self.store.root.display()),
            ));
        }
        if let Some(github) = &self.github {
            if github.owner.is_empty() || github.repo.is_empty() {
                return Err(invalid("github", "owner and repo must both be set"));
            }
            let api: http::Uri = github
                .api_url
                .parse()
                .map_err(|e| invalid("github.api_url", &format!("not a URL: {e}")))?;
            if !matches!(api.scheme_str(), Some("http" | "https")) || api.authority().is_none() {
                return Err(invalid(
                    "github.api_url",
                    "must be an absolute http:// or https:// URL",
                ));
            }
            if github.timeout.is_zero() {
                return Err(invalid("github.timeout", "must be more than 0"));
            }
            if github.refresh_interval.is_zero() {
                return Err(invalid("github.refresh_interval", "must be more than 0"));
            }
        }
        if let Some(tls) = &self.tls
            && tls.reload_interval.is_zero()
        {
            return Err(invalid("tls.reload_interval", "must be more than 0"));
        }
        if self.store.kind == StoreKind::None && self.github.is_none() {
            return Err(invalid(
                "store.kind",
                "\"none\" needs a [github] origin to serve from",
            ));
        }
        if let Some(price) = self.cost.egress_per_gib
            && !(price.is_finite() && price >= 0.0)
        {
            return Err(invalid(
                "cost.egress_per_gib",
                "must be a price of 0 or more",
            ));
        }
        if let Some(cdn) = &self.cdn {
            cdn.validate()?;
        }
        if self.store.downloads == Downloads::Redirect && self.store.kind != StoreKind::S3 {
            return Err(invalid(
                "store.downloads",
                "\"redirect\" needs store.kind = \"s3\" (a presigned URL is a bucket's); the filesystem store streams its files itself",
            ));
        }
        if !(Duration::from_secs(10)..=Duration::from_secs(24 * 3600))
            .contains(&self.store.presign_ttl)
        {
            return Err(invalid("store.presign_ttl", "must be between 10s and 24h"));
        }
        self.access.validate()?;
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(invalid("log.level", "not a tracing filter directive"));
        }
        Ok(())
    }

    /// The effective configuration as TOML, for `check-config`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

#[cfg(test)]
// figment's `Jail` closures return its own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    fn load(jail: &Jail, toml: &str) -> Result<Config, ConfigError> {
        jail.create_file("release-edge.toml", toml)
            .expect("write config");
        Config::load(Some(Path::new("release-edge.toml")))
    }

    #[test]
    fn defaults_file_then_environment() {
        Jail::expect_with(|jail| {
            jail.create_dir("store")?;
            jail.set_env("RELEASE_EDGE_LISTEN", "127.0.0.1:9999");
            jail.set_env("RELEASE_EDGE_CACHE__MANIFEST_TTL", "2m 30s");
            jail.set_env("RELEASE_EDGE_ADMIN_TOKENS", "a,b");
            jail.set_env("RELEASE_EDGE_COST__EGRESS_PER_GIB", "0.085");
            let config = load(
                jail,
                r#"
                public_url = "https://dl.example.com/"
                [store]
                root = "store"
                [cache]
                manifest_max_age = 120
                "#,
            )
            .map_err(|e| e.to_string())?;
            assert_eq!(config.listen, "127.0.0.1:9999".parse().unwrap());
            assert_eq!(config.public_url, "https://dl.example.com");
            assert_eq!(config.store.root, PathBuf::from("store"));
            assert_eq!(config.cache.manifest_ttl, Duration::from_secs(150));
            assert_eq!(config.cache.manifest_max_age, 120);
            assert_eq!(config.cache.stale_if_error, Duration::from_secs(86_400));
            assert_eq!(config.server.shutdown_grace, Duration::from_secs(30));
            assert_eq!(config.cost.egress_per_gib, Some(0.085));
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        Jail::expect_with(|jail| {
            jail.create_dir("store")?;
            let err = load(jail, "lisen = \"127.0.0.1:1\"\n[store]\nroot = \"store\"\n")
                .unwrap_err()
                .to_string();
            assert!(err.contains("lisen"), "{err}");
            let err = load(jail, "[store]\nroot = \"store\"\nbukket = \"x\"\n")
                .unwrap_err()
                .to_string();
            assert!(err.contains("bukket"), "{err}");
            jail.set_env("RELEASE_EDGE_CACHE__TTL", "5s");
            let err = load(jail, "[store]\nroot = \"store\"\n")
                .unwrap_err()
                .to_string();
            assert!(err.contains("ttl"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn bad_values_name_their_key() {
        Jail::expect_with(|jail| {
            jail.create_dir("store")?;
            let cases = [
                ("[cache]\nmanifest_ttl = \"soon\"\n", "manifest_ttl"),
                ("listen = \"nowhere\"\n", "listen"),
                ("public_url = \"ftp://x\"\n", "public_url"),
                ("[store]\nroot = \"missing-dir\"\n", "store.root"),
                ("[log]\nformat = \"xml\"\n", "format"),
                ("[server]\nidle_timeout = \"0s\"\n", "server.idle_timeout"),
                ("[store]\nkind = \"ftp\"\n", "kind"),
                ("[store]\nkind = \"none\"\n", "store.kind"),
                (
                    "[github]\nowner = \"a\"\nrepo = \"b\"\napi_url = \"api.github.com\"\n",
                    "github.api_url",
                ),
                (
                    "[github]\nowner = \"a\"\nrepo = \"b\"\nfallback_on = [\"sometimes\"]\n",
                    "fallback_on",
                ),
                ("[github]\nowner = \"a\"\nrepo = \"\"\n", "github"),
                ("[cost]\negress_per_gib = -0.01\n", "cost.egress_per_gib"),
                ("[cost]\negress_per_gib = nan\n", "cost.egress_per_gib"),
                ("[cost]\negress_per_gib = \"cheap\"\n", "egress_per_gib"),
                ("[cost]\negress = 0.09\n", "egress"),
                ("[cdn]\nkind = \"akamai\"\n", "kind"),
                ("[cdn]\nkind = \"cloudflare\"\n", "cdn.zone_id"),
                ("[cdn]\nkind = \"cloudfront\"\n", "cdn.distribution_id"),
                ("[cdn]\nkind = \"fastly\"\n", "cdn.service_id"),
                ("[cdn]\nkind = \"webhook\"\n", "cdn.url"),
                (
                    "[cdn]\nkind = \"webhook\"\nurl = \"hooks.example.com\"\n",
                    "cdn.url",
                ),
                (
                    "[cdn]\nkind = \"fastly\"\nservice_id = \"x\"\ntag_prefix = \"a b\"\n",
                    "cdn.tag_prefix",
                ),
                (
                    "[cdn]\nkind = \"fastly\"\nservice_id = \"x\"\nattempts = 0\n",
                    "cdn.attempts",
                ),
                (
                    "[cdn]\nkind = \"fastly\"\nservice_id = \"x\"\ntoken = \"t\"\n",
                    "token",
                ),
                ("[tls]\ncert = \"c.pem\"\n", "key"),
                ("[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nkee = 1\n", "kee"),
                (
                    "[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nreload_interval = \"0s\"\n",
                    "tls.reload_interval",
                ),
                (
                    "[access]\nprivate_channels = [\"Beta\"]\n",
                    "access.private_channels",
                ),
                ("[access]\nurl_ttl = \"5s\"\n", "access.url_ttl"),
                ("[access]\nprivate = [\"beta\"]\n", "private"),
                (
                    "[store]\nroot = \"store\"\ndownloads = \"redirect\"\n",
                    "store.downloads",
                ),
                (
                    "[store]\nroot = \"store\"\ndownloads = \"cdn\"\n",
                    "downloads",
                ),
                (
                    "[store]\nroot = \"store\"\npresign_ttl = \"2d\"\n",
                    "store.presign_ttl",
                ),
            ];
            for (toml, key) in cases {
                // Top-level keys come first in TOML, so the store section goes last.
                let body = if toml.contains("[store]") {
                    toml.to_owned()
                } else {
                    format!("{toml}\n[store]\nroot = \"store\"\n")
                };
                let err = load(jail, &body).unwrap_err().to_string();
                assert!(err.contains(key), "{key}: {err}");
            }
            Ok(())
        });
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let err = Config::load(Some(Path::new("/nonexistent/release-edge.toml"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/release-edge.toml"));
    }

    #[test]
    fn rendered_config_round_trips_and_holds_no_secret() {
        Jail::expect_with(|jail| {
            jail.create_dir("store")?;
            jail.set_env("RELEASE_EDGE_ADMIN_TOKENS", "hunter2");
            let config = load(jail, "[store]\nroot = \"store\"\n").map_err(|e| e.to_string())?;
            let rendered = config.to_toml();
            assert!(!rendered.contains("hunter2"));
            assert!(rendered.contains("manifest_ttl = \"1m\""), "{rendered}");
            jail.create_file("rendered.toml", &rendered)?;
            let again =
                Config::load(Some(Path::new("rendered.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(again.to_toml(), rendered);
            let secrets = format!("{:?}", Secrets::from_env());
            assert!(secrets.contains("admin_tokens: <1 set>"), "{secrets}");
            assert!(!secrets.contains("hunter2"));
            Ok(())
        });
    }

    #[test]
    fn admin_tokens_are_named() {
        use secrecy::ExposeSecret;
        let tokens = AdminToken::parse_list(
            " alice:s3cret-a, ci-bot:tok:with:colons ,, bare-token,:nameless, weird name:x",
        );
        let parsed: Vec<(String, String)> = tokens
            .iter()
            .map(|t| (t.name.clone(), t.token.expose_secret().to_owned()))
            .collect();
        assert_eq!(
            parsed,
            [
                ("alice".into(), "s3cret-a".into()),
                ("ci-bot".into(), "tok:with:colons".into()),
                ("token-3".into(), "bare-token".into()),
                ("token-4".into(), ":nameless".into()),
                ("token-5".into(), "weird name:x".into()),
            ]
        );
        assert!(AdminToken::parse_list("").is_empty());
    }

    #[test]
    fn private_channels_from_the_file_and_their_secrets_from_the_environment() {
        Jail::expect_with(|jail| {
            jail.create_dir("store")?;
            jail.set_env(
                "RELEASE_EDGE_ACCESS_TOKENS",
                "beta:alice:t0k3n-of-alice-0001",
            );
            jail.set_env("RELEASE_EDGE_URL_SIGNING_KEY", "k".repeat(32));
            jail.set_env("RELEASE_EDGE_ACCESS__URL_TTL", "2h");
            let config = load(
                jail,
                "[access]\nprivate_channels = [\"beta\", \"acme\", \"beta\"]\n[store]\nroot = \"store\"\n",
            )
            .map_err(|e| e.to_string())?;
            assert_eq!(config.access.private_channels, ["acme", "beta"]);
            assert_eq!(config.access.url_ttl, Duration::from_secs(7200));
            assert_eq!(config.store.downloads, Downloads::Proxy);
            let rendered = config.to_toml();
            assert!(!rendered.contains("t0k3n"), "{rendered}");
            let secrets = format!("{:?}", Secrets::from_env());
            assert!(secrets.contains("access_tokens: <set>"), "{secrets}");
            assert!(secrets.contains("url_signing_key: <set>"), "{secrets}");
            assert!(!secrets.contains("t0k3n") && !secrets.contains("kkkk"));
            Ok(())
        });
    }

    #[test]
    fn admin_listen_must_be_its_own() {
        Jail::expect_with(|jail| {
            jail.create_dir("store")?;
            let err = load(
                jail,
                "listen = \"127.0.0.1:8080\"\nadmin_listen = \"127.0.0.1:8080\"\n[store]\nroot = \"store\"\n",
            )
            .unwrap_err();
            assert!(err.to_string().contains("admin_listen"), "{err}");
            let config = load(
                jail,
                "admin_listen = \"127.0.0.1:9465\"\n[store]\nroot = \"store\"\n",
            )
            .map_err(|e| e.to_string())?;
            assert_eq!(config.admin_listen, Some("127.0.0.1:9465".parse().unwrap()));
            Ok(())
        });
    }
}
