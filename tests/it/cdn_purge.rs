//! CDN purge after every change, against local stand-ins of Cloudflare's, Fastly's and
//! CloudFront's purge APIs and a webhook: exactly the expected URLs, tags and paths after
//! `publish`, `rollback` and `mirror` (the real binary), the labels feed answers carry, a
//! policy change's purge, and failures retried with back-off on the clock and reported.

use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use release_edge::cdn::{Cdn, Change, ChangeKind, PurgeError};
use release_edge::clock::Clock;
use release_edge::config::{CdnConfig, CdnKind, Config, Secrets};
use release_edge::metrics::Metrics;
use release_edge::release::channel::Channel;
use secrecy::SecretString;

use crate::cdn_standin::{CdnStandIn, Provider, Purge};
use crate::github_standin::{GitHubStandIn, ReleaseSpec};
use crate::mirror::github_cli;
use crate::publish::{Dist, cli, ok};
use crate::support::{Fixture, channel_yml, get, pattern};

const PUBLIC: &str = "https://dl.example.com";
const PROVIDERS: [Provider; 4] = [
    Provider::Cloudflare,
    Provider::Fastly,
    Provider::Cloudfront,
    Provider::Webhook,
];

fn kind(provider: Provider) -> CdnKind {
    match provider {
        Provider::Cloudflare => CdnKind::Cloudflare,
        Provider::Fastly => CdnKind::Fastly,
        Provider::Cloudfront => CdnKind::Cloudfront,
        Provider::Webhook => CdnKind::Webhook,
    }
}

/// Credentials made at run time: an API token (CloudFront: an access key id) and, for
/// CloudFront, a secret key.
struct Keys {
    token: String,
    secret: String,
}

fn keys() -> Keys {
    Keys {
        token: format!("AKIA{:016X}", fastrand::u64(..)),
        secret: format!("{:032x}", fastrand::u128(..)),
    }
}

pub fn cdn_config(cdn: &CdnStandIn) -> CdnConfig {
    let id = Some(CdnStandIn::ID.to_owned());
    let webhook = cdn.provider == Provider::Webhook;
    CdnConfig {
        kind: kind(cdn.provider),
        zone_id: id.clone(),
        distribution_id: id.clone(),
        service_id: id,
        url: webhook.then(|| cdn.api_url()),
        api_url: (!webhook).then(|| cdn.api_url()),
        tag_prefix: "release-edge-".into(),
        soft_purge: false,
        attempts: 3,
        retry_backoff: Duration::from_secs(1),
        timeout: Duration::from_secs(5),
    }
}

