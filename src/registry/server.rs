//! STUB: server
