//! The compile stage of `arguments` schemas: JSON Schema 2020-12 with `format` asserted.

use serde_json::Value;

use super::super::compiled::Arguments;
use super::DiagnosticKind;
use super::compile::Compiler;
use super::messages::{flatten, list, schema_message, wrong_type};

/// The `format` values that argument schemas assert (draft 2020-12, as the validator checks
/// them). Any other `format` is a load error: it would silently check nothing.
pub(super) const FORMATS: &[&str] = &[
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
];

/// The validator of an `arguments` schema: draft 2020-12, `format` asserted (not merely
/// annotated), an unknown `format` an error.
pub(super) fn argument_validator(
    schema: &Value,
) -> Result<jsonschema::Validator, jsonschema::ValidationError<'_>> {
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .should_ignore_unknown_formats(false)
        .build(schema)
}

impl Compiler<'_> {
    pub(super) fn arguments_schema(&mut self, schema: &Value, ptr: &str) -> Option<Arguments> {
        if !matches!(schema, Value::Object(_) | Value::Bool(_)) {
            self.problems.push(wrong_type(ptr, "a JSON Schema (an object or a boolean)", schema));
            return None;
        }
        let mut bad = false;
        if let Err(e) = jsonschema::draft202012::meta::validate(schema) {
            let at = e.instance_path().as_str();
            let message = schema_message(at, e.instance(), &e.to_string());
            self.problem(format!("{ptr}{at}"), DiagnosticKind::InvalidSchema, message);
            bad = true;
        }
        if bad {
            return None;
        }
        match argument_validator(schema) {
            Ok(validator) => Some(Arguments { pointer: ptr.into(), validator }),
            Err(e) => {
                let at = e.schema_path().as_str();
                let unknown_format = match (e.kind(), e.instance().as_ref()) {
                    (jsonschema::error::ValidationErrorKind::Custom { .. }, Value::String(f))
                        if at.ends_with("/format") =>
                    {
                        Some(f.clone())
                    }
                    _ => None,
                };
                match unknown_format {
                    Some(format) => self.problem(
                        format!("{ptr}{at}"),
                        DiagnosticKind::UnknownFormat,
                        format!(
                            "unknown `format` `{format}` in `arguments`: an argument could never \
                             be checked against it; the supported formats are {}",
                            list(FORMATS)
                        ),
                    ),
                    None => self.problem(
                        ptr,
                        DiagnosticKind::InvalidSchema,
                        format!("invalid JSON Schema for `arguments`: {}", flatten(&e.to_string())),
                    ),
                }
                None
            }
        }
    }
}
