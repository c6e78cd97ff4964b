//! One error type for every handler, given its HTTP meaning in one place.
//!
//! Client mistakes (4xx) are not logged as errors; a 5xx is logged once with its cause
//! chain and the client gets an opaque JSON body. Every body is
//! `{"error": "<code>", "message": "<human text>"}` (SPEC §2).

use std::time::Duration;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

use crate::manage::ManageError;
use crate::origin::OriginError;
use crate::origin::github::GitHubError;
use crate::release::channel::InvalidChannel;
use crate::release::platform::DetectError;
use crate::release::policy::PolicyError;
use crate::store::StoreError;
use crate::store::key::KeyError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The path is not a valid object key.
    #[error("invalid path: {0}")]
    InvalidPath(#[from] KeyError),
    /// No route, or no object.
    #[error("{0}")]
    NotFound(String),
    /// A request parameter is invalid; `code` names which (`invalid_version`, ...).
    #[error("{message}")]
    BadRequest {
        /// Machine-readable code.
        code: &'static str,
        /// What is wrong, naming the bad value.
        message: String,
    },
    /// No release matches what was asked for; `available` lists what there is.
    #[error("{message}")]
    NoRelease {
        /// What was asked for.
        message: String,
        /// What could be had instead.
        available: Vec<crate::release::Available>,
    },
    /// The route exists but not for this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// `If-Match` / `If-Unmodified-Since` failed.
    #[error("precondition failed")]
    PreconditionFailed,
    /// No requested range overlaps the object.
    #[error("range not satisfiable")]
    RangeNotSatisfiable {
        /// Size of the object, for `Content-Range: bytes */size`.
        size: u64,
    },
    /// The handler did not produce headers within the request timeout.
    #[error("request timed out after {0:?}")]
    RequestTimeout(Duration),
    /// An origin failed; the error names which.
    #[error(transparent)]
    Origin(#[from] OriginError),
    /// The admin API without a bearer token.
    #[error("{0}")]
    Unauthorized(String),
    /// The admin API with a token that is not one.
    #[error("{0}")]
    Forbidden(String),
    /// A private channel's feed or object (SPEC §2.7) without a credential (`401`) or with
    /// one not accepted (`403`: a wrong token, a bad or expired signature); `code` names why.
    #[error("{message}")]
    Access {
        /// 401 or 403.
        status: StatusCode,
        /// Machine-readable code (`token_required`, `invalid_token`, `signature_expired`, ...).
        code: &'static str,
        /// What to do.
        message: String,
    },
    /// An address that presented wrong tokens (admin or access) must wait.
    #[error("too many wrong tokens from this address; retry in {} s", retry_after.as_secs().max(1))]
    TooManyAttempts {
        /// How long.
        retry_after: Duration,
    },
    /// A release manager's change refused (nothing written): an unknown version, a stale
    /// `If-Match`, the last servable version, ... `code` names which.
    #[error("{message}")]
    Refused {
        /// 404, 409, 412, 428, ...
        status: StatusCode,
        /// Machine-readable code.
        code: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
    /// A bug: caught panics and the like.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match *self {
            AppError::InvalidPath(_) => (StatusCode::BAD_REQUEST, "invalid_path"),
            AppError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AppError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            AppError::NoRelease { .. } => (StatusCode::NOT_FOUND, "no_release"),
            AppError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            AppError::PreconditionFailed => {
                (StatusCode::PRECONDITION_FAILED, "precondition_failed")
            }
            AppError::RangeNotSatisfiable { .. } => {
                (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable")
            }
            AppError::RequestTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            AppError::Origin(ref err) => origin_status(err),
            AppError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AppError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            AppError::Access { status, code, .. } => (status, code),
            AppError::TooManyAttempts { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts")
            }
            AppError::Refused { status, code, .. } => (status, code),
            AppError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The text the client sees: precise for client errors, opaque for server errors.
    fn public_message(&self) -> String {
        match self {
            AppError::RequestTimeout(_) => "the origin did not answer in time; retry later".into(),
            AppError::Origin(err) => origin_message(err).into(),
            AppError::Internal(_) => "internal server error".into(),
            other => other.to_string(),
        }
    }
}

/// The status and code of an origin's failure: which origin, and how it failed.
fn origin_status(err: &OriginError) -> (StatusCode, &'static str) {
    const UNAVAILABLE: StatusCode = StatusCode::SERVICE_UNAVAILABLE;
    const TIMEOUT: StatusCode = StatusCode::GATEWAY_TIMEOUT;
    match err {
        OriginError::Store(store) | OriginError::Both { store, .. } => match store {
            StoreError::Timeout(_) => (TIMEOUT, "store_timeout"),
            // Never built: "not found" is an answer, not a failure. Safe anyway.
            StoreError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            StoreError::Unavailable { .. } => (UNAVAILABLE, "store_unavailable"),
        },
        OriginError::GitHub(github) => match github {
            GitHubError::Timeout(_) => (TIMEOUT, "github_timeout"),
            GitHubError::RateLimited { .. } => (UNAVAILABLE, "github_rate_limited"),
            GitHubError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            GitHubError::Unavailable { .. } => (UNAVAILABLE, "github_unavailable"),
        },
    }
}

/// What the client is told of an origin's failure (the cause is in the log).
fn origin_message(err: &OriginError) -> &'static str {
    match origin_status(err).1 {
        "store_timeout" => "the store did not answer in time; retry later",
        "store_unavailable" => "the store is unavailable; retry later",
        "github_timeout" => {
            "GitHub Releases, the only origin that may have this, did not answer in time; retry later"
        }
        "github_rate_limited" => {
            "GitHub Releases, the only origin that may have this, is rate-limiting us; retry later"
        }
        "github_unavailable" => {
            "GitHub Releases, the only origin that may have this, is unavailable; retry later"
        }
        _ => "not found",
    }
}

/// Seconds for `Retry-After`: GitHub's own back-off when it set one, else 5.
fn retry_after(err: &OriginError) -> u64 {
    match err {
        OriginError::GitHub(GitHubError::RateLimited {
            retry_after: Some(wait),
            ..
        }) => wait.as_secs().clamp(1, 3600),
        _ => 5,
    }
}

impl From<DetectError> for AppError {
    fn from(err: DetectError) -> Self {
        AppError::BadRequest {
            code: match err {
                DetectError::Platform(_) => "invalid_platform",
                DetectError::Arch(_) => "invalid_arch",
            },
            message: err.to_string(),
        }
    }
}

impl From<InvalidChannel> for AppError {
    fn from(err: InvalidChannel) -> Self {
        AppError::BadRequest {
            code: "invalid_channel",
            message: err.to_string(),
        }
    }
}

impl From<ManageError> for AppError {
    fn from(err: ManageError) -> Self {
        const BAD: StatusCode = StatusCode::BAD_REQUEST;
        const CONFLICT: StatusCode = StatusCode::CONFLICT;
        let (status, code) = match err {
            ManageError::Store(store) => return AppError::Origin(OriginError::Store(store)),
            ManageError::Other(message) => return AppError::Internal(message),
            ManageError::Channel(_) => (BAD, "invalid_channel"),
            ManageError::Version(_) => (BAD, "invalid_version"),
            ManageError::Policy(PolicyError::Percentage(_)) => (BAD, "invalid_percentage"),
            ManageError::Policy(_) => (BAD, "invalid_policy"),
            ManageError::NoReason => (BAD, "reason_required"),
            ManageError::UnknownVersion { .. } => (StatusCode::NOT_FOUND, "unknown_version"),
            ManageError::NotYanked { .. } => (CONFLICT, "not_yanked"),
            ManageError::LastServable { .. } => (CONFLICT, "last_servable_version"),
            ManageError::MinimumTooHigh { .. } => (CONFLICT, "minimum_version_unservable"),
            ManageError::RollbackToYanked { .. } => (CONFLICT, "version_yanked"),
            ManageError::Stale { .. } => (StatusCode::PRECONDITION_FAILED, "precondition_failed"),
            ManageError::PreconditionRequired { .. } => {
                (StatusCode::PRECONDITION_REQUIRED, "precondition_required")
            }
        };
        AppError::Refused {
            status,
            code,
            message: err.to_string(),
        }
    }
}

/// Logs `err` with its whole `source()` chain.
fn log_server_error(err: &AppError) {
    let mut chain = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    match err {
        AppError::Origin(origin) => {
            tracing::error!(origin = origin.origin().as_str(), error = %chain, "request failed");
        }
        _ => tracing::error!(error = %chain, "request failed"),
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            log_server_error(&self);
        }
        let body = match &self {
            AppError::NoRelease { available, .. } => Json(json!({
                "error": code,
                "message": self.public_message(),
                "available": available,
            })),
            _ => Json(json!({ "error": code, "message": self.public_message() })),
        };
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        // Errors must never be cached as if they were the object.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match &self {
            AppError::RangeNotSatisfiable { size } => {
                if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    headers.insert(header::CONTENT_RANGE, value);
                }
            }
            AppError::Origin(err) if status == StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after(err)));
            }
            AppError::MethodNotAllowed => {
                headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            }
            AppError::Unauthorized(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"release-edge admin\""),
                );
            }
            AppError::Access { status, .. } if *status == StatusCode::UNAUTHORIZED => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"release-edge\""),
                );
            }
            AppError::TooManyAttempts { retry_after } => {
                // Whole seconds, rounded up: a client that waits this long is admitted.
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            _ => {}
        }
        response
    }
}
