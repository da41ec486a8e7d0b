//! `format` in argument schemas is asserted, and an unknown format fails to load (issue 10,
//! item 9).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use mcp_policy::{DecisionKind, DiagnosticKind, Evaluator, Policy, ToolCall};
use serde_json::json;

fn with_format(format: &str) -> String {
    format!(
        "{{\n  \"version\": \"1\",\n  \"default\": \"deny\",\n  \"tools\": {{\n    \"ping\": {{\n      \"arguments\": {{\"type\": \"object\", \"properties\": {{\n        \"host\": {{\"type\": \"string\", \"format\": \"{format}\"}}}}}}\n    }}\n  }}\n}}"
    )
}

fn decide(format: &str, host: &str) -> DecisionKind {
    let policy: Policy = with_format(format).parse().unwrap_or_else(|e| panic!("{e}"));
    let args = json!({ "host": host });
    Evaluator::new(policy).evaluate(&ToolCall::new("ping").with_arguments(&args)).kind()
}

#[test]
fn formats_are_asserted() {
    assert_eq!(decide("ipv4", "999.1.1.1"), DecisionKind::Deny);
    assert_eq!(decide("ipv4", "10.1.1.1"), DecisionKind::Allow);
    assert_eq!(decide("ipv6", "::1"), DecisionKind::Allow);
    assert_eq!(decide("ipv6", "10.1.1.1"), DecisionKind::Deny);
    assert_eq!(decide("hostname", "db-1.example.com"), DecisionKind::Allow);
    assert_eq!(decide("hostname", "db_1..example"), DecisionKind::Deny);
    assert_eq!(decide("uuid", "6f1c2e1a-3b4d-4e5f-8a9b-0c1d2e3f4a5b"), DecisionKind::Allow);
    assert_eq!(decide("uuid", "not-a-uuid"), DecisionKind::Deny);
    assert_eq!(decide("date", "2026-02-30"), DecisionKind::Deny);
    assert_eq!(decide("email", "a@example.com"), DecisionKind::Allow);
    assert_eq!(decide("email", "no at sign"), DecisionKind::Deny);
}

#[test]
fn a_format_failure_names_the_pointer_and_the_format() {
    let policy: Policy = with_format("ipv4").parse().unwrap();
    let args = json!({ "host": "999.1.1.1" });
    let d = Evaluator::new(policy).evaluate(&ToolCall::new("ping").with_arguments(&args));
    assert_eq!(d.rule(), "/tools/ping/arguments");
    assert_eq!(d.message(), "argument `/host` is invalid: is not a valid `ipv4` (`format`)");
}

#[test]
fn an_unknown_format_fails_to_load_and_names_it() {
    let err = with_format("ipv9").parse::<Policy>().unwrap_err();
    let d = &err.diagnostics()[0];
    assert_eq!(err.diagnostics().len(), 1, "{err}");
    assert_eq!(d.kind(), DiagnosticKind::UnknownFormat);
    assert_eq!(d.pointer(), "/tools/ping/arguments/properties/host/format");
    assert_eq!((d.line(), d.column()), (7, 46), "{d}");
    assert!(d.message().contains("`ipv9`"), "{}", d.message());
    assert!(d.message().contains("`ipv4`"), "lists the supported formats: {}", d.message());
}

#[test]
fn every_format_the_docs_list_loads() {
    for format in [
        "date",
        "date-time",
        "duration",
        "email",
        "hostname",
        "ipv4",
        "ipv6",
        "iri",
        "iri-reference",
        "json-pointer",
        "regex",
        "relative-json-pointer",
        "time",
        "uri",
        "uri-reference",
        "uri-template",
        "uuid",
    ] {
        with_format(format).parse::<Policy>().unwrap_or_else(|e| panic!("{format}: {e}"));
    }
    // Formats that need internationalised-name support, which this build leaves out.
    for format in ["idn-email", "idn-hostname", "IPv4", ""] {
        let err = with_format(format).parse::<Policy>().unwrap_err();
        assert_eq!(err.diagnostics()[0].kind(), DiagnosticKind::UnknownFormat, "{format}: {err}");
    }
}
