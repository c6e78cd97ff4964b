//! HTTP protocol logic that knows nothing of axum: preconditions and ranges (one pure
//! function), and `multipart/byteranges` bodies.

pub mod conditional;
pub mod multipart;
