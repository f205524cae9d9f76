//! Property-based tests of listing parameters (quick and long runs: see `crate::props`).

use super::*;
use crate::auth::AuthOptions;
use crate::props::{assert_client_error, props};
use proptest::prelude::*;

fn admin() -> Context {
    let opts = AuthOptions::default();
    Context::for_identity(None, None, Some("t".into()), vec!["admin".into()], &opts)
}

/// A listing parameter: a known name (or `property-…`) with a random or plausible value.
fn pair() -> impl Strategy<Value = (String, String)> {
    let key = prop_oneof![
        3 => proptest::sample::select(LIST_PARAMS.to_vec()).prop_map(String::from),
        1 => "property-(?s).{0,6}",
        1 => "(?s).{0,8}",
    ];
    let value = prop_oneof![
        "(?s).{0,16}",
        "[0-9]{0,22}",
        "-?[0-9]{1,4}-[0-9]{1,2}-[0-9]{1,2}([T ][0-9]{1,2}:[0-9]{1,2}(:[0-9]{1,2}(\\.[0-9]{0,8})?)?)?Z?",
        proptest::sample::select(vec!["asc", "desc", "none", "true", "False", "name", "size"])
            .prop_map(String::from),
    ];
    (key, value)
}

props! {
    cases = 2000;

    /// Any parameters: a query or a 4xx naming something, for tenants and admins.
    fn prop_list_query_any(pairs in proptest::collection::vec(pair(), 0..8), is_admin in any::<bool>()) {
        let ctx = if is_admin { admin() } else {
            Context::for_identity(None, None, Some("t".into()), vec![], &AuthOptions::default())
        };
        if let Err(e) = ListQuery::parse(&pairs, &ctx, PageLimits::default()) {
            assert_client_error(&e)?;
        }
    }

    /// What the API parsed reaches a remote registry unchanged: parse ∘ to_pairs is the
    /// identity on parsed queries.
    fn prop_list_query_round_trip(pairs in proptest::collection::vec(pair(), 0..8)) {
        if let Ok(q) = ListQuery::parse(&pairs, &admin(), PageLimits::default()) {
            let again = ListQuery::parse(&q.to_pairs(), &admin(), PageLimits::default());
            prop_assert_eq!(again.map_err(|e| e.message()), Ok(q));
        }
    }
}
