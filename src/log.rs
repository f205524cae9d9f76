//! STUB: logging set-up.
