//! JSON test data several crates need: arbitrary values for property tests,
//! and the generated login records of the benchmarks and writer tests, so
//! each is written once.

use proptest::prelude::*;
use serde_json::{Value, json};

/// Any JSON value whose text round-trips through serde_json exactly: floats
/// are short decimals (its default float parsing is exact for those), and
/// strings and object keys are drawn from the regex `text` (`"\\PC*"` is
/// what `any::<String>()` draws).
pub fn arb_json(text: &'static str) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1_000_000_000i64..1_000_000_000).prop_map(|n| Value::from(n as f64 / 100.0)),
        text.prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 40, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(text, inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The `i`th generated login record: a plain login with a unique ip and
/// alternating device types, under the caller's `user_id` (whose length the
/// benchmarks choose).
pub fn login_record(i: usize, user_id: String) -> Value {
    json!({
        "user_id": user_id,
        "app_version": format!("{}.{}.{}", i % 9, i % 100, i % 10),
        "device_type": if i.is_multiple_of(2) { "android" } else { "ios" },
        "ip": format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
        "locale": "FR",
        "device_id": format!("{:03}-{:02}-{:04}", i % 1000, i % 100, i % 10000),
    })
}
