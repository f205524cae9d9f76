//! STUB: image stores.
