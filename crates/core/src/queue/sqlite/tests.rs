//! Tests of the pure helpers.

use super::MAX_MESSAGE_BYTES;
use super::receive::{handle, parse_handle};
use super::rules::refusal;

#[test]
fn handles_round_trip_and_garbage_is_refused() {
    assert_eq!(
        parse_handle(&handle(42, 0x7fff_0001)),
        Some((42, 0x7fff_0001))
    );
    for bad in ["", "42", ".", "x.1", "1.zz", "1.ffffffffffffffff", "1.2.3"] {
        assert_eq!(parse_handle(bad), None, "{bad}");
    }
}

#[test]
fn refusals_follow_sqs() {
    assert_eq!(refusal("{}"), None);
    assert_eq!(refusal("tab\tand\nlines\r and ünïcode 🦀"), None);
    assert_eq!(refusal(""), Some("MissingParameter"));
    assert_eq!(refusal("nul\u{0}"), Some("InvalidMessageContents"));
    assert_eq!(refusal("\u{FFFF}"), Some("InvalidMessageContents"));
    assert_eq!(refusal(&"x".repeat(MAX_MESSAGE_BYTES)), None);
    assert_eq!(
        refusal(&"x".repeat(MAX_MESSAGE_BYTES + 1)),
        Some("MessageTooLong")
    );
}
