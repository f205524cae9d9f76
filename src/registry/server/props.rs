//! Property-based tests of the membership bodies (quick and long runs: see
//! `crate::props`).

use super::*;
use crate::props::{assert_client_error, json, props};
use crate::registry::{MemberSpec, parse_memberships};
use proptest::prelude::*;

const KEYS: &[&str] = &["memberships", "member_id", "can_share", "member"];

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

    /// Any JSON: memberships or a 4xx.
    fn prop_memberships_any_json(v in json(KEYS)) {
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
