//! Request handlers: extract, call a service, map to a response.

pub mod admin;
pub mod health;
pub mod latest;
pub mod releases;
pub mod sparkle;
pub mod update;
pub mod velopack;

use crate::error::AppError;

/// Any path no route matches.
pub async fn not_found(uri: http::Uri) -> AppError {
    AppError::NotFound(format!("no route for {}", uri.path()))
}

/// A route that exists, with a method it does not serve.
pub async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}
