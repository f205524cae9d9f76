//! STUB: sqlite
