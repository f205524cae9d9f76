//! STUB: migrate
