//! Private channels (SPEC §2.7): who may read a private channel's feeds, `/latest` and
//! artifacts, and the signed URLs its feeds hand out.
//!
//! - A channel listed in `access.private_channels` answers its feeds and `/latest` only to a
//!   token of that channel (`RELEASE_EDGE_ACCESS_TOKENS`, `channel:name:token`), sent as
//!   `Authorization: Bearer` or `?token=`; tokens are compared in constant time
//!   ([`TokenDigests`]) and wrong ones slow their address down ([`FailureLimiter`]).
//! - Its artifacts (below) open to a token of one of their channels, or to a URL signed by
//!   [`UrlSigner`], which the channel's feeds write in place of the plain URLs.
//! - Which objects are private: `releases/latest/` files of a private channel
//!   (`beta-mac.yml`, `beta.json`, `RELEASES-beta`), and everything under `releases/v{X}/`
//!   when version X belongs to private channels only. A version belongs to the channels whose
//!   channel files sit in its folder (what `publish --channel` and `mirror` write there),
//!   counting only `latest`, the private channels and the channels live in
//!   `releases/latest/` (a stray `builder-debug.yml` names no channel); a folder without
//!   any belongs to the channel of its pre-release tag (`2.0.0-beta.1` → `beta`). So a
//!   version also published to a public channel is public: anyone could have it through
//!   that channel anyway. The folder's listing is cached for `cache.manifest_ttl`.
//! - Nothing here is consulted for a public channel beyond one comparison, and nothing at
//!   all when no channel is private.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http::{HeaderMap, StatusCode, header};
use percent_encoding::percent_decode_str;
use secrecy::{ExposeSecret, SecretString};

use crate::auth::{FailureLimiter, TokenDigests};
use crate::clock::Clock;
use crate::config::{Config, Secrets};
use crate::error::AppError;
use crate::origin::{OriginError, Origins};
use crate::release::channel::Channel;
use crate::release::{channel_of, parse_version};
use crate::response::feed::FeedBody;
use crate::signing::{SIG_PARAM, SignatureError, UrlSigner};
use crate::store::key::{KeyKind, RELEASES_PREFIX};
use crate::store::{ObjectKey, StoreError};
use crate::versions::{KnownVersions, channel_of_file};

/// The query parameter that carries a token, for clients that cannot set headers.
pub const TOKEN_PARAM: &str = "token";

/// Versions whose channels are remembered at most.
const MAX_VERSIONS: u64 = 10_000;

/// The holder of an access token.
struct Holder {
    channel: Channel,
    name: String,
}

/// What a request presented: a token (header or query), a URL signature, and the client's
/// address (for the slowdown of wrong ones).
#[derive(Debug, Clone)]
pub struct Credentials<'a> {
    /// `Authorization: Bearer ...`, else `?token=`.
    pub token: Option<Cow<'a, str>>,
    /// `?sig=` (artifacts only).
    pub signature: Option<Cow<'a, str>>,
    /// The client's address (the peer, or the forwarded one behind a trusted proxy).
    pub address: IpAddr,
}

impl<'a> Credentials<'a> {
    /// From a request's headers and raw query string.
    pub fn from_request(headers: &'a HeaderMap, query: Option<&'a str>, address: IpAddr) -> Self {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.split_once(' ')
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            })
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty())
            .map(Cow::Borrowed);
        let param = |name: &str| {
            query?
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(key, _)| *key == name)
                .map(|(_, value)| percent_decode_str(value).decode_utf8_lossy())
                .filter(|v| !v.is_empty())
        };
        Self {
            token: bearer.or_else(|| param(TOKEN_PARAM)),
            signature: param(SIG_PARAM),
            address,
        }
    }
}

impl<'a> Credentials<'a> {
    /// With `token` (a query parameter already parsed) when no `Authorization` gave one.
    pub fn or_token(mut self, token: Option<&'a str>) -> Self {
        if self.token.is_none() {
            self.token = token.filter(|t| !t.is_empty()).map(Cow::Borrowed);
        }
        self
    }
}

/// Who was let in to something private.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// A token of `channel`, held by `name`.
    Token {
        /// The channel it opens.
        channel: Channel,
        /// Its holder (what the access log shows; never the token).
        name: String,
    },
    /// A signed URL.
    Signature,
}

impl Grant {
    /// What the access log shows: `channel:name`, or `signed-url`.
    pub fn describe(&self) -> String {
        match self {
            Grant::Token { channel, name } => format!("{channel}:{name}"),
            Grant::Signature => "signed-url".into(),
        }
    }
}

