//! Shared settings and generators of the property-based tests (proptest).
//!
//! Every property runs twice: a quick run of a few thousand cases in each `cargo test`, and
//! a long run of the same property behind `#[ignore]` ([`LONG_CASES`] cases; `cargo test --
//! --ignored prop_`). Both runs come from one definition through [`props!`], so the two
//! cannot drift apart. Failures are not persisted to files: each bug found gets a named
//! regression unit test instead.

use proptest::prelude::*;
use proptest::test_runner::Config;

/// Cases of the long run of each property.
pub(crate) const LONG_CASES: u32 = 200_000;

/// The quick run: `cases` cases (kept small enough for the default run to stay fast).
pub(crate) fn quick(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// The long run (`#[ignore]`d).
pub(crate) fn long() -> Config {
    quick(LONG_CASES)
}

/// Defines each property twice, in modules `quick` (run by `cargo test`, `cases` cases)
/// and `long` (`#[ignore]`d, [`LONG_CASES`] cases). Property names start with `prop_` so
/// that `cargo test -- --ignored prop_` selects exactly the long runs.
macro_rules! props {
    (cases = $cases:expr; $($(#[$m:meta])* fn $name:ident($($arg:tt)*) $body:block)*) => {
        mod quick {
            #[allow(unused_imports)]
            use super::*;
            ::proptest::proptest! {
                #![proptest_config($crate::props::quick($cases))]
                $($(#[$m])* #[test] fn $name($($arg)*) $body)*
            }
        }
        mod long {
            #[allow(unused_imports)]
            use super::*;
            ::proptest::proptest! {
                #![proptest_config($crate::props::long())]
                $(
                    $(#[$m])*
                    #[test]
                    #[ignore = "long property run: cargo test -- --ignored prop_"]
                    fn $name($($arg)*) $body
                )*
            }
        }
    };
}
pub(crate) use props;

/// One edit of [`mutate`]: where (modulo the length), what, and with which byte.
pub(crate) type Edit = (usize, u8, u8);

/// Small random edits (replace, insert, delete one byte) for [`mutate`]: near-valid inputs
/// reach deeper into a parser than random bytes do.
pub(crate) fn edits() -> impl Strategy<Value = Vec<Edit>> {
    proptest::collection::vec((any::<usize>(), 0u8..3, any::<u8>()), 1..4)
}

/// Applies [`edits`] to `bytes`.
pub(crate) fn mutate(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for &(at, op, byte) in edits {
        let len = bytes.len();
        match op {
            0 if len > 0 => bytes[at % len] = byte,
            1 => bytes.insert(at % (len + 1), byte),
            _ if len > 0 => {
                bytes.remove(at % len);
            }
            _ => bytes.push(byte),
        }
    }
    bytes
}

/// Bytes that parsers treat specially (line ends, separators, quotes, high bytes), more
/// often than uniform random bytes would give them.
pub(crate) fn nasty_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => any::<u8>(),
        2 => proptest::sample::select(b"\r\n\t \0;=\":,-_%/?#@\\\x7f\x80\xff".to_vec()),
        2 => proptest::sample::select(b"0123456789abcdefABCDEFxX+".to_vec()),
    ]
}

/// Random bytes drawn mostly from [`nasty_byte`].
pub(crate) fn nasty_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(nasty_byte(), 0..max)
}

/// Any JSON value, nested a few levels, with object keys drawn mostly from `keys` (the
/// ones a parser looks at) and sometimes at random.
pub(crate) fn json(keys: &'static [&'static str]) -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[0-9]{0,21}".prop_map(Value::from),
        "(?s).{0,12}".prop_map(Value::from),
    ];
    let key = prop_oneof![
        3 => proptest::sample::select(keys).prop_map(str::to_string),
        1 => "(?s).{0,8}",
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::btree_map(key.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An error a client caused: a 4xx, never a 5xx.
pub(crate) fn assert_client_error(e: &crate::Error) -> Result<(), TestCaseError> {
    prop_assert!(
        (400..500).contains(&e.status()),
        "{} {}",
        e.status(),
        e.message()
    );
    Ok(())
}
