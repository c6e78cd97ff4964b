//! `release-edge mirror --from-github` against the GitHub stand-in: every protocol answered
//! from the store exactly as GitHub answered it (and with GitHub gone), a second run that
//! copies nothing, a run killed mid-download that the next one resumes without copying
//! anything twice, corrupt releases refused whole, a private repository, GitHub's rate
//! limit waited out, and `release-edge status`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use release_edge::clock::Clock;
use release_edge::config::{CacheConfig, FallbackReason, GithubConfig, StoreKind};
use release_edge::metrics::Metrics;
use release_edge::mirror::{self, Options, Outcome, Report};
use release_edge::origin::github::GitHubOrigin;
use release_edge::release::channel::Channel;
use release_edge::store::Store;
use secrecy::SecretString;
use sha2::Digest;

use crate::github_standin::{GitHubStandIn, Host, ReleaseSpec};
use crate::publish::{cli, ok};
use crate::support::{Fixture, Reply, channel_yml, get, output, pattern, request};

/// What the stand-in's repository holds, by (tag, asset name).
struct Repo {
    assets: BTreeMap<(String, String), Vec<u8>>,
}

impl Repo {
    fn bytes(&self, tag: &str, name: &str) -> &[u8] {
        &self.assets[&(tag.to_owned(), name.to_owned())]
    }

    /// Every asset of the releases that are served (not the draft).
    fn served(&self) -> impl Iterator<Item = (&str, &str, &[u8])> {
        self.assets
            .iter()
            .filter(|((tag, _), _)| tag != "v2.0.0")
            .map(|((tag, name), bytes)| (tag.as_str(), name.as_str(), bytes.as_slice()))
    }
}