/// A `401`/`403` of a private channel.
fn denied(status: StatusCode, code: &'static str, message: impl Into<String>) -> AppError {
    AppError::Access {
        status,
        code,
        message: message.into(),
    }
}

/// The channels a version's folder belongs to, and when that was learnt.
#[derive(Clone)]
struct VersionOwners {
    /// The private channels that own it; empty: public.
    owners: Arc<[Channel]>,
    learnt: Instant,
}

/// The private channels, their tokens, the URL signer, and which versions are private.
pub struct Access {
    private: Vec<Channel>,
    tokens: TokenDigests<Holder>,
    failures: FailureLimiter,
    signer: Option<UrlSigner>,
    versions: moka::future::Cache<String, VersionOwners>,
    /// How long a folder's channels are trusted.
    ttl: Duration,
    origins: Arc<Origins>,
    known: KnownVersions,
    first_listing: tokio::sync::OnceCell<()>,
    clock: Clock,
}

impl Access {
    /// From the config and the secrets. Refused (naming the variable, never a token): a
    /// malformed token entry, a token for a channel that is not private, a private channel
    /// without a signing key, a key too short.
    pub fn build(
        config: &Config,
        secrets: &Secrets,
        origins: Arc<Origins>,
        known: KnownVersions,
        clock: Clock,
    ) -> anyhow::Result<Self> {
        let private: Vec<Channel> = config
            .access
            .private_channels
            .iter()
            .map(|c| Channel::parse(c))
            .collect::<Result<_, _>>()?;
        let holders = parse_tokens(secrets.access_tokens.as_ref(), &private)?;
        let signer = match (&secrets.url_signing_key, private.is_empty()) {
            (_, true) => None,
            (None, false) => bail!(
                "RELEASE_EDGE_URL_SIGNING_KEY is required with access.private_channels: the private channels' feeds sign their download URLs with it (e.g. `openssl rand -hex 32`)"
            ),
            (Some(keys), false) => {
                let keys: Vec<&[u8]> = keys
                    .expose_secret()
                    .split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(str::as_bytes)
                    .collect();
                Some(
                    UrlSigner::new(
                        &keys,
                        config.access.url_ttl,
                        &config.public_url,
                        clock.clone(),
                    )
                    .map_err(|e| anyhow::anyhow!("RELEASE_EDGE_URL_SIGNING_KEY: {e}"))?,
                )
            }
        };
        for channel in &private {
            if !holders.iter().any(|(h, _)| &h.channel == channel) {
                tracing::warn!(channel = %channel, "private channel without a token in RELEASE_EDGE_ACCESS_TOKENS: nobody can read it");
            }
        }
        Ok(Self {
            private,
            tokens: TokenDigests::new(holders.iter().map(|(h, t)| {
                (
                    Holder {
                        channel: h.channel.clone(),
                        name: h.name.clone(),
                    },
                    t,
                )
            })),
            failures: FailureLimiter::new(clock.clone()),
            signer,
            versions: moka::future::Cache::builder()
                .max_capacity(MAX_VERSIONS)
                // Memory backstop; freshness is judged on the injected clock.
                .time_to_idle(Duration::from_secs(3600))
                .build(),
            ttl: config.cache.manifest_ttl,
            origins,
            known,
            first_listing: tokio::sync::OnceCell::new(),
            clock,
        })
    }

    /// True when some channel is private.
    pub fn enabled(&self) -> bool {
        !self.private.is_empty()
    }

    /// True when `channel` is private.
    pub fn is_private(&self, channel: &Channel) -> bool {
        self.private.iter().any(|c| c == channel)
    }

