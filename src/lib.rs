//! glance-rs: the OpenStack Image Service (Glance "Diablo": images API v1 and the registry
//! API) as a synchronous Rust service.
//!
//! Programs: `glance-api` (images API, port 9292), `glance-registry` (registry API, port
//! 9191), `glance` (command-line client), `glance-manage` (database), `glance-scrubber`
//! (delayed deletes). The library holds everything they share:
//!
//! - [`image`]: the image model (statuses, formats, ids, records and patches);
//! - [`registry`]: the metadata store (SQLite, or a remote `glance-registry`) and its API;
//! - [`cache`]: the image cache of glance-api and its maintenance programs;
//! - [`http`]: our small HTTP/1.1 server layer;
//! - [`config`]: Glance-style INI configuration;
//! - [`auth`]: request contexts and the visibility rules;
//! - [`client`]: a blocking client of the images API (what the `glance` tool uses);
//! - [`cli`]: the `glance` command-line tool;
//! - [`error`]: the one error type, mapped to HTTP statuses.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod client;
pub mod config;
pub mod error;
pub mod format;
pub mod http;
pub mod image;
pub mod log;
pub mod notifier;
#[cfg(test)]
mod props;
pub mod registry;
mod rest;
pub mod service;
pub mod store;
pub mod timeutil;
mod tls;

pub use error::{Error, Result};
