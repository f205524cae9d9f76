//! Property-based tests of listing parameters and membership bodies (quick and long runs:
//! see `crate::props`).

use super::*;
use crate::auth::AuthOptions;
use crate::props::{assert_client_error, json, props};
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

/// The keys the membership parsers look at.
const MEMBER_KEYS: &[&str] = &["memberships", "member_id", "can_share", "member"];

fn specs() -> impl Strategy<Value = Vec<MemberSpec>> {
    proptest::collection::vec(
        ("(?s).{1,12}", proptest::option::of(any::<bool>())).prop_map(|(member_id, can_share)| {
            MemberSpec {
                member_id,
                can_share,
            }
        }),
        0..6,
    )
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

    /// Any JSON: memberships or a 4xx.
    fn prop_memberships_any_json(v in json(MEMBER_KEYS)) {
        if let Err(e) = parse_memberships(&v) {
            assert_client_error(&e)?;
        }
        if let Err(e) = parse_can_share(&v) {
            assert_client_error(&e)?;
        }
    }

    /// The three body forms give back the memberships sent.
    fn prop_memberships_round_trip(specs in specs()) {
        let wrapped = MemberSpec::memberships_body(&specs);
        prop_assert_eq!(parse_memberships(&wrapped).map_err(|e| e.message()), Ok(specs.clone()));
        let bare = wrapped["memberships"].clone();
        prop_assert_eq!(parse_memberships(&bare).map_err(|e| e.message()), Ok(specs.clone()));
        if let [one] = &specs[..] {
            let single = bare[0].clone();
            prop_assert_eq!(parse_memberships(&single).map_err(|e| e.message()), Ok(vec![one.clone()]));
        }
    }
}