    /// Admits a feed or `/latest` request for `channel`: `None` for a public channel (the
    /// credentials are not even looked at), the grant of a token of `channel`, or the
    /// refusal (`401` without a token, `403` with a wrong one, `429` while the address
    /// must wait).
    pub fn channel<'a>(
        &self,
        channel: &Channel,
        credentials: impl FnOnce() -> Credentials<'a>,
    ) -> Result<Option<Grant>, AppError> {
        if !self.is_private(channel) {
            return Ok(None);
        }
        let credentials = credentials();
        let Some(token) = credentials.token.as_deref() else {
            return Err(denied(
                StatusCode::UNAUTHORIZED,
                "token_required",
                format!(
                    "channel {channel} is private: send a token of it as `Authorization: Bearer <token>` or `?token=<token>`"
                ),
            ));
        };
        let grant = self.check_token(std::slice::from_ref(channel), token, credentials.address)?;
        record(&grant);
        Ok(Some(grant))
    }

    /// Admits a `/releases/*` request for `key`: `None` for a public object, the grant of a
    /// token of one of its channels or of a valid signature, or the refusal. Decided before
    /// the object is opened: a refused request learns nothing of it.
    pub async fn object<'a>(
        &self,
        key: &ObjectKey,
        credentials: impl FnOnce() -> Credentials<'a>,
    ) -> Result<Option<Grant>, AppError> {
        if !self.enabled() {
            return Ok(None);
        }
        let owners = self.owners(key).await?;
        if owners.is_empty() {
            return Ok(None);
        }
        let credentials = credentials();
        let grant = if let Some(token) = credentials.token.as_deref() {
            self.check_token(&owners, token, credentials.address)?
        } else if let Some(signature) = credentials.signature.as_deref() {
            self.check_signature(key, signature, credentials.address)?
        } else {
            return Err(denied(
                StatusCode::UNAUTHORIZED,
                "token_required",
                "this object belongs to a private channel: download it with the signed URL its feed gives, or send a token of the channel (`Authorization: Bearer <token>` or `?token=<token>`)",
            ));
        };
        record(&grant);
        Ok(Some(grant))
    }

    /// `body` with its artifact URLs signed for now (once per window, then reused).
    pub fn sign_body(&self, body: &FeedBody) -> FeedBody {
        match &self.signer {
            Some(signer) => signer.sign_body(body),
            None => body.clone(),
        }
    }

    /// `url` signed for now, when it is an artifact URL of this server.
    pub fn sign_url(&self, url: &str) -> String {
        match &self.signer {
            Some(signer) => signer.sign_url(url),
            None => url.to_owned(),
        }
    }

    fn check_token(
        &self,
        owners: &[Channel],
        token: &str,
        address: IpAddr,
    ) -> Result<Grant, AppError> {
        self.failures
            .admit(address)
            .map_err(|retry_after| AppError::TooManyAttempts { retry_after })?;
        let mut other_channel = false;
        for holder in self.tokens.labels_of(token) {
            if owners.contains(&holder.channel) {
                self.failures.succeeded(address);
                return Ok(Grant::Token {
                    channel: holder.channel.clone(),
                    name: holder.name.clone(),
                });
            }
            other_channel = true;
        }
        if other_channel {
            // A real token, of another channel: not a guess, not counted.
            return Err(denied(
                StatusCode::FORBIDDEN,
                "token_not_for_channel",
                "this token does not open this channel",
            ));
        }
        let wait = self.failures.failed(address);
        tracing::warn!(%address, slowed_for = ?wait, "private channel: wrong access token");
        Err(denied(
            StatusCode::FORBIDDEN,
            "invalid_token",
            "that token is not a token of this channel (revoked, or mistyped)",
        ))
    }

    fn check_signature(
        &self,
        key: &ObjectKey,
        signature: &str,
        address: IpAddr,
    ) -> Result<Grant, AppError> {
        let Some(signer) = &self.signer else {
            return Err(AppError::Internal(
                "a private channel without a URL signer".into(),
            ));
        };
        self.failures
            .admit(address)
            .map_err(|retry_after| AppError::TooManyAttempts { retry_after })?;
        match signer.verify(key.as_str(), signature, signer.now()) {
            Ok(()) => Ok(Grant::Signature),
            // A genuine URL whose time ran out: a slow client, not an attacker.
            Err(err @ SignatureError::Expired(_)) => Err(denied(
                StatusCode::FORBIDDEN,
                "signature_expired",
                err.to_string(),
            )),
            Err(err) => {
                let wait = self.failures.failed(address);
                tracing::warn!(%address, key = %key, slowed_for = ?wait, "private channel: {err}");
                Err(denied(
                    StatusCode::FORBIDDEN,
                    "invalid_signature",
                    "the URL's signature is not valid for this object (tampered, or signed for another one)",
                ))
            }
        }
    }

    /// The private channels that own `key`; empty when it is public.
    async fn owners(&self, key: &ObjectKey) -> Result<Arc<[Channel]>, AppError> {
        let mut segments = key.as_str().splitn(3, '/');
        let (Some(RELEASES_PREFIX), Some(dir), Some(name)) =
            (segments.next(), segments.next(), segments.next())
        else {
            return Ok(Arc::from([]));
        };
        match key.kind() {
            KeyKind::Versioned => self.owners_of_version(dir).await,
            KeyKind::Mutable if dir == "latest" => Ok(channel_of_file(name)
                .filter(|c| self.is_private(c))
                .map_or_else(|| Arc::from([]), |c| Arc::from([c]))),
            _ => Ok(Arc::from([])),
        }
    }

    /// The private channels that own the version folder `dir` (`v1.2.0`), from the cache
    /// while it is fresh; a failed listing keeps the last answer, and without one fails
    /// (`503`): access is never guessed.
    async fn owners_of_version(&self, dir: &str) -> Result<Arc<[Channel]>, AppError> {
        let held = self.versions.get(dir).await;
        if let Some(held) = &held {
            if self.clock.since(held.learnt) < self.ttl {
                return Ok(Arc::clone(&held.owners));
            }
            self.versions.invalidate(dir).await;
        }
        let learn = async {
            let learnt = self.clock.now();
            self.classify(dir)
                .await
                .map(|owners| VersionOwners { owners, learnt })
        };
        match self.versions.try_get_with_by_ref(dir, learn).await {
            Ok(fresh) => Ok(fresh.owners),
            Err(err) => match held {
                Some(held) => {
                    tracing::warn!(dir, error = %err, "cannot list a version's folder; its last known channels stand");
                    Ok(held.owners)
                }
                None => Err(AppError::Origin(OriginError::Store(err.duplicate()))),
            },
        }
    }

    /// Lists `releases/{dir}/` and decides which private channels own it (module doc).
    async fn classify(&self, dir: &str) -> Result<Arc<[Channel]>, StoreError> {
        let listed: Vec<Channel> = match self.origins.store() {
            Some(store) => {
                let names = store
                    .list_sized(&format!("{RELEASES_PREFIX}/{dir}"))
                    .await?;
                folder_channels(names.iter().map(|(name, _)| name.as_str()))
            }
            None => Vec::new(),
        };
        let mut channels: Vec<Channel> = Vec::new();
        if !listed.is_empty() {
            let live = self.live_channels().await;
            channels = listed
                .into_iter()
                .filter(|c| {
                    self.is_private(c) || c.is_latest() || live.iter().any(|l| c == l.as_str())
                })
                .collect();
        }
        if channels.is_empty()
            && let Some(version) = dir.strip_prefix('v').and_then(parse_version)
        {
            channels.push(channel_of(&version));
        }
        channels.sort();
        channels.dedup();
        let private = !channels.is_empty() && channels.iter().all(|c| self.is_private(c));
        Ok(if private {
            Arc::from(channels)
        } else {
            Arc::from([])
        })
    }

    /// The channels with files in `releases/latest/`, waiting (once per process) for the
    /// first listing of the store.
    async fn live_channels(&self) -> Vec<String> {
        let mut listing = self.known.current();
        if listing.listed_at().is_none() {
            self.first_listing
                .get_or_init(|| async {
                    // A failure is logged inside; the background listing tries again.
                    let _ = self.known.refresh().await;
                })
                .await;
            listing = self.known.current();
        }
        listing.channels().map(str::to_owned).collect()
    }
}

