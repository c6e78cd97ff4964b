//! The `release-edge` binary: parses the command line and hands off to the library.
#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::time::SystemTime;

use release_edge::config::{Config, Secrets};
use release_edge::manage::{Actor, Change, Inventory, Manager};
use release_edge::publish;
use release_edge::release::channel::Channel;
use release_edge::release::policy::ChannelPolicy;
use release_edge::server::{Server, shutdown_signal};
use release_edge::store::Precondition;
use release_edge::store::Store;
use release_edge::{App, telemetry};

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
    /// Channels (what each serves, its current and previous release, its policy) and
    /// versions (their files and where they live).
    Status {
        /// Only this channel.
        #[arg(long)]
        channel: Option<String>,
        /// The whole inventory as JSON (what GET /admin/releases answers).
        #[arg(long)]
        json: bool,
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
        } => with_store(config, |store| async move {
            let summary = publish::publish(&store, &dir, &version, &channel).await?;
            println!(
                "published {version} on {channel}: {} uploaded, {} already there; {}",
                summary.uploaded.len(),
                summary.unchanged.len(),
                summary.channel_manifests.join(", ")
            );
            Ok(())
        }),
        Command::Rollback {
            channel,
            to,
            config,
        } => with_manager(config, |manager| async move {
            let written = manager
                .rollback(&channel, &to, &Actor::cli(), SystemTime::now())
                .await?;
            println!("{channel} now serves {to}: {}", written.join(", "));
            Ok(())
        }),
        Command::Policy { action } => policy_command(action),
        Command::Halt(target) => with_channel(target, |m, channel, who, at| async move {
            print_change(&m.halt(&channel, &who, at).await?);
            Ok(())
        }),
        Command::Resume(target) => with_channel(target, |m, channel, who, at| async move {
            print_change(&m.resume(&channel, &who, at).await?);
            Ok(())
        }),
        Command::Rollout { percentage, target } => {
            with_channel(target, |m, channel, who, at| async move {
                let value = serde_json::from_str(&percentage)
                    .unwrap_or(serde_json::Value::String(percentage));
                print_change(&m.rollout(&channel, &value, &who, at).await?);
                Ok(())
            })
        }
        Command::Yank {
            version,
            reason,
            channel,
            config,
        } => with_manager(config, |m| async move {
            let change = m
                .yank(
                    &version,
                    channel.as_deref(),
                    &reason,
                    &Actor::cli(),
                    SystemTime::now(),
                )
                .await?;
            print_change(&change);
            Ok(())
        }),
        Command::Unyank {
            version,
            channel,
            config,
        } => with_manager(config, |m| async move {
            let change = m
                .unyank(
                    &version,
                    channel.as_deref(),
                    &Actor::cli(),
                    SystemTime::now(),
                )
                .await?;
            print_change(&change);
            Ok(())
        }),
        Command::Status {
            channel,
            json,
            config,
        } => with_manager(config, |m| async move {
            let inventory = m.inventory().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&inventory)?);
            } else {
                print_status(&inventory, channel.as_deref());
            }
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
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

/// Runs a store command on a small runtime (the CLI does not need the server's).
fn with_store<F, Fut>(config: Option<PathBuf>, run: F) -> anyhow::Result<()>
where
    F: FnOnce(Store) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let config = Config::load(config.as_deref()).context("configuration")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let store =
            Store::from_config(&config.store, &config.cache).context("opening the store")?;
        run(store).await
    })
}

/// Runs a release manager's command against the configured store.
fn with_manager<F, Fut>(config: Option<PathBuf>, run: F) -> anyhow::Result<()>
where
    F: FnOnce(Manager) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    with_store(config, |store| run(Manager::new(store)))
}

/// Runs a change of one channel's policy, as the CLI's user, now.
fn with_channel<F, Fut>(target: ChannelArgs, run: F) -> anyhow::Result<()>
where
    F: FnOnce(Manager, Channel, Actor, SystemTime) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let channel = Channel::parse(&target.channel)?;
    with_manager(target.config, |m| {
        run(m, channel, Actor::cli(), SystemTime::now())
    })
}

fn policy_command(action: PolicyAction) -> anyhow::Result<()> {
    match action {
        PolicyAction::Show(target) => with_channel(target, |m, channel, _, _| async move {
            let stored = m.policy(&channel).await?;
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
        }),
        PolicyAction::Set {
            file,
            if_match,
            target,
        } => with_channel(target, |m, channel, who, at| async move {
            let bytes = if file.as_os_str() == "-" {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
                buf
            } else {
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?
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
            print_change(
                &m.replace(&channel, policy, Some(precondition), &who, at)
                    .await?,
            );
            Ok(())
        }),
    }
}

fn print_change(change: &Change) {
    let verb = if change.changed { "now" } else { "unchanged" };
    println!(
        "policy/{}.json ({}, {verb}):\n{}",
        change.channel,
        change.action,
        serde_json::to_string_pretty(&change.after.to_json()).unwrap_or_default()
    );
}

fn print_status(inventory: &Inventory, only: Option<&str>) {
    for channel in inventory
        .channels
        .iter()
        .filter(|c| only.is_none_or(|o| o == c.channel))
    {
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
    if only.is_none() {
        for version in &inventory.versions {
            let files: usize = version.files.values().map(Vec::len).sum();
            println!(
                "version {} [{}] channels: {}; {files} files; in: {}",
                version.version,
                version
                    .files
                    .keys()
                    .filter(|p| **p != "other")
                    .copied()
                    .collect::<Vec<_>>()
                    .join(" "),
                version.channels.join(", "),
                version.locations.join(", ")
            );
        }
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
