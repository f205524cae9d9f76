//! The arithmetic of keeping the cache within `image_cache_max_size_bytes`, as pure
//! functions over the valid entries, least recently used first, so that it can be tested
//! on its own.
//!
//! Two callers, two targets:
//!
//! * a fill about to start ([`plan_eviction`]) needs room for its image: entries are
//!   evicted until the valid entries, the fills in progress and the new image together fit
//!   within the maximum (no extra). A fill is never evicted, so the cache is at most the
//!   maximum at all times; only a file written while its fill is in progress is counted by
//!   its expected size rather than what it holds so far;
//! * the pruner ([`plan_prune`], Diablo's `glance-cache-pruner`) runs when the cache is over
//!   the maximum (an operator lowered it, or files were added behind the cache's back) and
//!   frees the overage plus `image_cache_percent_extra_to_free` of the maximum, so that
//!   the next fills do not each have to evict.

/// The valid entries to evict, oldest first, so that `filling` bytes of fills in progress
/// plus a new image of `size` bytes fit within `max` beside what is left of `lru` (image
/// id and size, least recently used first). `None` when they cannot fit even with every
/// valid entry evicted.
pub fn plan_eviction(
    lru: &[(String, u64)],
    filling: u64,
    size: u64,
    max: u64,
) -> Option<Vec<String>> {
    let pinned = filling.saturating_add(size);
    if pinned > max {
        return None;
    }
    let valid: u64 = lru.iter().map(|(_, s)| *s).fold(0, u64::saturating_add);
    let over = valid.saturating_add(pinned).saturating_sub(max);
    Some(take_oldest(lru, over))
}

/// The valid entries the pruner removes, oldest first: nothing while `valid + filling` is
/// within `max`; else enough to free the overage plus `extra` (a fraction, 0.0 to 1.0) of
/// `max`, or every valid entry when that is not enough.
pub fn plan_prune(lru: &[(String, u64)], filling: u64, max: u64, extra: f64) -> Vec<String> {
    let valid: u64 = lru.iter().map(|(_, s)| *s).fold(0, u64::saturating_add);
    let used = valid.saturating_add(filling);
    if used <= max {
        return Vec::new();
    }
    let extra = (max as f64 * extra.clamp(0.0, 1.0)) as u64;
    take_oldest(lru, (used - max).saturating_add(extra))
}

/// The shortest prefix of `lru` whose sizes add up to at least `bytes`.
fn take_oldest(lru: &[(String, u64)], bytes: u64) -> Vec<String> {
    let mut freed = 0u64;
    let mut out = Vec::new();
    for (id, size) in lru {
        if freed >= bytes {
            break;
        }
        freed = freed.saturating_add(*size);
        out.push(id.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lru(entries: &[(&str, u64)]) -> Vec<(String, u64)> {
        entries.iter().map(|(i, s)| (i.to_string(), *s)).collect()
    }

    fn ids(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    #[test]
    fn eviction_makes_just_enough_room() {
        let l = lru(&[("a", 30), ("b", 30), ("c", 30)]);
        assert_eq!(plan_eviction(&l, 0, 10, 100).as_deref(), Some(&[][..]));
        assert_eq!(plan_eviction(&l, 0, 11, 100).map(|v| v.len()), Some(1));
        assert_eq!(
            plan_eviction(&l, 0, 40, 100).map(|v| ids(&v).join(",")),
            Some("a".into())
        );
        assert_eq!(
            plan_eviction(&l, 0, 41, 100).map(|v| ids(&v).join(",")),
            Some("a,b".into())
        );
        assert_eq!(
            plan_eviction(&l, 0, 100, 100).map(|v| ids(&v).join(",")),
            Some("a,b,c".into())
        );
        assert_eq!(
            plan_eviction(&l, 0, 101, 100),
            None,
            "larger than the cache"
        );
        assert_eq!(
            plan_eviction(&l, 60, 41, 100),
            None,
            "fills are not evicted"
        );
        assert_eq!(
            plan_eviction(&l, 60, 40, 100).map(|v| v.len()),
            Some(3),
            "60 filling + 40 new = the whole cache"
        );
        assert_eq!(plan_eviction(&[], 0, 0, 0).map(|v| v.len()), Some(0));
        assert_eq!(plan_eviction(&l, u64::MAX, 1, u64::MAX - 1), None);
    }

    #[test]
    fn pruning_frees_the_overage_and_the_extra_fraction() {
        let l = lru(&[("a", 10), ("b", 20), ("c", 30), ("d", 40)]);
        assert!(plan_prune(&l, 0, 100, 0.2).is_empty(), "exactly full");
        // 100 over 90: 10 over + 18 extra = 28 → a (10) + b (20).
        assert_eq!(ids(&plan_prune(&l, 0, 90, 0.2)), ["a", "b"]);
        // No extra: just the overage.
        assert_eq!(ids(&plan_prune(&l, 0, 90, 0.0)), ["a"]);
        // A fill in progress counts toward the size, but is not a victim.
        assert_eq!(ids(&plan_prune(&l, 15, 100, 0.0)), ["a", "b"]);
        // Not enough to free: everything valid goes.
        assert_eq!(plan_prune(&l, 200, 100, 0.05).len(), 4);
        // A fraction beyond 1 is 1; below 0 is 0.
        assert_eq!(ids(&plan_prune(&l, 0, 99, 7.0)), ["a", "b", "c", "d"]);
        assert_eq!(ids(&plan_prune(&l, 0, 99, -1.0)), ["a"]);
    }
}
