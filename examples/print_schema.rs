//! Prints the JSON Schema of the policy document (the bytes of `docs/policy.schema.json`).
fn main() {
    print!("{}", mcp_policy::Policy::json_schema_text());
}
