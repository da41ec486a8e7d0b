//! Malformed policy documents: each must fail to load with a diagnostic at the right pointer and
//! line whose message says what is wrong. None may panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use mcp_policy::{DiagnosticKind, Policy};

/// A document whose only tool `t` has the rule `rule`, written on line 5.
fn tool(rule: &str) -> String {
    format!(
        "{{\n  \"version\": \"1\",\n  \"default\": \"deny\",\n  \"tools\": {{\n    \"t\": {rule}\n  }}\n}}"
    )
}

/// A document whose tool `t` has one check of `key` with one condition `cond`, on line 5.
fn condition(key: &str, cond: &str) -> String {
    tool(&format!("{{\"{key}\": [{{\"conditions\": [{cond}]}}]}}"))
}

/// A document whose tool `t` has one limit `limit`, on line 5.
fn limit(limit: &str) -> String {
    tool(&format!("{{\"limits\": [{limit}]}}"))
}

struct Case {
    name: &'static str,
    doc: String,
    pointer: &'static str,
    line: usize,
    phrase: &'static str,
    kind: DiagnosticKind,
}

fn case(
    name: &'static str,
    doc: impl Into<String>,
    pointer: &'static str,
    line: usize,
    kind: DiagnosticKind,
    phrase: &'static str,
) -> Case {
    Case { name, doc: doc.into(), pointer, line, phrase, kind }
}

use DiagnosticKind as K;