fn sha1_hex(bytes: &[u8]) -> String {
    sha1::Sha1::digest(bytes)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// Adds a release and remembers its assets.
fn add(gh: &GitHubStandIn, repo: &mut Repo, spec: ReleaseSpec) {
    for (name, bytes) in &spec.assets {
        repo.assets
            .insert((spec.tag.clone(), name.clone()), bytes.clone());
    }
    gh.add_release(spec);
}

/// A repository as electron-builder, Squirrel, Tauri and Velopack publish to GitHub:
/// - v1.0.0: macOS (zip, dmg, blockmap), Windows (NSIS exe, blockmap, Squirrel), Linux;
/// - v1.1.0: macOS with a signature, Windows, Squirrel with a delta, a Tauri manifest with
///   github.com URLs, and no Linux build (Linux users keep 1.0.0's);
/// - v1.2.0-beta.1, a pre-release: macOS on the beta channel and a Velopack feed;
/// - v2.0.0, a draft, never mirrored.
fn publish_repo(gh: &GitHubStandIn) -> Repo {
    let mut repo = Repo {
        assets: BTreeMap::new(),
    };
    let (zip10, dmg10, exe10) = (pattern(300_000), pattern(40_000), pattern(120_000));
    let (app10, nupkg10) = (pattern(90_000), pattern(25_000));
    add(
        gh,
        &mut repo,
        ReleaseSpec::new("v1.0.0")
            .asset(
                "latest-mac.yml",
                channel_yml(
                    "1.0.0",
                    &[
                        ("App-1.0.0-arm64-mac.zip", &zip10),
                        ("App-1.0.0-arm64.dmg", &dmg10),
                    ],
                    Some(321),
                ),
            )
            .asset("App-1.0.0-arm64-mac.zip", zip10.clone())
            .asset("App-1.0.0-arm64-mac.zip.blockmap", pattern(321))
            .asset("App-1.0.0-arm64.dmg", dmg10)
            .asset(
                "latest.yml",
                channel_yml("1.0.0", &[("App Setup 1.0.0.exe", &exe10)], None),
            )
            .asset("App Setup 1.0.0.exe", exe10)
            .asset("App Setup 1.0.0.exe.blockmap", pattern(222))
            .asset(
                "latest-linux.yml",
                channel_yml("1.0.0", &[("App-1.0.0.AppImage", &app10)], None),
            )
            .asset("App-1.0.0.AppImage", app10)
            .asset(
                "RELEASES",
                format!(
                    "{} App-1.0.0-full.nupkg {}\n",
                    sha1_hex(&nupkg10),
                    nupkg10.len()
                ),
            )
            .asset("App-1.0.0-full.nupkg", nupkg10.clone()),
    );
    let (zip11, exe11) = (pattern(310_000), pattern(130_000));
    let (full11, delta11, tarball) = (pattern(26_000), pattern(3_000), pattern(77_000));
    let tarball_url = format!(
        "{}/acme/app/releases/download/v1.1.0/App_1.1.0_amd64.AppImage.tar.gz",
        gh.web_url()
    );
    let tauri = serde_json::json!({
        "version": "1.1.0",
        "notes": "Tauri build",
        "pub_date": "2026-11-02T12:00:00Z",
        "platforms": {
            "linux-x86_64": { "signature": "dW50cnVzdGVkIGNvbW1lbnQ=", "url": tarball_url },
        },
    });
    add(
        gh,
        &mut repo,
        ReleaseSpec::new("v1.1.0")
            .asset(
                "latest-mac.yml",
                channel_yml("1.1.0", &[("App-1.1.0-arm64-mac.zip", &zip11)], None),
            )
            .asset("App-1.1.0-arm64-mac.zip", zip11)
            .asset(
                "App-1.1.0-arm64-mac.zip.sig",
                "untrusted comment: signature from minisign\nRWQ=\n",
            )
            .asset(
                "latest.yml",
                channel_yml("1.1.0", &[("App Setup 1.1.0.exe", &exe11)], None),
            )
            .asset("App Setup 1.1.0.exe", exe11)
            .asset(
                "RELEASES",
                format!(
                    "{} App-1.0.0-full.nupkg {}\n{} App-1.1.0-delta.nupkg {}\n{} App-1.1.0-full.nupkg {}\n",
                    sha1_hex(&nupkg10),
                    nupkg10.len(),
                    sha1_hex(&delta11),
                    delta11.len(),
                    sha1_hex(&full11),
                    full11.len()
                ),
            )
            .asset("App-1.1.0-delta.nupkg", delta11)
            .asset("App-1.1.0-full.nupkg", full11)
            .asset("latest.json", tauri.to_string())
            .asset("App_1.1.0_amd64.AppImage.tar.gz", tarball),
    );
    let (zip12, vpk) = (pattern(50_000), pattern(33_000));
    let velopack = serde_json::json!({"Assets": [{
        "PackageId": "App", "Version": "1.2.0-beta.1", "Type": "Full",
        "FileName": "App-1.2.0-beta.1-full.nupkg",
        "SHA1": sha1_hex(&vpk), "SHA256": sha256_hex(&vpk), "Size": vpk.len(),
    }]});
    add(
        gh,
        &mut repo,
        ReleaseSpec::new("v1.2.0-beta.1")
            .prerelease()
            .asset(
                "beta-mac.yml",
                channel_yml(
                    "1.2.0-beta.1",
                    &[("App-1.2.0-beta.1-arm64-mac.zip", &zip12)],
                    None,
                ),
            )
            .asset("App-1.2.0-beta.1-arm64-mac.zip", zip12)
            .asset("releases.beta.json", velopack.to_string())
            .asset("App-1.2.0-beta.1-full.nupkg", vpk),
    );
    let draft = pattern(1_000);
    add(
        gh,
        &mut repo,
        ReleaseSpec::new("v2.0.0")
            .draft()
            .asset(
                "latest-mac.yml",
                channel_yml("2.0.0", &[("App-2.0.0-arm64-mac.zip", &draft)], None),
            )
            .asset("App-2.0.0-arm64-mac.zip", draft),
    );
    repo
}

/// The real binary on `fx`'s store, its `[github]` the stand-in, running `args` with the
/// work directory `work`.
pub fn github_cli(fx: &Fixture, gh: &GitHubStandIn, args: &[&str], work: &Path) -> Command {
    let mut cmd = cli(fx);
    cmd.args(args)
        .arg("--work-dir")
        .arg(work)
        .env("RELEASE_EDGE_GITHUB__OWNER", GitHubStandIn::OWNER)
        .env("RELEASE_EDGE_GITHUB__REPO", GitHubStandIn::REPO)
        .env("RELEASE_EDGE_GITHUB__API_URL", gh.api_url());
    cmd
}

fn github_config(api_url: String) -> GithubConfig {
    GithubConfig {
        owner: GitHubStandIn::OWNER.into(),
        repo: GitHubStandIn::REPO.into(),
        api_url,
        private: None,
        fallback_on: FallbackReason::ALL.to_vec(),
        timeout: Duration::from_secs(5),
        refresh_interval: Duration::from_secs(60),
    }
}

/// An API URL nothing listens on: GitHub gone.
fn nowhere() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}

