//! The `release-edge` binary: parses the command line and hands off to the library.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::{Parser, Subcommand};
use release_edge::cdn::{Cdn, Change, ChangeKind, PurgeError};
use release_edge::clock::Clock;
use release_edge::config::{Config, Secrets, StoreKind};
use release_edge::manage::{self, Actor, Manager};
use release_edge::metrics::Metrics;
use release_edge::origin::github::GitHubOrigin;
use release_edge::release::channel::Channel;
use release_edge::release::policy::ChannelPolicy;
use release_edge::server::{Server, shutdown_signal};
use release_edge::store::{Precondition, Store};
use release_edge::{App, inventory, mirror, publish, telemetry};

/// A release-distribution server for desktop apps.
#[derive(Parser)]
#[command(name = "release-edge", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Config file (default: config/release-edge.toml when it exists).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate the configuration and print the effective result (secrets masked).
    CheckConfig {
        /// Config file (default: config/release-edge.toml when it exists).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Upload an electron-builder output folder as a release: artifacts first, then the
    /// version's channel files, then the channel's. Checks every sha512 before writing.
    Publish {
        /// The version being published (must match the channel files).
        #[arg(long)]
        version: String,
        /// The channel (default: latest).
        #[arg(long, default_value = "latest")]
        channel: String,
        /// Config file naming the store (default: config/release-edge.toml when it exists).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The folder electron-builder wrote (`dist/`).
        dir: PathBuf,
    },
    /// Serve an earlier version again: copy its channel files over the channel's.
    Rollback {
        /// The channel.
        #[arg(long, default_value = "latest")]
        channel: String,
        /// The version to serve.
        #[arg(long)]
        to: String,
        /// Config file naming the store (default: config/release-edge.toml when it exists).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Copy the GitHub releases of `[github]` into the store: artifacts first, each checked
    /// against the release's manifests, channel files last. Resumable and idempotent.
    Mirror {
        /// Copy from GitHub Releases (the one source there is).
        #[arg(long, required = true)]
        from_github: bool,
        /// Only releases of this version or newer (and those a channel file comes from).
        #[arg(long)]
        since: Option<String>,
        /// Only this channel's releases and channel files.
        #[arg(long)]
        channel: Option<String>,
        /// Where downloads wait until verified and the list of releases is kept between runs
        /// (default: release-edge-mirror/{owner}-{repo} in the system's temporary directory).
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// Config file naming the store and the repository.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// List every version and where it lives (in the store, on GitHub, or both), then each
    /// channel: what it serves, its current and previous release, its policy.
    Status {
        /// Print JSON (the versions) instead of a table.
        #[arg(long)]
        json: bool,
        /// Only this channel in the channels' part.
        #[arg(long)]
        channel: Option<String>,
        /// The mirror's work directory, whose cached list of releases is revalidated.
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// Config file naming the store and the repository.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Show or replace a channel's release policy (policy/{channel}.json).
    Policy {
        #[command(subcommand)]
        action: PolicyAction,
    },
    /// Stop offering the channel's current release to anyone who does not run it yet.
    Halt(ChannelArgs),
    /// Offer a halted release again (at its rollout percentage).
    Resume(ChannelArgs),
    /// Offer the channel's current release to a share of its clients; the others get the
    /// release before it.
    Rollout {
        /// 0 to 100.
        #[arg(long)]
        percentage: String,
        #[command(flatten)]
        target: ChannelArgs,
    },
    /// Never offer VERSION again (its files stay downloadable); the channel falls back to
    /// its newest version not yanked.
    Yank {
        /// The version.
        version: String,
        /// Why (kept in the policy and the audit trail).
        #[arg(long)]
        reason: String,
        /// The channel (default: the version's own: 1.2.0-beta.1 → beta).
        #[arg(long)]
        channel: Option<String>,
        /// Config file naming the store (default: config/release-edge.toml when it exists).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Offer a yanked VERSION again.
    Unyank {
        /// The version.
        version: String,
        /// The channel (default: the version's own).
        #[arg(long)]
        channel: Option<String>,
        /// Config file naming the store (default: config/release-edge.toml when it exists).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Ask the server this config describes whether it is healthy, for container health
    /// checks in an image with no shell or curl: GET PATH on `listen` (loopback when it is
    /// the unspecified address; HTTPS when `[tls]` is set); exit 0 on a 2xx, 1 otherwise.
    Healthcheck {
        /// Config file (default: config/release-edge.toml when it exists).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The path asked for: `/healthz` (liveness) or `/readyz` (an origin answers).
        #[arg(long, default_value = "/healthz")]
        path: String,
        /// How long the answer may take.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

/// The channel a policy command acts on, and the store.
#[derive(clap::Args)]
struct ChannelArgs {
    /// The channel.
    #[arg(long, default_value = "latest")]
    channel: String,
    /// Config file naming the store (default: config/release-edge.toml when it exists).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum PolicyAction {
    /// Print the channel's policy document and its ETag.
    Show(ChannelArgs),
    /// Replace the channel's policy document with FILE (`-`: standard input), checked as
    /// the admin API checks it.
    Set {
        /// The new document (JSON).
        file: PathBuf,
        /// Replace only if the stored document still has this ETag (from `policy show`);
        /// without it, the document read just before the write is replaced.
        #[arg(long)]
        if_match: Option<String>,
        #[command(flatten)]
        target: ChannelArgs,
    },
}

/// Exit status of a command that did its work but could not purge the CDN.
const EXIT_PURGE_FAILED: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config } => serve(config),
        Command::CheckConfig { config } => check_config(config),
        Command::Healthcheck {
            config,
            path,
            timeout,
        } => return healthcheck(config, &path, timeout),
        Command::Publish {
            version,
            channel,
            config,
            dir,
        } => with_tools(config, |tools| async move {
            let summary = publish::publish(&tools.store, &dir, &version, &channel).await?;
            println!(
                "published {version} on {channel}: {} uploaded, {} already there; {}",
                summary.uploaded.len(),
                summary.unchanged.len(),
                summary.channel_manifests.join(", ")
            );
            tools
                .purge(Change {
                    kind: ChangeKind::Publish,
                    channels: BTreeSet::from([Channel::parse(&channel)?]),
                    files: summary.channel_manifests.into_iter().collect(),
                })
                .await
        }),
        Command::Rollback {
            channel,
            to,
            config,
        } => with_tools(config, |tools| async move {
            let written = Manager::new(tools.store.clone())
                .rollback(&channel, &to, &Actor::cli(), SystemTime::now())
                .await?;
            println!("{channel} now serves {to}: {}", written.join(", "));
            tools
                .purge(Change {
                    kind: ChangeKind::Rollback,
                    channels: BTreeSet::from([Channel::parse(&channel)?]),
                    files: written.into_iter().collect(),
                })
                .await
        }),
        Command::Mirror {
            from_github: _,
            since,
            channel,
            work_dir,
            config,
        } => with_tools(config, |tools| async move {
            let github = tools.github()?;
            let repo = tools.config.github.as_ref().context("no [github]")?;
            let options = mirror::Options {
                since: since
                    .map(|s| {
                        release_edge::release::parse_version(&s)
                            .with_context(|| format!("--since `{s}` is not a semver version"))
                    })
                    .transpose()?,
                channel: channel.as_deref().map(Channel::parse).transpose()?,
                work_dir: work_dir
                    .unwrap_or_else(|| mirror::Options::default_work_dir(&repo.owner, &repo.repo)),
            };
            let report = mirror::mirror(&tools.store, &github, &options, &tools.clock).await?;
            for (version, channel, outcome) in &report.releases {
                let what = match outcome {
                    mirror::Outcome::InStore => "already in the store".to_owned(),
                    mirror::Outcome::Copied { files, bytes } => format!(
                        "copied {} file(s), {}",
                        files.len(),
                        inventory::human_bytes(*bytes)
                    ),
                    mirror::Outcome::Refused(reason) => format!("REFUSED: {reason}"),
                };
                println!("v{version} ({channel}): {what}");
            }
            for note in &report.kept {
                println!("kept {note}");
            }
            println!(
                "channel files written: {}; downloaded from GitHub: {}",
                if report.channel_files.is_empty() {
                    "none".to_owned()
                } else {
                    report.channel_files.join(", ")
                },
                inventory::human_bytes(report.downloaded)
            );
            let purged = tools.purge(report.change()).await;
            anyhow::ensure!(
                !report.failed(),
                "some releases were refused (above); nothing of them was written"
            );
            purged
        }),
        Command::Policy { action } => policy_command(action),
        Command::Halt(target) => with_channel(target, |m, channel, who, at| async move {
            m.halt(&channel, &who, at).await
        }),
        Command::Resume(target) => with_channel(target, |m, channel, who, at| async move {
            m.resume(&channel, &who, at).await
        }),
        Command::Rollout { percentage, target } => {
            with_channel(target, |m, channel, who, at| async move {
                let value = serde_json::from_str(&percentage)
                    .unwrap_or(serde_json::Value::String(percentage));
                m.rollout(&channel, &value, &who, at).await
            })
        }
        Command::Yank {
            version,
            reason,
            channel,
            config,
        } => with_tools(config, |tools| async move {
            let change = Manager::new(tools.store.clone())
                .yank(
                    &version,
                    channel.as_deref(),
                    &reason,
                    &Actor::cli(),
                    SystemTime::now(),
                )
                .await?;
            changed(&tools, &change).await
        }),
        Command::Unyank {
            version,
            channel,
            config,
        } => with_tools(config, |tools| async move {
            let change = Manager::new(tools.store.clone())
                .unyank(
                    &version,
                    channel.as_deref(),
                    &Actor::cli(),
                    SystemTime::now(),
                )
                .await?;
            changed(&tools, &change).await
        }),
        Command::Status {
            json,
            channel,
            work_dir,
            config,
        } => with_tools(config, |tools| async move {
            let store = inventory::store_versions(&tools.store).await?;
            let github = match &tools.config.github {
                Some(repo) => {
                    let work_dir = work_dir.unwrap_or_else(|| {
                        mirror::Options::default_work_dir(&repo.owner, &repo.repo)
                    });
                    let cached = mirror::cached_list(&work_dir).await;
                    match tools.github()?.list_every_release(cached.as_ref()).await {
                        Ok(list) => list.servable(),
                        // GitHub unreachable or rate-limited: the list the mirror kept.
                        Err(err) => match cached {
                            Some(list) => {
                                eprintln!(
                                    "GitHub: {err}; showing its releases as the last mirror run saw them"
                                );
                                list.servable()
                            }
                            None => {
                                return Err(anyhow::Error::new(err)
                                    .context("listing the releases on GitHub"));
                            }
                        },
                    }
                }
                None => Vec::new(),
            };
            let locations = inventory::locate(&store, &github);
            if json {
                println!("{}", serde_json::to_string_pretty(&locations)?);
            } else {
                print!("{}", inventory::render(&locations));
                let inventory = Manager::new(tools.store.clone())
                    .inventory(&locations)
                    .await?;
                print_channels(&inventory, channel.as_deref());
            }
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if matches!(err.downcast_ref(), Some(PurgeError::Failed { .. })) => {
            eprintln!("release-edge: {err:#}");
            ExitCode::from(EXIT_PURGE_FAILED)
        }
        Err(err) => {
            eprintln!("release-edge: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn serve(config: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Config::load(config.as_deref()).context("configuration")?;
    telemetry::init(&config.log);
    // File reads run on the blocking pool, one task per 64 KiB chunk. Its default ceiling
    // (512 threads) lets 200 concurrent downloads grow hundreds of threads, each with stack
    // and allocator caches; 64 keep the disk (or page cache) busy with a fraction of the
    // memory (benches/load.sh, peak RSS with 200 clients).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(64)
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let state = App::build(config, Secrets::from_env())?;
        let server = Server::bind(state.clone())
            .await
            .with_context(|| format!("starting the listener on {}", state.config.listen))?;
        tracing::info!(
            listen = %server.local_addr()?,
            metrics = ?server.metrics_addr(),
            admin = ?server.admin_addr(),
            origins = %state.origins.describe(),
            version = env!("CARGO_PKG_VERSION"),
            "release-edge listening"
        );
        server.run(shutdown_signal()).await;
        tracing::info!("stopped");
        anyhow::Ok(())
    })
}

/// What a store command works with.
struct Tools {
    config: Config,
    secrets: Secrets,
    store: Store,
    cdn: Option<Cdn>,
    clock: Clock,
    metrics: Arc<Metrics>,
}

impl Tools {
    /// The GitHub origin of `[github]`, with `GITHUB_TOKEN`.
    fn github(&self) -> anyhow::Result<GitHubOrigin> {
        let repo = self.config.github.as_ref().context(
            "no [github] repository is configured (github.owner and github.repo, or RELEASE_EDGE_GITHUB__OWNER and RELEASE_EDGE_GITHUB__REPO)",
        )?;
        GitHubOrigin::new(
            repo,
            &self.config.cache,
            self.secrets.github_token.clone(),
            self.clock.clone(),
            self.metrics.clone(),
        )
        .context("GitHub")
    }

    /// Purges what `change` changed on the CDN, when `[cdn]` is configured; a failure is an
    /// error of its own kind (exit status 3: the change itself is done).
    async fn purge(&self, change: Change) -> anyhow::Result<()> {
        let Some(cdn) = &self.cdn else {
            return Ok(());
        };
        if change.is_empty() {
            return Ok(());
        }
        match cdn.purge(&change).await {
            Ok(targets) => {
                let mut what = targets.tags;
                what.extend(targets.urls);
                if cdn.kind() == release_edge::config::CdnKind::Cloudfront {
                    what = targets.paths;
                }
                println!("purged on {}: {}", cdn.kind().as_str(), what.join(", "));
                Ok(())
            }
            Err(err) => Err(anyhow::Error::new(err).context(
                "the change is made, but the CDN was not purged: it serves its old copies until they expire (purge by hand, or run the command again)",
            )),
        }
    }
}

/// Runs a store command on a small runtime (the CLI does not need the server's), with the
/// CDN checked before anything is changed.
fn with_tools<F, Fut>(config: Option<PathBuf>, run: F) -> anyhow::Result<()>
where
    F: FnOnce(Tools) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let config = Config::load(config.as_deref()).context("configuration")?;
    telemetry::init(&config.log);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        anyhow::ensure!(
            config.store.kind != StoreKind::None,
            "this command needs a store (store.kind = \"fs\" or \"s3\")"
        );
        let store =
            Store::from_config(&config.store, &config.cache).context("opening the store")?;
        let secrets = Secrets::from_env();
        let clock = Clock::system();
        let metrics = Arc::new(Metrics::new()?);
        let cdn = Cdn::from_config(&config, &secrets, clock.clone(), metrics.clone())?;
        run(Tools {
            config,
            secrets,
            store,
            cdn,
            clock,
            metrics,
        })
        .await
    })
}

/// Runs a change of one channel's policy, as the CLI's user, now; prints it and purges the
/// CDN's copies of the channel's answers when it changed something.
fn with_channel<F, Fut>(target: ChannelArgs, run: F) -> anyhow::Result<()>
where
    F: FnOnce(Manager, Channel, Actor, SystemTime) -> Fut,
    Fut: std::future::Future<Output = Result<manage::Change, manage::ManageError>>,
{
    let channel = Channel::parse(&target.channel)?;
    with_tools(target.config, |tools| async move {
        let manager = Manager::new(tools.store.clone());
        let change = run(manager, channel, Actor::cli(), SystemTime::now()).await?;
        changed(&tools, &change).await
    })
}

/// Prints a policy change; purges the CDN when it changed something.
async fn changed(tools: &Tools, change: &manage::Change) -> anyhow::Result<()> {
    let verb = if change.changed { "now" } else { "unchanged" };
    println!(
        "policy/{}.json ({}, {verb}):\n{}",
        change.channel,
        change.action,
        serde_json::to_string_pretty(&change.after.to_json()).unwrap_or_default()
    );
    if !change.changed {
        return Ok(());
    }
    tools
        .purge(Change::channel(ChangeKind::Policy, change.channel.clone()))
        .await
}

fn policy_command(action: PolicyAction) -> anyhow::Result<()> {
    match action {
        PolicyAction::Show(target) => {
            let channel = Channel::parse(&target.channel)?;
            with_tools(target.config, |tools| async move {
                let stored = Manager::new(tools.store.clone()).policy(&channel).await?;
                println!(
                    "{}",
                    serde_json::to_string_pretty(&stored.policy.to_json())?
                );
                match stored.etag {
                    Some(etag) => eprintln!("# policy/{channel}.json, ETag {etag}"),
                    None => {
                        eprintln!("# policy/{channel}.json does not exist yet (the defaults above)")
                    }
                }
                Ok(())
            })
        }
        PolicyAction::Set {
            file,
            if_match,
            target,
        } => with_channel(target, |m, channel, who, at| async move {
            let bytes = if file.as_os_str() == "-" {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                    .map_err(|e| manage::ManageError::Other(format!("reading stdin: {e}")))?;
                buf
            } else {
                std::fs::read(&file).map_err(|e| {
                    manage::ManageError::Other(format!("reading {}: {e}", file.display()))
                })?
            };
            let policy = ChannelPolicy::parse(&bytes)?;
            let precondition = match if_match {
                Some(etag) if etag.starts_with('"') => Precondition::Matches(etag),
                Some(etag) => Precondition::Matches(format!("\"{etag}\"")),
                None => match m.policy(&channel).await?.etag {
                    Some(etag) => Precondition::Matches(etag),
                    None => Precondition::Absent,
                },
            };
            m.replace(&channel, policy, Some(precondition), &who, at)
                .await
        }),
    }
}

/// The channels' part of `status`: what each serves, its current and previous release,
/// its policy.
fn print_channels(inventory: &manage::Inventory, only: Option<&str>) {
    for channel in inventory
        .channels
        .iter()
        .filter(|c| only.is_none_or(|o| o == c.channel))
    {
        println!();
        println!("channel {}", channel.channel);
        println!(
            "  current: {}   previous: {}",
            channel.current.as_deref().unwrap_or("-"),
            channel.previous.as_deref().unwrap_or("-")
        );
        for (file, version) in &channel.serves {
            println!("  serves {file}: {version}");
        }
        println!("  versions: {}", channel.versions.join(", "));
        println!(
            "  policy: {}",
            serde_json::to_string(&channel.policy).unwrap_or_default()
        );
    }
}

fn check_config(config: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Config::load(config.as_deref()).context("configuration")?;
    let secrets = Secrets::from_env();
    println!("{}", config.to_toml());
    println!("# secrets (environment only): {secrets:?}");
    Ok(())
}

fn healthcheck(config: Option<PathBuf>, path: &str, timeout: Duration) -> ExitCode {
    let probe = || -> anyhow::Result<reqwest::StatusCode> {
        let config = Config::load(config.as_deref()).context("configuration")?;
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let url = format!("{scheme}://{}{path}", probe_addr(config.listen));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the runtime")?;
        runtime.block_on(async {
            // The probe asks this host's own server by address: the certificate names the
            // public host, not 127.0.0.1, so only the answer is checked, not the name.
            let client = reqwest::Client::builder()
                .timeout(timeout)
                .danger_accept_invalid_certs(true)
                .build()
                .context("building the HTTP client")?;
            let response = client.get(&url).send().await.with_context(|| url.clone())?;
            Ok(response.status())
        })
    };
    match probe() {
        Ok(status) if status.is_success() => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("release-edge healthcheck: {path} answered {status}");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("release-edge healthcheck: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Where a probe on this host reaches `listen`: its loopback when it listens on every address.
fn probe_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}