/// Puts the grant in the request's span: the access log line names the token's holder.
fn record(grant: &Grant) {
    tracing::Span::current().record("access", grant.describe().as_str());
}

/// A token entry, parsed.
struct Entry {
    channel: Channel,
    name: String,
}

/// Parses `RELEASE_EDGE_ACCESS_TOKENS`: comma-separated `channel:name:token` (the token may
/// hold `:`). Every entry must parse and name a private channel; errors name the entry by
/// position and `channel:name`, never by its token.
fn parse_tokens(
    value: Option<&SecretString>,
    private: &[Channel],
) -> anyhow::Result<Vec<(Entry, SecretString)>> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let mut entries = Vec::new();
    for (i, entry) in value
        .expose_secret()
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .enumerate()
    {
        let n = i + 1;
        let mut parts = entry.splitn(3, ':');
        let (Some(channel), Some(name), Some(token)) = (parts.next(), parts.next(), parts.next())
        else {
            bail!("RELEASE_EDGE_ACCESS_TOKENS: entry {n} is not `channel:name:token`");
        };
        let channel = Channel::parse(channel)
            .with_context(|| format!("RELEASE_EDGE_ACCESS_TOKENS: entry {n}"))?;
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c));
        if !name_ok {
            bail!(
                "RELEASE_EDGE_ACCESS_TOKENS: entry {n} ({channel}): the name must be letters, digits and `._@-`, at most 64"
            );
        }
        if token.len() < 16 {
            bail!(
                "RELEASE_EDGE_ACCESS_TOKENS: the token of {channel}:{name} is shorter than 16 characters (e.g. `openssl rand -hex 16`)"
            );
        }
        if !private.contains(&channel) {
            bail!(
                "RELEASE_EDGE_ACCESS_TOKENS: {channel}:{name} is for channel {channel}, which is not in access.private_channels"
            );
        }
        entries.push((
            Entry {
                channel,
                name: name.to_owned(),
            },
            SecretString::from(token.to_owned()),
        ));
    }
    Ok(entries)
}