fn cases() -> Vec<Case> {
    let l = limit;
    vec![
        // --- syntax
        case("not json", "{\n  \"version\": \"1\",\n  oops\n}", "", 3, K::Syntax, "expected a key"),
        case(
            "trailing comma",
            "{\"version\": \"1\",\n\"default\": \"deny\",\n}",
            "",
            3,
            K::Syntax,
            "expected a key",
        ),
        case(
            "unterminated string",
            "{\n\"version\": \"1",
            "/version",
            2,
            K::Syntax,
            "unterminated string",
        ),
        case(
            "bad literal",
            "{\n\"version\": \"1\",\n\"default\": nul}",
            "/default",
            3,
            K::Syntax,
            "expected a value",
        ),
        case(
            "text after document",
            "{\"version\": \"1\", \"default\": \"deny\"}\n{}",
            "",
            2,
            K::Syntax,
            "after the end",
        ),
        case("empty text", "", "", 1, K::Syntax, "unexpected end"),
        case(
            "huge number",
            "{\"version\": \"1\", \"default\": \"deny\",\n\"description\": 1e999}",
            "/description",
            2,
            K::Syntax,
            "number out of range",
        ),
        case(
            "control char in string",
            "{\"version\": \"1\",\n\"description\": \"a\tb\"}",
            "/description",
            2,
            K::Syntax,
            "control character",
        ),
        case(
            "bad escape",
            "{\"version\": \"1\",\n\"description\": \"\\q\"}",
            "/description",
            2,
            K::Syntax,
            "escape",
        ),
        case(
            "lone surrogate",
            "{\"version\": \"1\",\n\"description\": \"\\udc00\"}",
            "/description",
            2,
            K::Syntax,
            "lone surrogate",
        ),
        case(
            "too deep",
            format!(
                "{{\"version\": \"1\", \"default\": \"deny\",\n\"description\": {}}}",
                "[".repeat(200)
            ),
            "/description/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0",
            2,
            K::TooDeep,
            "nested more than 128",
        ),
        // --- duplicates
        case(
            "duplicate tool",
            "{\"version\": \"1\", \"default\": \"deny\", \"tools\": {\n\"cancel_run\": {},\n\"cancel_run\": {\"limits\": []}}}",
            "/tools/cancel_run",
            3,
            K::DuplicateKey,
            "duplicate key `cancel_run`",
        ),
        case(
            "duplicate top-level key",
            "{\"version\": \"1\",\n\"default\": \"deny\",\n\"default\": \"allow\"}",
            "/default",
            3,
            K::DuplicateKey,
            "duplicate key `default`",
        ),
        case(
            "duplicate limit key",
            l("{\"counter\": \"c\", \"window\": \"minute\", \"max\": 1, \"max\": 100}"),
            "/tools/t/limits/0/max",
            5,
            K::DuplicateKey,
            "duplicate key `max`",
        ),
        // --- document level
        case("not an object", "[1, 2]", "", 1, K::WrongType, "a policy document (a JSON object)"),
        case(
            "missing version",
            "{\n\"default\": \"deny\"}",
            "",
            1,
            K::MissingKey,
            "missing required key `version`",
        ),
        case(
            "missing default",
            "{\"version\": \"1\"}",
            "",
            1,
            K::MissingKey,
            "missing required key `default`",
        ),
        case(
            "version 2",
            "{\n\"version\": \"2\",\n\"default\": \"deny\"}",
            "/version",
            2,
            K::UnsupportedVersion,
            "the supported version is \"1\"",
        ),
        case(
            "version as number",
            "{\n\"version\": 1,\n\"default\": \"deny\"}",
            "/version",
            2,
            K::WrongType,
            "the string \"1\"",
        ),
        case(
            "default typo",
            "{\"version\": \"1\",\n\"default\": \"deni\"}",
            "/default",
            2,
            K::InvalidValue,
            "did you mean `deny`?",
        ),
        case(
            "default wrong type",
            "{\"version\": \"1\",\n\"default\": false}",
            "/default",
            2,
            K::WrongType,
            "expected default decision",
        ),
        case(
            "unknown top-level key",
            "{\"version\": \"1\", \"default\": \"deny\",\n\"tool\": {}}",
            "/tool",
            2,
            K::UnknownKey,
            "did you mean `tools`?",
        ),
        case(
            "unknown key no suggestion",
            "{\"version\": \"1\", \"default\": \"deny\",\n\"zzzzzzzz\": {}}",
            "/zzzzzzzz",
            2,
            K::UnknownKey,
            "takes `$schema`",
        ),
        case(
            "description not string",
            "{\"version\": \"1\", \"default\": \"deny\",\n\"description\": 5}",
            "/description",
            2,
            K::WrongType,
            "expected a string",
        ),
        case(
            "$schema not string",
            "{\"version\": \"1\", \"default\": \"deny\",\n\"$schema\": true}",
            "/$schema",
            2,
            K::WrongType,
            "expected a string",
        ),
        case(
            "hide not array",
            "{\"version\": \"1\", \"default\": \"deny\",\n\"hide\": \"delete_*\"}",
            "/hide",
            2,
            K::WrongType,
            "an array of tool names",
        ),
        case(
            "hide entry empty",
            "{\"version\": \"1\", \"default\": \"deny\",\n\"hide\": [\"a\", \"\"]}",
            "/hide/1",
            2,
            K::InvalidValue,
            "empty tool pattern",
        ),
        case(
            "hide entry number",
            "{\"version\": \"1\", \"default\": \"deny\",\n\"hide\": [3]}",
            "/hide/0",
            2,
            K::WrongType,
            "expected a string",
        ),
        case(
            "tools not object",
            "{\"version\": \"1\", \"default\": \"deny\",\n\"tools\": []}",
            "/tools",
            2,
            K::WrongType,
            "an object of tool names",
        ),
        case(
            "empty tool key",
            "{\"version\": \"1\", \"default\": \"deny\", \"tools\": {\n\"\": {}}}",
            "/tools/",
            2,
            K::InvalidValue,
            "empty tool pattern",
        ),
        case(
            "all_tools not object",
            "{\"version\": \"1\", \"default\": \"deny\",\n\"all_tools\": 1}",
            "/all_tools",
            2,
            K::WrongType,
            "a rule (a JSON object)",
        ),
        case(
            "all_tools unknown key",
            "{\"version\": \"1\", \"default\": \"deny\",\n\"all_tools\": {\"limit\": []}}",
            "/all_tools/limit",
            2,
            K::UnknownKey,
            "did you mean `limits`?",
        ),
        // --- rule level
        case(
            "rule not object",
            tool("true"),
            "/tools/t",
            5,
            K::WrongType,
            "a rule (a JSON object)",
        ),
        case(
            "limts typo",
            tool("{\"limts\": []}"),
            "/tools/t/limts",
            5,
            K::UnknownKey,
            "did you mean `limits`?",
        ),
        case(
            "deny_of typo",
            tool("{\"deny_of\": []}"),
            "/tools/t/deny_of",
            5,
            K::UnknownKey,
            "did you mean `deny_if`?",
        ),
        case(
            "require not array",
            tool("{\"require\": {}}"),
            "/tools/t/require",
            5,
            K::WrongType,
            "an array of checks",
        ),
        case(
            "arguments not schema",
            tool("{\"arguments\": 5}"),
            "/tools/t/arguments",
            5,
            K::WrongType,
            "a JSON Schema",
        ),
        case(
            "arguments bad type keyword",
            tool("{\"arguments\": {\"type\": \"objekt\"}}"),
            "/tools/t/arguments/type",
            5,
            K::InvalidSchema,
            "invalid JSON Schema",
        ),
        case(
            "arguments bad minLength",
            tool("{\"arguments\": {\"properties\": {\"a\": {\"minLength\": -1}}}}"),
            "/tools/t/arguments/properties/a/minLength",
            5,
            K::InvalidSchema,
            "invalid JSON Schema",
        ),
        case(
            "arguments external ref",
            tool("{\"arguments\": {\"$ref\": \"https://example.com/s.json\"}}"),
            "/tools/t/arguments",
            5,
            K::InvalidSchema,
            "invalid JSON Schema",
        ),
        case(
            "rule description number",
            tool("{\"description\": []}"),
            "/tools/t/description",
            5,
            K::WrongType,
            "expected a string",
        ),
        // --- checks and conditions
        case(
            "check not object",
            tool("{\"deny_if\": [1]}"),
            "/tools/t/deny_if/0",
            5,
            K::WrongType,
            "a check (a JSON object)",
        ),
        case(
            "check missing conditions",
            tool("{\"deny_if\": [{\"on_deny\": \"no\"}]}"),
            "/tools/t/deny_if/0",
            5,
            K::MissingKey,
            "missing required key `conditions`",
        ),
        case(
            "reason in deny_if",
            tool("{\"deny_if\": [{\"conditions\": [], \"reason\": \"x\"}]}"),
            "/tools/t/deny_if/0/reason",
            5,
            K::UnknownKey,
            "unknown key `reason`",
        ),
        case(
            "on_deny in approve_if",
            tool("{\"approve_if\": [{\"conditions\": [], \"on_deny\": \"x\"}]}"),
            "/tools/t/approve_if/0/on_deny",
            5,
            K::UnknownKey,
            "unknown key `on_deny`",
        ),
        case(
            "on_deny not string",
            tool("{\"require\": [{\"conditions\": [], \"on_deny\": 1}]}"),
            "/tools/t/require/0/on_deny",
            5,
            K::WrongType,
            "expected a string",
        ),
        case(
            "conditions not array",
            tool("{\"deny_if\": [{\"conditions\": {}}]}"),
            "/tools/t/deny_if/0/conditions",
            5,
            K::WrongType,
            "an array of conditions",
        ),
        case(
            "condition missing op",
            condition("deny_if", "{\"path\": \"args.a\", \"value\": 1}"),
            "/tools/t/deny_if/0/conditions/0",
            5,
            K::MissingKey,
            "missing required key `op`",
        ),
        case(
            "condition missing path",
            condition("deny_if", "{\"op\": \"eq\", \"value\": 1}"),
            "/tools/t/deny_if/0/conditions/0",
            5,
            K::MissingKey,
            "missing required key `path`",
        ),
        case(
            "condition missing value",
            condition("deny_if", "{\"path\": \"args.a\", \"op\": \"eq\"}"),
            "/tools/t/deny_if/0/conditions/0",
            5,
            K::MissingKey,
            "op `eq` compares with a value",
        ),
        case(
            "unknown op",
            condition("deny_if", "{\"path\": \"args.a\", \"op\": \"equals\", \"value\": 1}"),
            "/tools/t/deny_if/0/conditions/0/op",
            5,
            K::InvalidValue,
            "unknown op `equals`",
        ),
        case(
            "op typo",
            condition("deny_if", "{\"path\": \"args.a\", \"op\": \"regx\", \"value\": \"a\"}"),
            "/tools/t/deny_if/0/conditions/0/op",
            5,
            K::InvalidValue,
            "did you mean `regex`?",
        ),
        case(
            "condition unknown key",
            condition("deny_if", "{\"path\": \"args.a\", \"op\": \"exists\", \"vaule\": true}"),
            "/tools/t/deny_if/0/conditions/0/vaule",
            5,
            K::UnknownKey,
            "did you mean `value`?",
        ),
        case(
            "path empty segment",
            condition("deny_if", "{\"path\": \"args..x\", \"op\": \"exists\"}"),
            "/tools/t/deny_if/0/conditions/0/path",
            5,
            K::InvalidPath,
            "empty segment",
        ),
        case(
            "path bad root",
            condition("deny_if", "{\"path\": \"arguments.x\", \"op\": \"exists\"}"),
            "/tools/t/deny_if/0/conditions/0/path",
            5,
            K::InvalidPath,
            "starts with `arguments`",
        ),
        case(
            "path bad pointer escape",
            condition("deny_if", "{\"path\": \"/args/a~2\", \"op\": \"exists\"}"),
            "/tools/t/deny_if/0/conditions/0/path",
            5,
            K::InvalidPath,
            "invalid JSON Pointer",
        ),
        case(
            "path not string",
            condition("deny_if", "{\"path\": [\"args\"], \"op\": \"exists\"}"),
            "/tools/t/deny_if/0/conditions/0/path",
            5,
            K::WrongType,
            "expected a string",
        ),
        case(
            "path empty",
            condition("deny_if", "{\"path\": \"\", \"op\": \"exists\"}"),
            "/tools/t/deny_if/0/conditions/0/path",
            5,
            K::InvalidPath,
            "empty segment",
        ),
        case(
            "invalid regex",
            condition(
                "deny_if",
                "{\"path\": \"args.s\", \"op\": \"regex\", \"value\": \"(unclosed\"}",
            ),
            "/tools/t/deny_if/0/conditions/0/value",
            5,
            K::InvalidRegex,
            "invalid regex `(unclosed`",
        ),
        case(
            "regex not string",
            condition("deny_if", "{\"path\": \"args.s\", \"op\": \"regex\", \"value\": 5}"),
            "/tools/t/deny_if/0/conditions/0/value",
            5,
            K::WrongType,
            "a regex (a string) for op `regex`",
        ),
        case(
            "in not array",
            condition("deny_if", "{\"path\": \"args.s\", \"op\": \"in\", \"value\": \"a\"}"),
            "/tools/t/deny_if/0/conditions/0/value",
            5,
            K::WrongType,
            "an array of values for op `in`",
        ),
        case(
            "not_in not array",
            condition("deny_if", "{\"path\": \"args.s\", \"op\": \"not_in\", \"value\": {}}"),
            "/tools/t/deny_if/0/conditions/0/value",
            5,
            K::WrongType,
            "for op `not_in`",
        ),
        case(
            "gt on string value",
            condition("deny_if", "{\"path\": \"args.n\", \"op\": \"gt\", \"value\": \"10\"}"),
            "/tools/t/deny_if/0/conditions/0/value",
            5,
            K::WrongType,
            "a number for op `gt`",
        ),
        case(
            "lte on null",
            condition("require", "{\"path\": \"args.n\", \"op\": \"lte\", \"value\": null}"),
            "/tools/t/require/0/conditions/0/value",
            5,
            K::WrongType,
            "a number for op `lte`",
        ),
        case(
            "starts_with number",
            condition("deny_if", "{\"path\": \"args.s\", \"op\": \"starts_with\", \"value\": 1}"),
            "/tools/t/deny_if/0/conditions/0/value",
            5,
            K::WrongType,
            "a string for op `starts_with`",
        ),
        case(
            "ends_with array",
            condition("deny_if", "{\"path\": \"args.s\", \"op\": \"ends_with\", \"value\": []}"),
            "/tools/t/deny_if/0/conditions/0/value",
            5,
            K::WrongType,
            "a string for op `ends_with`",
        ),
        case(
            "exists with string",
            condition("deny_if", "{\"path\": \"args.s\", \"op\": \"exists\", \"value\": \"yes\"}"),
            "/tools/t/deny_if/0/conditions/0/value",
            5,
            K::WrongType,
            "a boolean for op `exists`",
        ),
        case(
            "within relative",
            condition(
                "require",
                "{\"path\": \"args.p\", \"op\": \"within\", \"value\": \"srv/data\"}",
            ),
            "/tools/t/require/0/conditions/0/value",
            5,
            K::InvalidValue,
            "does not start with `/`",
        ),
        case(
            "within empty list",
            condition("require", "{\"path\": \"args.p\", \"op\": \"within\", \"value\": []}"),
            "/tools/t/require/0/conditions/0/value",
            5,
            K::InvalidValue,
            "at least one directory",
        ),
        case(
            "within list entry",
            condition(
                "require",
                "{\"path\": \"args.p\", \"op\": \"within\", \"value\": [\"/a\", 3]}",
            ),
            "/tools/t/require/0/conditions/0/value/1",
            5,
            K::WrongType,
            "an absolute directory path",
        ),
        case(
            "within number",
            condition("require", "{\"path\": \"args.p\", \"op\": \"within\", \"value\": 3}"),
            "/tools/t/require/0/conditions/0/value",
            5,
            K::WrongType,
            "an absolute path",
        ),
        // --- limits
        case(
            "limit not object",
            l("\"10/minute\""),
            "/tools/t/limits/0",
            5,
            K::WrongType,
            "a limit (a JSON object)",
        ),
        case(
            "limit missing max",
            l("{\"counter\": \"c\", \"window\": \"minute\"}"),
            "/tools/t/limits/0",
            5,
            K::MissingKey,
            "missing required key `max`",
        ),
        case(
            "limit missing counter",
            l("{\"window\": \"minute\", \"max\": 1}"),
            "/tools/t/limits/0",
            5,
            K::MissingKey,
            "missing required key `counter`",
        ),
        case(
            "limit empty counter",
            l("{\"counter\": \"\", \"window\": \"minute\", \"max\": 1}"),
            "/tools/t/limits/0/counter",
            5,
            K::InvalidValue,
            "empty counter name",
        ),
        case(
            "max zero",
            l("{\"counter\": \"c\", \"window\": \"minute\", \"max\": 0}"),
            "/tools/t/limits/0/max",
            5,
            K::InvalidValue,
            "from 1 to 2^53",
        ),
        case(
            "max negative",
            l("{\"counter\": \"c\", \"window\": \"minute\", \"max\": -5}"),
            "/tools/t/limits/0/max",
            5,
            K::InvalidValue,
            "found `-5`",
        ),
        case(
            "max above 2^53",
            l("{\"counter\": \"c\", \"window\": \"minute\", \"max\": 9007199254740993}"),
            "/tools/t/limits/0/max",
            5,
            K::InvalidValue,
            "from 1 to 2^53",
        ),
        case(
            "max fractional",
            l("{\"counter\": \"c\", \"window\": \"minute\", \"max\": 2.5}"),
            "/tools/t/limits/0/max",
            5,
            K::InvalidValue,
            "a fractional number",
        ),
        case(
            "max as string",
            l("{\"counter\": \"c\", \"window\": \"minute\", \"max\": \"10\"}"),
            "/tools/t/limits/0/max",
            5,
            K::WrongType,
            "a whole number",
        ),
        case(
            "window typo",
            l("{\"counter\": \"c\", \"window\": \"minuet\", \"max\": 1}"),
            "/tools/t/limits/0/window",
            5,
            K::InvalidValue,
            "did you mean `minute`?",
        ),
        case(
            "window with a unit",
            l("{\"counter\": \"c\", \"window\": \"1m\", \"max\": 1}"),
            "/tools/t/limits/0/window",
            5,
            K::InvalidValue,
            "unknown window `1m`: a window is a name (`second`, `minute`, `hour`, `day`) or a number of whole seconds (`60`); write `60`",
        ),
        case(
            "increment_from without args",
            l(
                "{\"counter\": \"c\", \"window\": \"minute\", \"max\": 5, \"increment_from\": \"amount\"}",
            ),
            "/tools/t/limits/0/increment_from",
            5,
            K::InvalidPath,
            "did you mean `args.amount`?",
        ),
        case(
            "schema type typo",
            tool("{\"arguments\": {\"properties\": {\"n\": {\"type\": \"numbr\"}}}}"),
            "/tools/t/arguments/properties/n/type",
            5,
            K::InvalidSchema,
            "keyword `type` has the value `numbr`, which is not a JSON Schema type",
        ),
        case(
            "window zero",
            l("{\"counter\": \"c\", \"window\": 0, \"max\": 1}"),
            "/tools/t/limits/0/window",
            5,
            K::InvalidValue,
            "a window in seconds must be a whole number",
        ),
        case(
            "window fractional",
            l("{\"counter\": \"c\", \"window\": 1.5, \"max\": 1}"),
            "/tools/t/limits/0/window",
            5,
            K::InvalidValue,
            "a fractional number",
        ),
        case(
            "window bool",
            l("{\"counter\": \"c\", \"window\": true, \"max\": 1}"),
            "/tools/t/limits/0/window",
            5,
            K::WrongType,
            "a number of seconds",
        ),
        case(
            "scope unknown",
            l("{\"counter\": \"c\", \"window\": \"minute\", \"max\": 1, \"scope\": \"user\"}"),
            "/tools/t/limits/0/scope",
            5,
            K::InvalidValue,
            "unknown scope `user`",
        ),
        case(
            "increment above max",
            l("{\"counter\": \"c\", \"window\": \"minute\", \"max\": 5, \"increment\": 6}"),
            "/tools/t/limits/0/increment",
            5,
            K::InvalidValue,
            "could never admit a call",
        ),
        case(
            "increment zero",
            l("{\"counter\": \"c\", \"window\": \"minute\", \"max\": 5, \"increment\": 0}"),
            "/tools/t/limits/0/increment",
            5,
            K::InvalidValue,
            "`increment` must be a whole number",
        ),
        case(
            "increment and increment_from",
            l(
                "{\"counter\": \"c\", \"window\": \"minute\", \"max\": 5, \"increment\": 1, \"increment_from\": \"args.n\"}",
            ),
            "/tools/t/limits/0/increment_from",
            5,
            K::InvalidValue,
            "not both",
        ),
        case(
            "increment_from bad path",
            l(
                "{\"counter\": \"c\", \"window\": \"minute\", \"max\": 5, \"increment_from\": \"amount\"}",
            ),
            "/tools/t/limits/0/increment_from",
            5,
            K::InvalidPath,
            "starts with `amount`",
        ),
        case(
            "sliding not bool",
            l("{\"counter\": \"c\", \"window\": \"minute\", \"max\": 5, \"sliding\": \"yes\"}"),
            "/tools/t/limits/0/sliding",
            5,
            K::WrongType,
            "a boolean",
        ),
        case(
            "limit unknown key",
            l("{\"counter\": \"c\", \"window\": \"minute\", \"max\": 5, \"scop\": \"grant\"}"),
            "/tools/t/limits/0/scop",
            5,
            K::UnknownKey,
            "did you mean `scope`?",
        ),
        // --- whole-document checks
        case(
            "ambiguous patterns",
            "{\"version\": \"1\", \"default\": \"deny\", \"tools\": {\n\"list_*\": {},\n\"*_jobs\": {}}}",
            "/tools/list_*",
            2,
            K::AmbiguousPattern,
            "both match `list_jobs`",
        ),
        case(
            "conflicting counter window",
            "{\"version\": \"1\", \"default\": \"deny\",\n\"all_tools\": {\"limits\": [{\"counter\": \"calls\", \"window\": \"minute\", \"max\": 100}]},\n\"tools\": {\"t\": {\"limits\": [{\"counter\": \"calls\", \"window\": \"hour\", \"max\": 10}]}}}",
            "/tools/t/limits/0",
            3,
            K::ConflictingCounter,
            "counter `calls` is also used at `/all_tools/limits/0`",
        ),
        case(
            "conflicting counter scope",
            "{\"version\": \"1\", \"default\": \"deny\", \"tools\": {\"a\": {\"limits\": [{\"counter\": \"c\", \"window\": 60, \"max\": 1}]},\n\"b\": {\"limits\": [{\"counter\": \"c\", \"window\": \"minute\", \"max\": 1, \"scope\": \"global\"}]}}}",
            "/tools/b/limits/0",
            2,
            K::ConflictingCounter,
            "`scope` `global` here, `grant` there",
        ),
        case(
            "conflicting counter sliding",
            "{\"version\": \"1\", \"default\": \"deny\", \"tools\": {\"a\": {\"limits\": [{\"counter\": \"c\", \"window\": 60, \"max\": 1}]},\n\"b\": {\"limits\": [{\"counter\": \"c\", \"window\": 60, \"max\": 1, \"sliding\": true}]}}}",
            "/tools/b/limits/0",
            2,
            K::ConflictingCounter,
            "`sliding` true here, false there",
        ),
        case(
            "tool key with slash",
            "{\"version\": \"1\", \"default\": \"deny\", \"tools\": {\n\"a/b~c\": {\"limts\": 1}}}",
            "/tools/a~1b~0c/limts",
            2,
            K::UnknownKey,
            "did you mean `limits`?",
        ),
    ]
}

