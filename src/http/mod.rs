//! HTTP protocol logic that knows nothing of axum: preconditions and ranges, multipart
//! bodies, and the response for an object.

pub mod conditional;
pub mod feed;
pub mod multipart;
pub mod object;
