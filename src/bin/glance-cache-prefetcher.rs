//! `glance-cache-prefetcher`: fetches the images queued with `glance cache-prefetch` (or
//! `PUT /v1/cached_images/<id>`) into the image cache, one at a time, then exits.
//! Reads glance-api.conf; see glance-cache-prefetcher(8).

use std::process::ExitCode;

use glance_rs::cache::tools::{self, Tool};

fn main() -> ExitCode {
    tools::main(Tool::Prefetcher)
}
