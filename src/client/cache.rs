//! The image cache management API (`/v1/cached_images`, spec §5.9): what `glance
//! cache-index` and the other `cache-*` commands call. The server answers only when its
//! cache is on (else [`Error::NotFound`](super::Error::NotFound)) and only to admins (else
//! [`Error::Forbidden`](super::Error::Forbidden)). Method names are those of Diablo's
//! `glance.client.Client`.
//!
//! ```no_run
//! use glance_rs::client::Client;
//!
//! let glance = Client::new("127.0.0.1", 9292);
//! for entry in glance.get_cached_images()? {
//!     println!("{} {} bytes, {} hits", entry.id, entry.size, entry.hits.unwrap_or(0));
//! }
//! glance.prefetch_cache_image("6f2fa3e1-…")?;
//! # Ok::<_, glance_rs::client::Error>(())
//! ```

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::{Client, Error, Result, read_json};
use crate::http::percent_encode;

/// One entry of a cache listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct CachedImage {
    /// The image id.
    #[serde(deserialize_with = "text")]
    pub id: String,
    /// The image's name when it was cached (`UNKNOWN` when it had none).
    #[serde(deserialize_with = "opt_text")]
    pub name: Option<String>,
    /// The cache file on the server.
    #[serde(deserialize_with = "opt_text")]
    pub path: Option<String>,
    /// When the entry was last written (UTC, `YYYY-MM-DDTHH:MM:SS[.ffffff]`).
    #[serde(deserialize_with = "opt_text")]
    pub last_modified: Option<String>,
    /// When it was last served (UTC).
    #[serde(deserialize_with = "opt_text")]
    pub last_accessed: Option<String>,
    /// Bytes cached (so far, for a fill in progress).
    #[serde(deserialize_with = "number")]
    pub size: u64,
    /// The image's size; `None` when the server did not know it (Diablo: `UNKNOWN`).
    #[serde(deserialize_with = "opt_number")]
    pub expected_size: Option<u64>,
    /// Cached images: times served from the cache.
    #[serde(deserialize_with = "opt_number")]
    pub hits: Option<u64>,
    /// Invalid entries: why.
    #[serde(deserialize_with = "opt_text")]
    pub error: Option<String>,
    /// Prefetch entries: `queued` or `in-progress`.
    #[serde(deserialize_with = "opt_text")]
    pub status: Option<String>,
}

/// Any JSON scalar as text (Diablo's ids were numbers).
fn text<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    Ok(opt_text(d)?.unwrap_or_default())
}

fn opt_text<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    })
}

/// A number, or a numeric string; anything else (`"UNKNOWN"`) is `None`.
fn opt_number<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u64>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

fn number<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    Ok(opt_number(d)?.unwrap_or(0))
}

impl Client {
    /// The cached images (`GET /cached_images`).
    pub fn get_cached_images(&self) -> Result<Vec<CachedImage>> {
        self.cache_listing(None)
    }

    /// The invalid entries: copies that failed verification (`?status=invalid`).
    pub fn get_invalid_cached_images(&self) -> Result<Vec<CachedImage>> {
        self.cache_listing(Some("invalid"))
    }

    /// The fills in progress (`?status=incomplete`).
    pub fn get_incomplete_cached_images(&self) -> Result<Vec<CachedImage>> {
        self.cache_listing(Some("incomplete"))
    }

    /// The prefetch queue, queued and in progress (`?status=prefetching`).
    pub fn get_prefetching_cache_images(&self) -> Result<Vec<CachedImage>> {
        self.cache_listing(Some("prefetching"))
    }

    /// Removes the cached copy of an image (`DELETE /cached_images/<id>`).
    pub fn purge_cached_image(&self, id: &str) -> Result<()> {
        let url = self.cached_image_url(id);
        self.send(self.request("DELETE", &url), None).map(drop)
    }

    /// Removes every cached copy (`DELETE /cached_images`); returns how many.
    pub fn clear_cached_images(&self) -> Result<u64> {
        self.cache_delete(None, "num_purged")
    }

    /// Removes the invalid entries now (`DELETE /cached_images?status=invalid`); returns
    /// how many.
    pub fn reap_invalid_cached_images(&self) -> Result<u64> {
        self.cache_delete(Some("invalid"), "num_reaped")
    }

    /// Removes stalled fills (`DELETE /cached_images?status=incomplete`); returns how many.
    pub fn reap_stalled_cached_images(&self) -> Result<u64> {
        self.cache_delete(Some("incomplete"), "num_reaped")
    }

    /// Queues an active image for the prefetcher (`PUT /cached_images/<id>`).
    /// [`Error::NotFound`] when the image is not active, [`Error::BadRequest`] when it is
    /// already cached or queued.
    pub fn prefetch_cache_image(&self, id: &str) -> Result<()> {
        let url = self.cached_image_url(id);
        self.send(self.request("PUT", &url), None).map(drop)
    }

    fn cached_image_url(&self, id: &str) -> String {
        self.url(&format!("/cached_images/{}", percent_encode(id)))
    }

    fn cache_listing(&self, status: Option<&str>) -> Result<Vec<CachedImage>> {
        let url = match status {
            Some(s) => self.url(&format!("/cached_images?status={s}")),
            None => self.url("/cached_images"),
        };
        let mut v = read_json(self.send(self.request("GET", &url), None)?)?;
        let items = v.get_mut("cached_images").map(Value::take);
        serde_json::from_value(items.unwrap_or_default())
            .map_err(|e| Error::InvalidResponse(format!("cache listing: {e}")))
    }

    fn cache_delete(&self, status: Option<&str>, field: &str) -> Result<u64> {
        let url = match status {
            Some(s) => self.url(&format!("/cached_images?status={s}")),
            None => self.url("/cached_images"),
        };
        let v = read_json(self.send(self.request("DELETE", &url), None)?)?;
        v.get(field)
            .and_then(Value::as_u64)
            .ok_or_else(|| Error::InvalidResponse(format!("reply without {field}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_parse_ours_and_diablos() {
        let ours = serde_json::json!({"id": "6f2f", "path": "/c/6f2f", "name": "cirros",
            "last_modified": "2026-12-03T10:00:00", "last_accessed": "2026-12-03T11:00:00.5",
            "size": 12, "expected_size": 12, "hits": 3});
        let e: CachedImage = serde_json::from_value(ours).unwrap_or_default();
        assert_eq!(
            (e.id.as_str(), e.size, e.expected_size, e.hits),
            ("6f2f", 12, Some(12), Some(3))
        );
        let diablo = serde_json::json!({"id": 7, "name": "UNKNOWN", "size": 5,
            "expected_size": "UNKNOWN", "error": "boom"});
        let e: CachedImage = serde_json::from_value(diablo).unwrap_or_default();
        assert_eq!(
            (e.id.as_str(), e.expected_size, e.error.as_deref()),
            ("7", None, Some("boom"))
        );
    }
}
