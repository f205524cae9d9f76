//! `glance-cache-reaper`: removes invalid cache entries older than
//! `image_cache_invalid_entry_grace_period` and fills stalled for `image_cache_stall_timeout`.
//! Reads glance-api.conf; see glance-cache-reaper(8).

use std::process::ExitCode;

use glance_rs::cache::tools::{self, Tool};

fn main() -> ExitCode {
    tools::main(Tool::Reaper)
}
