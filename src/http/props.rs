//! Property-based tests of query-string handling (quick and long runs: see
//! `crate::props`).

use super::*;
use crate::props::{nasty_bytes, props};
use proptest::prelude::*;

props! {
    cases = 2000;

    /// Any query string (as bytes the request line may carry): pairs, never a panic.
    fn prop_query_any(raw in nasty_bytes(200)) {
        let q = String::from_utf8_lossy(&raw);
        for (k, v) in parse_query(&q) {
            prop_assert!(k.len() <= q.len() * 3 && v.len() <= q.len() * 3);
        }
    }

    /// Encoded pairs come back as sent (the remote registry client's query round trip).
    fn prop_query_round_trip(
        pairs in proptest::collection::vec(("(?s).{1,10}", "(?s).{0,10}"), 0..6),
    ) {
        let q: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect();
        prop_assert_eq!(parse_query(&q.join("&")), pairs);
    }

    /// Decoding undoes encoding, for any text.
    fn prop_percent_round_trip(s in "(?s).{0,40}") {
        prop_assert_eq!(percent_decode(&percent_encode(&s)), s);
    }
}
