//! STUB: client
