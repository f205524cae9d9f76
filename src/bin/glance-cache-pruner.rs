//! `glance-cache-pruner`: removes cached copies of images that are no longer active, then, when
//! the cache is over `image_cache_max_size_bytes`, the least recently used copies down to the
//! maximum minus `image_cache_percent_extra_to_free`.
//! Reads glance-api.conf; see glance-cache-pruner(8).

use std::process::ExitCode;

use glance_rs::cache::tools::{self, Tool};

fn main() -> ExitCode {
    tools::main(Tool::Pruner)
}
