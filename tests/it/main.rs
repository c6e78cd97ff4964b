//! The integration suite: one binary that drives the real router, in-process for most cases
//! and over real TCP (and with real clients) where streaming, timeouts and shutdown matter.

mod admin;
mod cdn;
mod cdn_purge;
mod cdn_standin;
mod clients;
mod config_cli;
mod electron_updater;
mod fallback;
mod feeds;
mod github;
mod github_standin;
mod mirror;
mod policy;
mod private;
mod prometheus;
mod publish;
mod redirect;
mod releases;
mod s3;
mod sparkle;
mod support;
mod tauri;
mod tcp;
mod tls;
mod velopack;