fn origin(gh: &GitHubStandIn, token: Option<&str>, clock: &Clock) -> GitHubOrigin {
    GitHubOrigin::new(
        &github_config(gh.api_url()),
        &CacheConfig::default(),
        token.map(|t| SecretString::from(t.to_owned())),
        clock.clone(),
        Arc::new(Metrics::new().expect("metrics")),
    )
    .expect("origin")
}

fn store_of(fx: &Fixture) -> Store {
    Store::with_credentials(
        &fx.config.store,
        &fx.config.cache,
        fx.secrets().s3_credentials,
        Clock::system(),
    )
    .expect("store")
}

fn options(work: &Path) -> Options {
    Options {
        since: None,
        channel: None,
        work_dir: work.to_path_buf(),
    }
}

async fn run(fx: &Fixture, github: &GitHubOrigin, options: &Options) -> Report {
    mirror::mirror(&store_of(fx), github, options, &Clock::system())
        .await
        .expect("mirror")
}

/// Update checks and links of every protocol, and what each needs in the request.
const CHECKS: &[(&str, bool)] = &[
    ("/update/darwin/arm64/0.9.0/latest-mac.yml", false),
    ("/update/darwin/arm64/0.9.0", true),
    ("/update/darwin/arm64/0.9.0/beta-mac.yml", false),
    ("/update/darwin/arm64/0.9.0?channel=beta", true),
    ("/update/win32/x64/0.9.0/latest.yml", false),
    ("/update/win32/x64/0.9.0/RELEASES", false),
    ("/update/win32/x64/0.9.0/RELEASES?channel=beta", false),
    ("/update/linux/x64/0.9.0/latest-linux.yml", false),
    ("/update/linux/x64/0.9.0/beta-linux.yml", false),
    ("/update/win32/x64/1.1.0", true),
    ("/latest/mac/arm64", false),
    ("/latest/windows/x64", false),
    ("/latest/linux/x64", false),
    ("/latest/mac/arm64?channel=beta", false),
];

async fn answers(router: &axum::Router) -> Vec<(String, u16, String, Vec<u8>)> {
    let mut out = Vec::new();
    for (path, json) in CHECKS {
        let headers: &[(&str, &str)] = if *json {
            &[("accept", "application/json")]
        } else {
            &[]
        };
        let reply: Reply = request(router, "GET", path, headers).await;
        let location = reply
            .headers
            .get("location")
            .map(|v| v.to_str().expect("ascii").to_owned())
            .unwrap_or_default();
        out.push((
            (*path).to_owned(),
            reply.status.as_u16(),
            location,
            reply.body.to_vec(),
        ));
    }
    out
}

