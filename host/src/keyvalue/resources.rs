//! The host's side of the `wasi:keyvalue` resources. Kept apart from the wiring because the
//! generated bindings name them (`with:`), and the wiring uses the bindings.

/// Host representation of an open `bucket`.
pub struct BucketHandle {
    pub(super) label: String,
}

/// Host representation of a `cas` handle: the value seen when it was created.
pub struct CasHandle {
    pub(super) label: String,
    pub(super) key: String,
    pub(super) seen: Option<Vec<u8>>,
}