/// The environment that points the binary at `cdn` with `keys`.
fn cdn_env(cdn: &CdnStandIn, keys: &Keys) -> Vec<(&'static str, String)> {
    let token = keys.token.as_str();
    let mut env = vec![
        ("RELEASE_EDGE_PUBLIC_URL", PUBLIC.to_owned()),
        ("RELEASE_EDGE_CDN__RETRY_BACKOFF", "10ms".to_owned()),
        ("RELEASE_EDGE_CDN__ATTEMPTS", "3".to_owned()),
    ];
    let id = CdnStandIn::ID.to_owned();
    match cdn.provider {
        Provider::Cloudflare => env.extend([
            ("RELEASE_EDGE_CDN__KIND", "cloudflare".to_owned()),
            ("RELEASE_EDGE_CDN__ZONE_ID", id),
            ("RELEASE_EDGE_CDN__API_URL", cdn.api_url()),
            ("CLOUDFLARE_API_TOKEN", token.to_owned()),
        ]),
        Provider::Fastly => env.extend([
            ("RELEASE_EDGE_CDN__KIND", "fastly".to_owned()),
            ("RELEASE_EDGE_CDN__SERVICE_ID", id),
            ("RELEASE_EDGE_CDN__API_URL", cdn.api_url()),
            ("FASTLY_API_TOKEN", token.to_owned()),
        ]),
        Provider::Cloudfront => env.extend([
            ("RELEASE_EDGE_CDN__KIND", "cloudfront".to_owned()),
            ("RELEASE_EDGE_CDN__DISTRIBUTION_ID", id),
            ("RELEASE_EDGE_CDN__API_URL", cdn.api_url()),
            ("AWS_ACCESS_KEY_ID", token.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", keys.secret.clone()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]),
        Provider::Webhook => env.extend([
            ("RELEASE_EDGE_CDN__KIND", "webhook".to_owned()),
            ("RELEASE_EDGE_CDN__URL", cdn.api_url()),
            ("RELEASE_EDGE_CDN_WEBHOOK_TOKEN", token.to_owned()),
        ]),
    }
    env
}

/// What each provider must receive for a change to `channels` that wrote `files` (names
/// under `releases/latest/`), as documented in the README's "Behind a CDN".
fn expected(provider: Provider, channels: &[&str], files: &[&str]) -> Vec<Purge> {
    let tags: Vec<String> = channels
        .iter()
        .map(|c| format!("release-edge-{c}"))
        .collect();
    let urls: Vec<String> = files
        .iter()
        .map(|f| format!("{PUBLIC}/releases/latest/{f}"))
        .collect();
    let purge = |kind, items: Vec<String>| Purge { kind, items };
    match provider {
        Provider::Cloudflare => vec![purge("tags", tags), purge("files", urls)],
        Provider::Fastly => std::iter::once(purge("keys", tags))
            .chain(
                urls.iter()
                    .map(|u| purge("url", vec![u.trim_start_matches("https://").to_owned()])),
            )
            .collect(),
        Provider::Cloudfront => vec![purge(
            "paths",
            vec![
                "/update/*".into(),
                "/latest*".into(),
                "/releases/latest/*".into(),
            ],
        )],
        Provider::Webhook => vec![purge("webhook", urls)],
    }
}

/// Runs the binary with `env` off the async workers, which keep serving the stand-ins.
async fn run_with(mut cmd: std::process::Command, env: &[(&'static str, String)]) -> Output {
    for (k, v) in env {
        cmd.env(k, v);
    }
    crate::support::output(cmd).await
}

fn mac_dist(version: &str, len: usize) -> Dist {
    let name = format!("App-{version}-mac.zip");
    Dist::new(version, "latest-mac.yml", &[(name.as_str(), pattern(len))])
}

#[tokio::test]
async fn publish_rollback_and_mirror_purge_exactly_what_changed_on_every_provider() {
    let gh = GitHubStandIn::start().await;
    let (stable, beta) = (pattern(7_000), pattern(8_000));
    gh.add_release(
        ReleaseSpec::new("v1.2.0")
            .asset(
                "latest-mac.yml",
                channel_yml("1.2.0", &[("App-1.2.0-mac.zip", &stable)], None),
            )
            .asset("App-1.2.0-mac.zip", stable),
    );
    gh.add_release(
        ReleaseSpec::new("v1.3.0-beta.1")
            .prerelease()
            .asset(
                "beta-mac.yml",
                channel_yml("1.3.0-beta.1", &[("App-1.3.0-beta.1-mac.zip", &beta)], None),
            )
            .asset("App-1.3.0-beta.1-mac.zip", beta),
    );
    for provider in PROVIDERS {
        let keys = keys();
        let cdn = CdnStandIn::start(provider, &keys.token, &keys.secret).await;
        let env = cdn_env(&cdn, &keys);
        let fx = Fixture::new();

        for (version, len) in [("1.0.0", 1_000), ("1.1.0", 1_100)] {
            let dist = mac_dist(version, len);
            let mut cmd = cli(&fx);
            cmd.args(["publish", "--version", version]).arg(dist.path());
            let out = run_with(cmd, &env).await;
            ok(&out);
            assert_eq!(
                cdn.purges(),
                expected(provider, &["latest"], &["latest-mac.yml"]),
                "{provider:?}: publish"
            );
            cdn.clear();
        }

        let mut cmd = cli(&fx);
        cmd.args(["rollback", "--channel", "latest", "--to", "1.0.0"]);
        let out = run_with(cmd, &env).await;
        ok(&out);
        assert_eq!(
            cdn.purges(),
            expected(provider, &["latest"], &["latest-mac.yml"]),
            "{provider:?}: rollback"
        );
        cdn.clear();

        let work = tempfile::tempdir().expect("work");
        let cmd = github_cli(&fx, &gh, &["mirror", "--from-github"], work.path());
        let out = run_with(cmd, &env).await;
        ok(&out);
        assert_eq!(
            cdn.purges(),
            expected(
                provider,
                &["beta", "latest"],
                &["beta-mac.yml", "latest-mac.yml"]
            ),
            "{provider:?}: mirror"
        );
        if provider == Provider::Webhook {
            let body = &cdn.webhook_bodies()[0];
            assert_eq!(body["event"], "mirror");
            assert_eq!(body["channels"], serde_json::json!(["beta", "latest"]));
            assert_eq!(
                body["tags"],
                serde_json::json!(["release-edge-beta", "release-edge-latest"])
            );
            assert_eq!(body["public_url"], PUBLIC);
        }
        cdn.clear();

        // Nothing changed, nothing purged.
        let cmd = github_cli(&fx, &gh, &["mirror", "--from-github"], work.path());
        ok(&run_with(cmd, &env).await);
        assert_eq!(
            cdn.requests(),
            0,
            "{provider:?}: an idempotent mirror purges nothing"
        );
    }
}

#[tokio::test]
async fn a_failing_purge_is_retried_then_reported_with_its_own_exit_status() {
    let keys = keys();
    let cdn = CdnStandIn::start(Provider::Cloudflare, &keys.token, &keys.secret).await;
    cdn.fail_all(Some(503));
    let fx = Fixture::new();
    let dist = mac_dist("1.0.0", 900);
    let mut cmd = cli(&fx);
    cmd.args(["publish", "--version", "1.0.0"]).arg(dist.path());
    let out = run_with(cmd, &cdn_env(&cdn, &keys)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("cloudflare purge failed after 3 attempt(s)")
            && stderr.contains("503")
            && stderr.contains("the change is made, but the CDN was not purged"),
        "{stderr}"
    );
    assert!(
        stderr.contains("CDN purge failed"),
        "the log line: {stderr}"
    );
    assert_eq!(
        cdn.requests(),
        3,
        "three attempts at the first request, then it stops"
    );
    // The release itself is published.
    let feed = get(&fx.router(), "/update/darwin/x64/0.1.0/latest-mac.yml", &[]).await;
    assert!(String::from_utf8_lossy(&feed.body).contains("version: 1.0.0"));

    // A credential that is not in the environment: refused before anything is written.
    let fx = Fixture::new();
    let mut cmd = cli(&fx);
    cmd.args(["publish", "--version", "1.0.0"]).arg(dist.path());
    let env: Vec<_> = cdn_env(&cdn, &keys)
        .into_iter()
        .filter(|(k, _)| *k != "CLOUDFLARE_API_TOKEN")
        .collect();
    let out = run_with(cmd, &env).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("needs CLOUDFLARE_API_TOKEN"), "{stderr}");
    assert!(
        !fx.root().join("releases/v1.0.0").exists(),
        "nothing written"
    );
}

fn purger(cdn: &CdnStandIn, keys: &Keys, clock: &Clock) -> (Cdn, Arc<Metrics>) {
    let token = keys.token.as_str();
    let config = Config {
        public_url: PUBLIC.into(),
        cdn: Some(cdn_config(cdn)),
        ..Config::default()
    };
    let secret = Some(SecretString::from(token.to_owned()));
    let secrets = Secrets {
        cloudflare_api_token: secret.clone(),
        fastly_api_token: secret.clone(),
        cdn_webhook_token: secret,
        cdn_aws_credentials: Some(aws_sdk_s3::config::Credentials::new(
            token,
            &keys.secret,
            None,
            None,
            "test",
        )),
        ..Secrets::default()
    };
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let cdn = Cdn::from_config(&config, &secrets, clock.clone(), metrics.clone())
        .expect("cdn")
        .expect("configured");
    (cdn, metrics)
}

fn purges(metrics: &Metrics, outcome: &str) -> u64 {
    metrics.cdn_purges.with_label_values(&[outcome]).get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_wait_on_the_clock_honour_retry_after_and_stop_at_a_refusal() {
    for provider in PROVIDERS {
        let keys = keys();
        let cdn = CdnStandIn::start(provider, &keys.token, &keys.secret).await;
        let clock = Clock::manual();
        let (cdn_purger, metrics) = purger(&cdn, &keys, &clock);
        cdn.fail_next(&[(503, None), (429, Some(7))]);
        let change = Change::channel(ChangeKind::Policy, Channel::parse("beta").expect("beta"));
        let running = tokio::spawn({
            let purger = cdn_purger.clone();
            let change = change.clone();
            async move { purger.purge(&change).await }
        });
        // The first retry after `retry_backoff` (1 s); then a 429's Retry-After (7 s) wins
        // over the doubled back-off (2 s).
        clock.until_sleeps(1).await;
        assert_eq!(cdn.requests(), 1, "{provider:?}");
        clock.advance(Duration::from_secs(1));
        clock.until_sleeps(2).await;
        assert_eq!(cdn.requests(), 2, "{provider:?}");
        clock.advance(Duration::from_secs(7));
        let targets = tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .expect("done")
            .expect("task")
            .expect("purged on the third attempt");
        assert_eq!(cdn.requests(), 3, "{provider:?}");
        assert_eq!(
            clock.sleeps(),
            [Duration::from_secs(1), Duration::from_secs(7)],
            "{provider:?}"
        );
        assert_eq!(targets.tags, ["release-edge-beta"]);
        assert!(targets.urls.is_empty(), "a policy change writes no file");
        let policy = match provider {
            Provider::Cloudflare => vec![Purge {
                kind: "tags",
                items: vec!["release-edge-beta".into()],
            }],
            Provider::Fastly => vec![Purge {
                kind: "keys",
                items: vec!["release-edge-beta".into()],
            }],
            Provider::Cloudfront => expected(provider, &["beta"], &[]),
            Provider::Webhook => vec![Purge {
                kind: "webhook",
                items: vec![],
            }],
        };
        assert_eq!(cdn.purges(), policy, "{provider:?}");
        if provider == Provider::Cloudfront {
            let refs = cdn.references();
            assert_eq!(refs.len(), 3, "{refs:?}");
            assert!(
                refs.iter().all(|r| *r == refs[0]),
                "one caller reference across the retries, so CloudFront makes one invalidation: {refs:?}"
            );
        }
        assert_eq!((purges(&metrics, "ok"), purges(&metrics, "error")), (1, 0));

        // A refusal (a wrong token) is not retried: one request, reported.
        let wrong_keys = Keys {
            token: keys.token.clone(),
            secret: "not-the-secret".into(),
        };
        let wrong_keys = if provider == Provider::Cloudfront {
            wrong_keys
        } else {
            Keys {
                token: "not-the-token".into(),
                ..wrong_keys
            }
        };
        let (wrong, metrics) = purger(&cdn, &wrong_keys, &clock);
        cdn.clear();
        let err = wrong
            .purge_channel(&Channel::latest(), ChangeKind::Policy)
            .await
            .expect_err("refused");
        assert!(
            matches!(err, PurgeError::Failed { attempts: 1, .. }),
            "{provider:?}: {err}"
        );
        assert_eq!(cdn.requests(), 1, "{provider:?}");
        assert_eq!((purges(&metrics, "ok"), purges(&metrics, "error")), (0, 1));
    }
}

#[tokio::test]
async fn feed_answers_carry_the_channel_label_the_purge_names() {
    for (provider, header) in [
        (Provider::Cloudflare, Some("cache-tag")),
        (Provider::Fastly, Some("surrogate-key")),
        (Provider::Cloudfront, None),
    ] {
        let keys = keys();
        let cdn = CdnStandIn::start(provider, &keys.token, &keys.secret).await;
        let zip = pattern(2_000);
        let beta = pattern(2_100);
        let mut fx = Fixture::new()
            .file(
                "releases/latest/latest-mac.yml",
                channel_yml("1.0.0", &[("App-1.0.0-mac.zip", &zip)], None),
            )
            .file(
                "releases/latest/beta-mac.yml",
                channel_yml("1.1.0-beta.1", &[("App-1.1.0-beta.1-mac.zip", &beta)], None),
            );
        fx.config.cdn = Some(cdn_config(&cdn));
        let secret = Some(SecretString::from(keys.token.clone()));
        let secrets = Secrets {
            cloudflare_api_token: secret.clone(),
            fastly_api_token: secret,
            cdn_aws_credentials: Some(aws_sdk_s3::config::Credentials::new(
                &keys.token,
                &keys.secret,
                None,
                None,
                "test",
            )),
            ..fx.secrets()
        };
        let state = release_edge::App::build(fx.config.clone(), secrets).expect("state");
        let router = release_edge::app(state.clone());
        for (path, json, channel) in [
            ("/update/darwin/x64/0.1.0/latest-mac.yml", false, "latest"),
            ("/update/darwin/x64/0.1.0?channel=beta", false, "beta"),
            ("/update/darwin/x64/0.1.0?channel=beta", true, "beta"),
            ("/update/darwin/x64/9.9.9", true, "latest"),
            ("/latest/mac/x64?format=zip", false, "latest"),
            ("/latest/mac/x64?format=zip&channel=beta", false, "beta"),
        ] {
            let headers: &[(&str, &str)] = if json {
                &[("accept", "application/json")]
            } else {
                &[]
            };
            let reply = crate::support::request(&router, "GET", path, headers).await;
            assert!(
                reply.status.is_success() || reply.status == 302,
                "{path}: {}",
                reply.status
            );
            for name in ["cache-tag", "surrogate-key"] {
                let want = (Some(name) == header).then(|| format!("release-edge-{channel}"));
                let got = reply
                    .headers
                    .get(name)
                    .map(|v| v.to_str().expect("ascii").to_owned());
                assert_eq!(got, want, "{provider:?} {path} {name}");
            }
        }
        // What the policy code calls after a change: the channel's label, purged.
        if let Some(cdn_of_state) = &state.cdn {
            cdn_of_state
                .purge_channel(&Channel::parse("beta").expect("beta"), ChangeKind::Policy)
                .await
                .expect("purged");
        }
        assert_eq!(cdn.requests(), 1, "{provider:?}");
        assert_eq!(
            state.metrics.cdn_purges.with_label_values(&["ok"]).get(),
            1,
            "{provider:?}"
        );
    }
}