/// Every store key under `releases/` of a fixture (fs root or bucket directory).
fn keys(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.join("releases")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root).expect("under root");
                let rel = rel.to_string_lossy().to_string();
                // s3s-fs keeps its metadata beside the objects.
                if !rel.contains(".s3s") && !rel.ends_with(".metadata.json") {
                    out.push(rel);
                }
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_mirrored_store_answers_every_protocol_as_github_did_with_github_gone() {
    let gh = GitHubStandIn::start().await;
    let repo = publish_repo(&gh);
    // What the GitHub origin alone answers, before anything is mirrored.
    let mut alone = Fixture::new();
    alone.config.store.kind = StoreKind::None;
    alone.config.github = Some(github_config(gh.api_url()));
    let from_github = answers(&alone.router()).await;
    assert!(
        from_github
            .iter()
            .all(|(path, status, _, _)| *status < 300 || path.starts_with("/latest")),
        "GitHub alone answers every check: {:?}",
        from_github
            .iter()
            .map(|(p, s, _, _)| (p, s))
            .collect::<Vec<_>>()
    );

    for fx in Fixture::both() {
        let kind = fx.kind();
        let work = tempfile::tempdir().expect("work dir");
        let github = origin(&gh, None, &Clock::system());
        let report = run(&fx, &github, &options(work.path())).await;
        let outcomes: Vec<(String, String, bool)> = report
            .releases
            .iter()
            .map(|(v, c, o)| {
                (
                    v.to_string(),
                    c.to_string(),
                    matches!(o, Outcome::Copied { .. }),
                )
            })
            .collect();
        assert_eq!(
            outcomes,
            [
                ("1.2.0-beta.1".to_owned(), "beta".to_owned(), true),
                ("1.1.0".into(), "latest".into(), true),
                ("1.0.0".into(), "latest".into(), true),
            ],
            "{kind}: drafts never; the pre-release in its channel"
        );
        assert!(report.kept.is_empty(), "{kind}: {:?}", report.kept);
        let latest: Vec<&str> = report.channel_files.iter().map(String::as_str).collect();
        assert_eq!(
            latest,
            [
                "releases/latest/RELEASES-beta",
                "releases/latest/beta-linux.yml",
                "releases/latest/beta-mac.yml",
                "releases/latest/beta.json",
                "releases/latest/beta.yml",
                "releases/latest/releases.beta.json",
                "releases/latest/RELEASES",
                "releases/latest/latest-linux.yml",
                "releases/latest/latest-mac.yml",
                "releases/latest/latest.json",
                "releases/latest/latest.yml",
            ],
            "{kind}"
        );

        // Served with GitHub gone: the store alone answers, and answers as GitHub did.
        let mut config = fx.config.clone();
        config.github = Some(github_config(nowhere()));
        let router =
            release_edge::app(release_edge::App::build(config, fx.secrets()).expect("state"));
        let from_store = answers(&router).await;
        for (github, store) in from_github.iter().zip(&from_store) {
            let path = &github.0;
            assert_eq!(
                (store.1, &store.2, String::from_utf8_lossy(&store.3)),
                (github.1, &github.2, String::from_utf8_lossy(&github.3)),
                "{kind} {path}: as GitHub answered"
            );
        }
        let linux = get(
            &router,
            "/update/linux/x86_64/0.9.0",
            &[("accept", "application/json")],
        )
        .await;
        assert_eq!(
            linux.json()["url"],
            "http://127.0.0.1:8080/releases/v1.1.0/App_1.1.0_amd64.AppImage.tar.gz",
            "{kind}: the Tauri download comes from the store, no longer from github.com"
        );
        // The channel files as the bucket layout serves them: GitHub's assets.
        for (path, tag, asset) in [
            (
                "/releases/latest/latest-mac.yml",
                "v1.1.0",
                "latest-mac.yml",
            ),
            ("/releases/latest/beta.yml", "v1.1.0", "latest.yml"),
            (
                "/releases/latest/beta-linux.yml",
                "v1.0.0",
                "latest-linux.yml",
            ),
            ("/releases/latest/RELEASES-beta", "v1.1.0", "RELEASES"),
        ] {
            let reply = get(&router, path, &[]).await;
            assert_eq!(reply.status, 200, "{kind} {path}");
            assert_eq!(reply.body.as_ref(), repo.bytes(tag, asset), "{kind} {path}");
        }
        // Every artifact, byte for byte, whatever its name.
        for (tag, name, bytes) in repo.served() {
            let path = format!("/releases/{tag}/{}", name.replace(' ', "%20"));
            let reply = get(&router, &path, &[]).await;
            assert_eq!(reply.status, 200, "{kind} {path}");
            if name != "latest.json" {
                assert_eq!(reply.body.as_ref(), bytes, "{kind} {path}");
            }
        }
        assert!(
            keys(fx.root()).iter().all(|k| !k.contains("2.0.0")),
            "{kind}: the draft is not in the store"
        );
        assert_eq!(
            get(&router, "/releases/latest/releases.beta.json", &[])
                .await
                .body
                .as_ref(),
            repo.bytes("v1.2.0-beta.1", "releases.beta.json"),
            "{kind}: Velopack's feed"
        );

        // A second run copies nothing: one conditional request for the list (a 200 when
        // the download counts in it changed, as GitHub's do), no download.
        gh.clear_hits();
        let puts_before = fx.s3.as_ref().map(|s3| s3.requests().len());
        let before = keys(fx.root());
        let again = run(&fx, &github, &options(work.path())).await;
        assert!(
            again
                .releases
                .iter()
                .all(|(_, _, o)| *o == Outcome::InStore),
            "{kind}: {:?}",
            again.releases
        );
        assert!(again.channel_files.is_empty(), "{kind}");
        assert_eq!(again.downloaded, 0, "{kind}");
        let hits: Vec<(Host, bool)> = gh
            .hits()
            .iter()
            .map(|h| (h.host, h.if_none_match.is_some()))
            .collect();
        assert_eq!(hits, [(Host::Api, true)], "{kind}");
        // And with nothing changed on GitHub since, that request is a free 304.
        gh.clear_hits();
        run(&fx, &github, &options(work.path())).await;
        let statuses: Vec<(Host, u16)> = gh.hits().iter().map(|h| (h.host, h.status)).collect();
        assert_eq!(statuses, [(Host::Api, 304)], "{kind}");
        assert_eq!(keys(fx.root()), before, "{kind}");
        if let (Some(s3), Some(n)) = (&fx.s3, puts_before) {
            let writes: Vec<_> = s3.requests()[n..]
                .iter()
                .filter(|r| r.method != "GET" && r.method != "HEAD")
                .cloned()
                .collect();
            assert!(writes.is_empty(), "s3: the second run wrote {writes:?}");
        }
    }
}

