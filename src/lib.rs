//! release-edge: one server in front of an object store full of desktop-app releases,
//! serving artifacts, update feeds and download links.
#![forbid(unsafe_code)]

pub mod access;
pub mod auth;
pub mod cache;
pub mod cdn;
pub mod clock;
pub mod config;
pub mod error;
pub mod feeds;
pub mod handlers;
pub mod http;
pub mod inventory;
pub mod manage;
pub mod metrics;
pub mod middleware;
pub mod mirror;
pub mod origin;
pub mod policy;
pub mod publish;
pub mod release;
pub mod response;
pub mod router;
pub mod server;
pub mod signing;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod versions;
pub mod vpk;
pub mod writer;

pub use router::build as app;
pub use state::{App, AppState};