#[test]
fn at_least_sixty_cases() {
    assert!(cases().len() >= 60, "{}", cases().len());
}

#[test]
fn every_malformed_document_is_reported_where_it_is_wrong() {
    let mut failures = Vec::new();
    for c in cases() {
        let err = match Policy::from_json_str(&c.doc) {
            Ok(_) => {
                failures.push(format!("{}: loaded, but must not", c.name));
                continue;
            }
            Err(e) => e,
        };
        let found = err.diagnostics().iter().find(|d| d.pointer() == c.pointer);
        match found {
            None => failures.push(format!(
                "{}: no diagnostic at `{}`; got: {:?}",
                c.name,
                c.pointer,
                err.diagnostics().iter().map(|d| (d.pointer(), d.message())).collect::<Vec<_>>()
            )),
            Some(d) => {
                if d.line() != c.line {
                    failures.push(format!("{}: line {} instead of {}", c.name, d.line(), c.line));
                }
                if !d.message().contains(c.phrase) {
                    failures.push(format!(
                        "{}: message `{}` lacks `{}`",
                        c.name,
                        d.message(),
                        c.phrase
                    ));
                }
                if d.kind() != c.kind {
                    failures.push(format!(
                        "{}: kind {:?} instead of {:?}",
                        c.name,
                        d.kind(),
                        c.kind
                    ));
                }
                if d.column() == 0 {
                    failures.push(format!("{}: column 0", c.name));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn all_problems_are_reported_at_once_in_document_order() {
    let doc = r#"{
  "version": "1",
  "default": "deny",
  "tools": {
    "a": { "limts": [] },
    "b": { "limits": [{ "counter": "c", "window": "minute", "max": 0 }] },
    "c": { "deny_if": [{ "conditions": [{ "path": "args.x", "op": "regex", "value": "(" }] }] },
    "a": {}
  }
}"#;
    let err = Policy::from_json_str(doc).unwrap_err();
    let got: Vec<(usize, &str)> =
        err.diagnostics().iter().map(|d| (d.line(), d.pointer())).collect();
    assert_eq!(
        got,
        vec![
            (5, "/tools/a/limts"),
            (6, "/tools/b/limits/0/max"),
            (7, "/tools/c/deny_if/0/conditions/0/value"),
            (8, "/tools/a"),
        ]
    );
}

#[test]
fn columns_point_at_the_offending_text() {
    let doc = "{\n  \"version\": \"1\",\n  \"default\": \"deny\",\n  \"tools\": { \"t\": { \"limts\": [] } }\n}";
    let err = Policy::from_json_str(doc).unwrap_err();
    let d = &err.diagnostics()[0];
    assert_eq!((d.line(), d.column()), (4, 21));
    // Columns count characters, not bytes.
    let doc = "{\"version\": \"1\", \"default\": \"deny\", \"description\": \"é\", \"oops\": 1}";
    let err = Policy::from_json_str(doc).unwrap_err();
    let d = &err.diagnostics()[0];
    assert_eq!(d.column(), 57);
}

#[test]
fn display_lists_every_problem() {
    let err = Policy::from_json_str("{\"version\": \"2\", \"default\": \"maybe\"}").unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("invalid policy: 2 problems"), "{text}");
    assert!(text.contains("1:13: unsupported policy version `2`"), "{text}");
    assert!(text.contains("(at /default)"), "{text}");
}

#[test]
fn a_missing_file_is_a_read_error() {
    let err = Policy::from_path("/nonexistent/policy.json").unwrap_err();
    assert!(matches!(err, mcp_policy::PolicyError::Read(_)));
    assert!(err.to_string().contains("/nonexistent/policy.json"));
    assert!(err.diagnostics().is_empty());
}