#[tokio::test]
async fn a_corrupt_release_is_refused_whole_and_never_reaches_the_channel() {
    let gh = GitHubStandIn::start().await;
    let good = pattern(20_000);
    gh.add_release(
        ReleaseSpec::new("v1.0.0")
            .asset(
                "latest-linux.yml",
                channel_yml("1.0.0", &[("App-1.0.0.AppImage", &good)], None),
            )
            .asset("App-1.0.0.AppImage", good.clone()),
    );
    // 1.1.0: the AppImage on GitHub is not the one its manifest describes (same size).
    let listed = pattern(30_000);
    let mut uploaded = listed.clone();
    uploaded[12_345] ^= 0x40;
    let deb = pattern(5_000);
    gh.add_release(
        ReleaseSpec::new("v1.1.0")
            .asset(
                "latest-linux.yml",
                channel_yml(
                    "1.1.0",
                    &[("App-1.1.0.deb", &deb), ("App-1.1.0.AppImage", &listed)],
                    None,
                ),
            )
            .asset("App-1.1.0.deb", deb)
            .asset("App-1.1.0.AppImage", uploaded),
    );
    // 1.2.0-beta.1: a size that differs from its manifest's.
    let beta = pattern(9_000);
    gh.add_release(
        ReleaseSpec::new("v1.2.0-beta.1")
            .prerelease()
            .asset(
                "beta-linux.yml",
                channel_yml(
                    "1.2.0-beta.1",
                    &[("App-1.2.0-beta.1.AppImage", &beta)],
                    None,
                ),
            )
            .asset("App-1.2.0-beta.1.AppImage", beta[..8_000].to_vec()),
    );
    for fx in Fixture::both() {
        let kind = fx.kind();
        let work = tempfile::tempdir().expect("work");
        let report = run(
            &fx,
            &origin(&gh, None, &Clock::system()),
            &options(work.path()),
        )
        .await;
        assert!(report.failed(), "{kind}");
        let outcome = |v: &str| {
            report
                .releases
                .iter()
                .find(|(version, _, _)| version.to_string() == v)
                .map(|(_, _, o)| o.clone())
                .expect("in the report")
        };
        assert!(
            matches!(outcome("1.1.0"), Outcome::Refused(ref r) if r.contains("App-1.1.0.AppImage: sha512") && r.contains("latest-linux.yml")),
            "{kind}: {:?}",
            outcome("1.1.0")
        );
        assert!(
            matches!(outcome("1.2.0-beta.1"), Outcome::Refused(ref r) if r.contains("8000 bytes on GitHub, beta-linux.yml says 9000")),
            "{kind}: {:?}",
            outcome("1.2.0-beta.1")
        );
        assert!(matches!(outcome("1.0.0"), Outcome::Copied { .. }), "{kind}");
        let stored = keys(fx.root());
        assert_eq!(
            stored,
            [
                // Both channels serve the newest good release: beta users get stable ones.
                "releases/latest/beta-linux.yml",
                "releases/latest/latest-linux.yml",
                "releases/v1.0.0/App-1.0.0.AppImage",
                "releases/v1.0.0/latest-linux.yml",
            ],
            "{kind}: nothing of the refused releases, not even their good files"
        );
        assert_eq!(
            report.kept,
            [
                "releases/latest/beta-linux.yml: GitHub's is v1.2.0-beta.1's, which is not in the store; v1.0.0 serves it",
                "releases/latest/latest-linux.yml: GitHub's is v1.1.0's, which is not in the store; v1.0.0 serves it",
            ],
            "{kind}"
        );
        let router = fx.router();
        let feed = get(&router, "/update/linux/x64/0.9.0/latest-linux.yml", &[]).await;
        assert!(
            String::from_utf8_lossy(&feed.body).contains("version: 1.0.0"),
            "{kind}: the channel stays on the last good release"
        );
        assert!(
            !work
                .path()
                .join("downloads")
                .read_dir()
                .expect("downloads")
                .any(|e| { e.is_ok_and(|e| e.metadata().is_ok_and(|m| m.len() == 30_000)) }),
            "{kind}: the corrupt download is not kept for a later run"
        );
    }
    // The command says so: exit status 2, the reason on stdout.
    let fx = Fixture::new();
    let work = tempfile::tempdir().expect("work");
    let cmd = github_cli(&fx, &gh, &["mirror", "--from-github"], work.path());
    let output = output(cmd).await;
    assert_eq!(output.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("v1.1.0 (latest): REFUSED"), "{stdout}");
    assert!(
        stdout.contains("v1.0.0 (latest): copied 2 file(s)"),
        "{stdout}"
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("some releases were refused"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn a_private_repository_is_mirrored_with_the_token_that_never_reaches_storage() {
    let gh = GitHubStandIn::start().await;
    let repo = publish_repo(&gh);
    gh.set_private(true);
    let fx = Fixture::new();
    let work = tempfile::tempdir().expect("work");
    let without = mirror::mirror(
        &store_of(&fx),
        &origin(&gh, None, &Clock::system()),
        &options(work.path()),
        &Clock::system(),
    )
    .await;
    let err = format!("{:#}", without.expect_err("no token, no repository"));
    assert!(err.contains("not on GitHub"), "{err}");
    gh.clear_hits();

    let report = run(
        &fx,
        &origin(&gh, Some(GitHubStandIn::TOKEN), &Clock::system()),
        &options(work.path()),
    )
    .await;
    assert!(!report.failed(), "{:?}", report.releases);
    for (tag, name, bytes) in repo.served() {
        if name != "latest.json" {
            let stored =
                std::fs::read(fx.root().join("releases").join(tag).join(name)).expect("mirrored");
            assert_eq!(stored, bytes, "{tag}/{name}");
        }
    }
    let bearer = format!("Bearer {}", GitHubStandIn::TOKEN);
    for hit in gh.hits() {
        match hit.host {
            Host::Api => assert_eq!(
                hit.authorization.as_deref(),
                Some(bearer.as_str()),
                "{hit:?}"
            ),
            Host::Storage => assert_eq!(hit.authorization, None, "{hit:?}"),
            Host::Web => panic!("a private repository's github.com URLs are not used: {hit:?}"),
        }
    }
    // The store serves the private Tauri download itself.
    let router = fx.router();
    let tauri = get(
        &router,
        "/update/linux/x86_64/0.9.0",
        &[("accept", "application/json")],
    )
    .await;
    assert_eq!(
        tauri.json()["url"],
        "http://127.0.0.1:8080/releases/v1.1.0/App_1.1.0_amd64.AppImage.tar.gz"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_s_rate_limit_is_waited_out_on_the_clock() {
    let gh = GitHubStandIn::start().await;
    publish_repo(&gh);
    gh.set_retry_after(Some(30));
    let fx = Fixture::new();
    let work = tempfile::tempdir().expect("work");
    let clock = Clock::manual();
    let github = origin(&gh, None, &clock);
    let store = store_of(&fx);
    let options = options(work.path());
    let running = {
        let clock = clock.clone();
        tokio::spawn(async move { mirror::mirror(&store, &github, &options, &clock).await })
    };
    // The listing is refused, and the mirror waits the 30 s GitHub asked for, on the clock.
    clock.until_sleeps(1).await;
    assert_eq!(clock.sleeps(), [Duration::from_secs(30)]);
    assert_eq!(gh.hits_on(Host::Api, "/repos/acme/app/releases").len(), 1);
    gh.set_retry_after(None);
    clock.advance(Duration::from_secs(30));
    let report = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("done once the wait is over")
        .expect("task")
        .expect("mirror");
    assert!(!report.failed());
    let statuses: Vec<u16> = gh
        .hits_on(Host::Api, "/repos/acme/app/releases")
        .iter()
        .map(|h| h.status)
        .collect();
    assert_eq!(statuses, [429, 200]);
}

#[tokio::test]
async fn since_and_channel_limit_what_is_copied_and_status_shows_where_each_version_lives() {
    let gh = GitHubStandIn::start().await;
    publish_repo(&gh);
    let old = pattern(2_000);
    gh.add_release(
        ReleaseSpec::new("v0.9.0")
            .asset(
                "latest-mac.yml",
                channel_yml("0.9.0", &[("App-0.9.0-arm64-mac.zip", &old)], None),
            )
            .asset("App-0.9.0-arm64-mac.zip", old),
    );
    let github = origin(&gh, None, &Clock::system());

    // The beta channel alone: its release, the stable releases its files come from
    // (beta.yml is 1.1.0's latest.yml, beta-linux.yml 1.0.0's latest-linux.yml), and only
    // beta's channel files.
    let fx = Fixture::new();
    let work = tempfile::tempdir().expect("work");
    let beta = run(
        &fx,
        &github,
        &Options {
            channel: Some(Channel::parse("beta").expect("channel")),
            ..options(work.path())
        },
    )
    .await;
    let copied: Vec<String> = beta
        .releases
        .iter()
        .map(|(v, _, _)| v.to_string())
        .collect();
    assert_eq!(copied, ["1.2.0-beta.1", "1.1.0", "1.0.0"]);
    assert!(
        beta.channel_files.iter().all(|k| k.contains("beta")),
        "{:?}",
        beta.channel_files
    );

    // --since: 0.9.0 is older and no channel file comes from it.
    let fx = Fixture::new();
    let since = run(
        &fx,
        &github,
        &Options {
            since: Some(semver::Version::new(1, 0, 0)),
            ..options(work.path())
        },
    )
    .await;
    let copied: Vec<String> = since
        .releases
        .iter()
        .map(|(v, _, _)| v.to_string())
        .collect();
    assert_eq!(copied, ["1.2.0-beta.1", "1.1.0", "1.0.0"]);

    // status, through the real binary: a version published straight to the store, one
    // whose copy is incomplete, and one only on GitHub.
    fx.write("releases/v1.3.0/latest.yml", "version: 1.3.0\n");
    std::fs::remove_file(fx.root().join("releases/v1.0.0/App-1.0.0.AppImage")).expect("rm");
    let status = |json: bool| {
        let args: &[&str] = if json {
            &["status", "--json"]
        } else {
            &["status"]
        };
        let cmd = github_cli(&fx, &gh, args, work.path());
        async {
            let output = output(cmd).await;
            ok(&output);
            output.stdout
        }
    };
    let table = String::from_utf8(status(false).await).expect("utf-8");
    let rows: Vec<(&str, &str)> = table
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let version = l.split_whitespace().next().unwrap_or_default();
            let place = l.rsplit("  ").next().unwrap_or_default();
            (version, place)
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("1.3.0", "store"),
            ("1.2.0-beta.1", "both"),
            ("1.1.0", "both"),
            ("1.0.0", "both (store lacks 1)"),
            ("0.9.0", "github only (!)"),
        ],
        "{table}"
    );
    assert!(
        table.contains("1 version(s) only on GitHub, served only while GitHub answers: 0.9.0"),
        "{table}"
    );
    // What the server computes for the admin API: the same places, from its origins.
    let mut config = fx.config.clone();
    config.github = Some(github_config(gh.api_url()));
    let state = release_edge::App::build(config, fx.secrets()).expect("state");
    let places: Vec<(String, &str)> = release_edge::inventory::gather(&state.origins)
        .await
        .expect("gather")
        .iter()
        .map(|l| (l.version.to_string(), l.place.as_str()))
        .collect();
    assert_eq!(
        places,
        [
            ("1.3.0".to_owned(), "store"),
            ("1.2.0-beta.1".into(), "both"),
            ("1.1.0".into(), "both"),
            ("1.0.0".into(), "both"),
            ("0.9.0".into(), "github"),
        ]
    );
    let json: serde_json::Value = serde_json::from_slice(&status(true).await).expect("json");
    assert_eq!(json[1]["version"], "1.2.0-beta.1");
    assert_eq!(json[1]["place"], "both");
    assert_eq!(
        json[1]["store"], json[1]["github"],
        "same files, same sizes"
    );
    assert_eq!(json[2]["version"], "1.1.0");
    assert_eq!(
        json[2]["store"]["files"], json[2]["github"]["files"],
        "the same files (its Tauri manifest now points at the store: other bytes)"
    );
    assert_eq!(
        json[3]["missing_in_store"],
        serde_json::json!(["App-1.0.0.AppImage"])
    );
    assert_eq!(json[4]["github_only"], true);
    assert_eq!(json[4]["github"]["files"], 2);
}

/// Files of the work directory's downloads over 1 MiB.
fn downloading(work: &Path) -> bool {
    std::fs::read_dir(work.join("downloads"))
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.metadata().is_ok_and(|m| m.len() > 1 << 20))
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_killed_mid_download_resumes_and_copies_nothing_twice() {
    let gh = GitHubStandIn::start().await;
    // The older release holds a large AppImage; the newer one is small and is copied first.
    let big = pattern(128 << 20);
    let small = pattern(4_000);
    gh.add_release(
        ReleaseSpec::new("v1.0.0")
            .asset(
                "latest-linux.yml",
                channel_yml(
                    "1.0.0",
                    &[("App-1.0.0.AppImage", &big), ("App-1.0.0.deb", &small)],
                    None,
                ),
            )
            .asset("App-1.0.0.AppImage", big.clone())
            .asset("App-1.0.0.deb", small.clone()),
    );
    let mac = pattern(6_000);
    gh.add_release(
        ReleaseSpec::new("v1.1.0")
            .asset(
                "latest-mac.yml",
                channel_yml("1.1.0", &[("App-1.1.0-mac.zip", &mac)], None),
            )
            .asset("App-1.1.0-mac.zip", mac),
    );
    let fx = Fixture::s3();
    let work = tempfile::tempdir().expect("work");
    let mirror_cmd = || github_cli(&fx, &gh, &["mirror", "--from-github"], work.path());
    let mut child = mirror_cmd()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mirror");
    let start = Instant::now();
    let killed_mid_download = loop {
        if downloading(work.path()) {
            child.kill().expect("kill");
            break true;
        }
        if child.try_wait().expect("try_wait").is_some()
            || start.elapsed() > Duration::from_secs(60)
        {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let _ = child.wait();
    assert!(
        killed_mid_download,
        "the mirror was caught downloading the large asset"
    );
    let s3 = fx.s3.as_ref().expect("s3");
    // Objects written: a PutObject, or the CompleteMultipartUpload that makes a multipart
    // upload visible (its parts are not objects).
    let puts = |requests: &[crate::support::S3Request]| -> Vec<String> {
        requests
            .iter()
            .filter(|r| {
                let query = r.target.split_once('?').map(|(_, q)| q).unwrap_or_default();
                (r.method == "PUT" && !query.contains("uploadId="))
                    || (r.method == "POST" && query.contains("uploadId="))
            })
            .map(|r| r.target.split('?').next().unwrap_or_default().to_owned())
            .collect()
    };
    let first_writes = puts(&s3.requests());
    assert!(
        first_writes
            .iter()
            .any(|t| t.ends_with("v1.1.0/App-1.1.0-mac.zip")),
        "the newer release was written before the kill: {first_writes:?}"
    );
    assert!(
        first_writes
            .iter()
            .all(|t| !t.contains("v1.0.0") && !t.contains("latest/")),
        "nothing of the release being downloaded, no channel file: {first_writes:?}"
    );
    // What was served stays served: no channel file yet, so nothing half-done is visible.
    assert_eq!(
        get(&fx.router(), "/releases/latest/latest-linux.yml", &[])
            .await
            .status,
        404
    );

    let output = output(mirror_cmd()).await;
    ok(&output);
    // Across both runs each asset's bytes were fetched once: the large one resumed with a
    // Range from where the kill left it, everything downloaded before the kill not again.
    let mut requests: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for hit in gh.hits_on(Host::Storage, "/") {
        assert_eq!(hit.status, 206, "{hit:?}");
        requests
            .entry(hit.path.clone())
            .or_default()
            .push(hit.range.clone().expect("a ranged request"));
    }
    let (twice, once): (Vec<&Vec<String>>, Vec<&Vec<String>>) =
        requests.values().partition(|r| r.len() == 2);
    assert_eq!(
        twice.len(),
        1,
        "only the interrupted asset twice: {requests:?}"
    );
    assert_eq!(once.len(), 4, "every other asset once: {requests:?}");
    let last = big.len() - 1;
    assert_eq!(twice[0][0], format!("bytes=0-{last}"));
    let from: u64 = twice[0][1]
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix(&format!("-{last}")))
        .and_then(|n| n.parse().ok())
        .expect("bytes=N-last");
    assert!(from > 1 << 20, "resumed at {from}, not from the start");
    assert!(
        once.iter().all(|r| r[0].starts_with("bytes=0-")),
        "{requests:?}"
    );
    let all_writes = puts(&s3.requests());
    let mut written = all_writes.clone();
    written.sort();
    written.dedup();
    assert_eq!(
        written.len(),
        all_writes.len(),
        "no key written twice: {all_writes:?}"
    );
    let router = fx.router();
    let image = get(&router, "/releases/v1.0.0/App-1.0.0.AppImage", &[]).await;
    assert!(
        image.body.as_ref() == big.as_slice(),
        "byte-exact after the resume"
    );
    let feed = get(&router, "/update/linux/x64/0.9.0/latest-linux.yml", &[]).await;
    assert!(String::from_utf8_lossy(&feed.body).contains("version: 1.0.0"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("v1.1.0 (latest): already in the store"),
        "{stdout}"
    );
}
