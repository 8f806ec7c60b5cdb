//! The workflow crate's diagnostic codes are codes of the protocol's error catalog: this
//! crate stays free of the wire contract, and this test keeps the two from drifting.

use gleitzeit_protocol::errors::ErrorCode;
use gleitzeit_workflow::codes;

#[test]
fn every_diagnostic_code_is_in_the_error_catalog() {
    let all = [
        codes::VALIDATION_FAILED,
        codes::CIRCULAR_DEPENDENCY,
        codes::SUBSTITUTION_FAILED,
        codes::INVALID_FIELD,
        codes::SCHEMA_VIOLATION,
        codes::UNKNOWN_METHOD,
        codes::YAML_PARSE_ERROR,
        codes::OUT_OF_RANGE,
        codes::TOO_LARGE,
        codes::ATTACHMENT_TOO_LARGE,
    ];
    for code in all {
        let known = ErrorCode::from_code(code);
        assert!(known.is_some(), "{code} is not in the catalog");
        assert_eq!(known.map(ErrorCode::as_str), Some(code));
    }
    let source = include_str!("../src/codes.rs");
    assert_eq!(
        source.matches("pub const").count(),
        all.len(),
        "a new code in codes.rs must be listed here"
    );
}
