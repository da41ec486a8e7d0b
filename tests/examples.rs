//! Every example policy loads; the published schema matches the types and accepts them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

use mcp_policy::Policy;
use mcp_policy::model::PolicyDocument;

fn example_policies() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("policy.json"))
        .collect();
    found.sort();
    found
}

#[test]
fn the_seed_policy_and_every_example_load() {
    let policies = example_policies();
    let names: Vec<String> =
        policies.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert!(names.contains(&"seed-policy.json".to_owned()), "{names:?}");
    assert!(policies.len() >= 3, "{names:?}");
    for path in policies {
        if let Err(e) = Policy::from_path(&path) {
            panic!("{}: {e}", path.display());
        }
    }
}

#[test]
fn the_model_reads_what_the_loader_reads() {
    // The serde types (and so the schema made from them) agree with the strict loader.
    for path in example_policies() {
        let text = std::fs::read_to_string(&path).unwrap();
        let policy = Policy::from_json_str(&text).unwrap();
        let via_serde: PolicyDocument = serde_json::from_str(&text).unwrap();
        assert_eq!(policy.document(), &via_serde, "{}", path.display());
        // And the model serialises back to a document that loads to the same digest.
        let again = Policy::from_json_str(&serde_json::to_string(&via_serde).unwrap()).unwrap();
        assert_eq!(again.digest(), policy.digest(), "{}", path.display());
    }
}

#[test]
fn the_published_schema_is_the_generated_one() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/policy.schema.json");
    let published = std::fs::read_to_string(&path).unwrap();
    assert!(
        published == Policy::json_schema_text(),
        "docs/policy.schema.json is stale: run `cargo run --example print_schema > docs/policy.schema.json`"
    );
}

#[test]
fn the_schema_accepts_every_example_and_rejects_typos() {
    let validator = jsonschema::draft202012::new(&Policy::json_schema()).unwrap();
    for path in example_policies() {
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
    }
    for bad in [
        serde_json::json!({"version": "1", "default": "deny", "tools": {"t": {"limts": []}}}),
        serde_json::json!({"version": "2", "default": "deny"}),
        serde_json::json!({"version": "1", "default": "deny", "tools": {"t": {"limits": [{"counter": "c", "window": "minute", "max": 0}]}}}),
        serde_json::json!({"version": "1", "default": "deny", "description": null}),
        serde_json::json!({"version": "1", "default": "maybe"}),
    ] {
        assert!(!validator.is_valid(&bad), "{bad}");
        assert!(Policy::from_json_str(&bad.to_string()).is_err(), "{bad}");
    }
}

#[test]
fn the_schema_gives_editors_descriptions() {
    let schema = Policy::json_schema();
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    let limit = &schema["$defs"]["Limit"]["properties"];
    for key in ["counter", "window", "max", "scope", "increment", "increment_from", "sliding"] {
        assert!(limit[key]["description"].is_string(), "{key}");
    }
}
