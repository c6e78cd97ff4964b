//! The `release-edge` binary: parses the command line and hands off to the library.
#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use release_edge::config::{Config, Secrets};
use release_edge::publish;
use release_edge::server::{Server, shutdown_signal};
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
        } => with_store(config, |store| async move {
            let written = publish::rollback(&store, &channel, &to).await?;
            println!("{channel} now serves {to}: {}", written.join(", "));
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