/// The channels the channel files of a version's folder name. A Velopack release's legacy
/// `RELEASES`/`RELEASES-{channel}` (written by `vpk` beside `releases.{channel}.json` for old
/// Squirrel clients) belongs to that feed's channel: read as a Squirrel.Windows channel file
/// it would name `latest` or `win-beta`, and make a private Velopack release public.
fn folder_channels<'a>(names: impl Iterator<Item = &'a str> + Clone) -> Vec<Channel> {
    let velopack = names
        .clone()
        .any(|name| crate::release::velopack::feed_channel(name).is_some());
    names
        .filter(|name| !(velopack && (*name == "RELEASES" || name.starts_with("RELEASES-"))))
        .filter_map(channel_of_file)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_velopack_folder_belongs_to_its_feeds_channels() {
        let names = |list: &[&'static str]| folder_channels(list.iter().copied());
        let beta = || Channel::parse("beta").unwrap();
        assert_eq!(
            names(&[
                "releases.win-beta.json",
                "RELEASES-win-beta",
                "App-1.0.0-win-beta-full.nupkg"
            ]),
            [beta()]
        );
        assert_eq!(
            names(&["releases.win.json", "RELEASES"]),
            [Channel::latest()]
        );
        // Squirrel.Windows alone: its RELEASES names the channel.
        assert_eq!(names(&["RELEASES-beta", "App-1.0.0-full.nupkg"]), [beta()]);
        assert_eq!(names(&["RELEASES"]), [Channel::latest()]);
    }

    fn private(names: &[&str]) -> Vec<Channel> {
        names.iter().map(|n| Channel::parse(n).unwrap()).collect()
    }

    fn parse(value: &str, channels: &[&str]) -> anyhow::Result<Vec<(String, String, String)>> {
        let secret = SecretString::from(value.to_owned());
        Ok(parse_tokens(Some(&secret), &private(channels))?
            .into_iter()
            .map(|(e, t)| (e.channel.to_string(), e.name, t.expose_secret().to_owned()))
            .collect())
    }

    #[test]
    fn token_entries_name_channel_and_holder() {
        let parsed = parse(
            " beta:alice:0123456789abcdef , beta:ci-bot:tok:with:colons:123, acme:acme.corp:fedcba9876543210,,",
            &["acme", "beta"],
        )
        .unwrap();
        assert_eq!(
            parsed,
            [
                ("beta".into(), "alice".into(), "0123456789abcdef".into()),
                ("beta".into(), "ci-bot".into(), "tok:with:colons:123".into()),
                ("acme".into(), "acme.corp".into(), "fedcba9876543210".into()),
            ]
        );
    }

    #[test]
    fn bad_token_entries_are_refused_without_their_token() {
        for (value, expect) in [
            ("beta:0123456789abcdef", "entry 1 is not"),
            ("Beta:alice:0123456789abcdef", "entry 1"),
            ("beta:al ice:0123456789abcdef", "entry 1 (beta): the name"),
            ("beta:alice:short-secret", "beta:alice is shorter than 16"),
            (
                "latest:alice:0123456789abcdef",
                "not in access.private_channels",
            ),
        ] {
            let err = format!("{:#}", parse(value, &["beta"]).unwrap_err());
            assert!(err.contains(expect), "{value}: {err}");
            assert!(
                !err.contains("0123456789abcdef") && !err.contains("short-secret"),
                "{err}"
            );
        }
    }

    #[test]
    fn credentials_come_from_the_header_then_the_query() {
        let address: IpAddr = "192.0.2.1".parse().unwrap();
        let mut headers = HeaderMap::new();
        let none = Credentials::from_request(&headers, Some("noCache=1"), address);
        assert!(none.token.is_none() && none.signature.is_none());
        let query =
            Credentials::from_request(&headers, Some("a=1&token=t%2Bk&sig=9.AB_c"), address);
        assert_eq!(query.token.as_deref(), Some("t+k"));
        assert_eq!(query.signature.as_deref(), Some("9.AB_c"));
        headers.insert(
            header::AUTHORIZATION,
            "Bearer  from-header ".parse().unwrap(),
        );
        let both = Credentials::from_request(&headers, Some("token=from-query"), address);
        assert_eq!(both.token.as_deref(), Some("from-header"));
        headers.insert(header::AUTHORIZATION, "Basic dXNlcjpwYXNz".parse().unwrap());
        let basic = Credentials::from_request(&headers, Some("token=from-query"), address);
        assert_eq!(basic.token.as_deref(), Some("from-query"));
    }
}
