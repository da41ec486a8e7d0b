//! Decision messages that speak about a call's arguments without quoting them.
//!
//! A decision message goes to audit logs and back to the client. It must never carry a value of
//! the call: an argument may hold a secret, a statement, or 10 MiB of text. So a schema failure
//! names the argument's JSON Pointer and the rule it broke (built here from the error's kind,
//! never from the validator's own text, which quotes the value), and every message built from
//! names of the call or the policy is cut to [`MAX_MESSAGE`] bytes.

use jsonschema::ValidationError;
use jsonschema::error::{TypeKind, ValidationErrorKind as K};
use serde_json::Value;

use crate::json::pointer;

/// The most bytes a message built by the evaluator holds.
pub(crate) const MAX_MESSAGE: usize = 1024;

/// The most bytes of a pointer or a name quoted in a message.
const MAX_NAME: usize = 256;

/// `s` cut to at most `max` bytes on a character boundary, with `…` appended when cut (the
/// result then holds at most `max` + 3 bytes).
pub(crate) fn bounded(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}…", s.get(..end).unwrap_or_default()))
}

/// A whole message, cut to [`MAX_MESSAGE`] bytes.
pub(crate) fn bounded_message(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        s = bounded(&s, MAX_MESSAGE - '…'.len_utf8()).into_owned();
    }
    s
}

/// The message of an `arguments` schema failure: the argument's pointer and the rule it broke.
pub(crate) fn schema_failure(e: &ValidationError<'_>) -> String {
    let at = e.instance_path().as_str();
    let at = if at.is_empty() { "/" } else { at };
    bounded_message(format!("argument `{}` is invalid: {}", bounded(at, MAX_NAME), rule_broken(e)))
}

/// What a schema failure broke, in words, from the error's kind only.
fn rule_broken(e: &ValidationError<'_>) -> String {
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let name = |s: &str| bounded(s, MAX_NAME).into_owned();
    let schema_value = |v: &Value| bounded(&v.to_string(), MAX_NAME).into_owned();
    match e.kind() {
        K::Type { kind: TypeKind::Single(t) } => format!("expected type `{t}`"),
        K::Type { kind: TypeKind::Multiple(types) } => {
            let names: Vec<String> = types.iter().map(|t| format!("`{t}`")).collect();
            format!("expected one of the types {}", names.join(", "))
        }
        K::MaxLength { limit } => {
            format!("is longer than {}", plural(*limit, "character", "characters"))
        }
        K::MinLength { limit } => {
            format!("is shorter than {}", plural(*limit, "character", "characters"))
        }
        K::Maximum { limit } => format!("is greater than the maximum of {}", schema_value(limit)),
        K::Minimum { limit } => format!("is less than the minimum of {}", schema_value(limit)),
        K::ExclusiveMaximum { limit } => {
            format!("is not less than the exclusive maximum of {}", schema_value(limit))
        }
        K::ExclusiveMinimum { limit } => {
            format!("is not greater than the exclusive minimum of {}", schema_value(limit))
        }
        K::MultipleOf { multiple_of } => format!("is not a multiple of {multiple_of}"),
        K::Format { format } => format!("is not a valid `{}` (`format`)", name(format)),
        K::Pattern { pattern } => format!("does not match the pattern `{}`", name(pattern)),
        K::BacktrackLimitExceeded { .. } | K::RegexEngineFailure { .. } => {
            "could not be checked against its `pattern` (the regex engine gave up)".to_owned()
        }
        K::Enum { .. } => "is not one of the values `enum` allows".to_owned(),
        K::Constant { .. } => "is not the value `const` requires".to_owned(),
        K::Required { property } => match property {
            Value::String(p) => format!("the required property `{}` is missing", name(p)),
            other => format!("a required property is missing: {}", schema_value(other)),
        },
        K::AdditionalProperties { unexpected } | K::UnevaluatedProperties { unexpected } => {
            let keyword = e.kind().keyword();
            match unexpected.first() {
                Some(first) => format!(
                    "the property `{}` is not allowed (`{keyword}`){}",
                    name(&pointer::join("", first)),
                    match unexpected.len() {
                        1 => String::new(),
                        n => format!(", nor {} more", plural(n as u64 - 1, "other", "others")),
                    }
                ),
                None => format!("has properties that `{keyword}` does not allow"),
            }
        }
        K::AdditionalItems { .. } => "has more items than the schema allows".to_owned(),
        K::UnevaluatedItems { unexpected } => format!(
            "has {} that `unevaluatedItems` does not allow",
            plural(unexpected.len() as u64, "item", "items")
        ),
        K::MaxItems { limit } => format!("has more than {}", plural(*limit, "item", "items")),
        K::MinItems { limit } => format!("has fewer than {}", plural(*limit, "item", "items")),
        K::MaxProperties { limit } => {
            format!("has more than {}", plural(*limit, "property", "properties"))
        }
        K::MinProperties { limit } => {
            format!("has fewer than {}", plural(*limit, "property", "properties"))
        }
        K::UniqueItems => "has duplicate items (`uniqueItems`)".to_owned(),
        K::Contains => "has no item that matches the `contains` schema".to_owned(),
        K::AnyOf { .. } => "matches none of the `anyOf` schemas".to_owned(),
        K::OneOfNotValid { .. } => "matches none of the `oneOf` schemas".to_owned(),
        K::OneOfMultipleValid { .. } => "matches more than one of the `oneOf` schemas".to_owned(),
        K::Not { .. } => "matches the schema under `not`".to_owned(),
        K::FalseSchema => {
            // `additionalProperties: false` and its kind fail as a `false` subschema at the
            // object: say which keyword refused.
            let schema_path = e.schema_path().as_str();
            let keyword = schema_path.rsplit('/').next().unwrap_or_default();
            match keyword {
                "additionalProperties" | "unevaluatedProperties" => {
                    format!("has a property that `{keyword}` does not allow")
                }
                "items" | "additionalItems" | "unevaluatedItems" => {
                    format!("has an item that `{keyword}` does not allow")
                }
                _ => "is not allowed (its schema is `false`)".to_owned(),
            }
        }
        K::PropertyNames { .. } => {
            "has a property name that `propertyNames` does not allow".to_owned()
        }
        K::ContentEncoding { content_encoding } => {
            format!("is not valid `{}` (`contentEncoding`)", name(content_encoding))
        }
        K::FromUtf8 { .. } => "does not decode to UTF-8 text (`contentEncoding`)".to_owned(),
        K::ContentMediaType { content_media_type } => {
            format!("is not valid `{}` (`contentMediaType`)", name(content_media_type))
        }
        K::Referencing(_) => {
            "could not be checked: a `$ref` of the schema does not resolve".to_owned()
        }
        K::Custom { keyword, .. } => format!("breaks `{}`", name(keyword)),
    }
}

/// Why the value at an `increment_from` path cannot count, by its type or sign only.
pub(crate) fn units_refused(path: &str, counter: &str, why: &str) -> String {
    bounded_message(format!(
        "`{}` must be a non-negative number to count against counter `{}`: {why}",
        bounded(path, MAX_NAME),
        bounded(counter, MAX_NAME)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_a_character_boundary() {
        assert_eq!(bounded("abc", 3), "abc");
        assert_eq!(bounded("abcd", 3), "abc…");
        // 'é' is two bytes: a cut inside it moves back.
        assert_eq!(bounded("aé", 2), "a…");
        let long = "é".repeat(2000);
        let m = bounded_message(long);
        assert!(m.len() <= MAX_MESSAGE, "{}", m.len());
        assert!(m.ends_with('…'));
    }
}
