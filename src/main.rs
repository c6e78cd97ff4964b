//! The `release-edge` binary: parses the command line and hands off to the library.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use release_edge::config::{Config, Secrets};
use release_edge::server::{Server, shutdown_signal};
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config } => serve(config),
        Command::CheckConfig { config } => check_config(config),
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let state = App::build(config, Secrets::from_env())?;
        let server = Server::bind(state.clone())
            .await
            .with_context(|| format!("binding {}", state.config.listen))?;
        tracing::info!(
            listen = %server.local_addr()?,
            metrics = ?server.metrics_addr(),
            store = state.store.kind(),
            version = env!("CARGO_PKG_VERSION"),
            "release-edge listening"
        );
        server.run(shutdown_signal()).await;
        tracing::info!("stopped");
        anyhow::Ok(())
    })
}

fn check_config(config: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Config::load(config.as_deref()).context("configuration")?;
    let secrets = Secrets::from_env();
    println!("{}", config.to_toml());
    println!("# secrets (environment only): {secrets:?}");
    Ok(())
}
