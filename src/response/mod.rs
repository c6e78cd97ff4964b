//! Responses built from what the services give: an object of the store (ranges,
//! preconditions, streaming) and a feed body (ETag, `304`, caching policy).

pub mod feed;
pub mod object;
