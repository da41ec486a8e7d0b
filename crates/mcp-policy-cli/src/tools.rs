//! A server's tool list: the JSON of a `tools/list` result.

use std::path::Path;

use serde::Deserialize;

/// One tool of a server, with what `mcp-policy` reads of it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Tool {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) description: Option<String>,
    #[serde(default)]
    pub(crate) annotations: Option<Annotations>,
}

/// MCP tool annotations (hints, which a server may set or not).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Annotations {
    #[serde(default)]
    pub(crate) read_only_hint: Option<bool>,
    #[serde(default)]
    pub(crate) destructive_hint: Option<bool>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ToolList {
    Wrapped { tools: Vec<Tool> },
    Bare(Vec<Tool>),
}

/// Reads a tool list: `{"tools": [...]}` or a bare array.
pub(crate) fn read(path: &Path) -> Result<Vec<Tool>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read tool list `{}`: {e}", path.display()))?;
    match serde_json::from_str::<ToolList>(&text) {
        Ok(ToolList::Wrapped { tools } | ToolList::Bare(tools)) => Ok(tools),
        Err(e) => Err(format!(
            "`{}` is not a tool list (the JSON of a `tools/list` result, `{{\"tools\": [...]}}`, \
             or a bare array of tools with a `name` each): {e}",
            path.display()
        )),
    }
}

/// Reads the tools of a `tools/list` result's `tools` array.
pub(crate) fn from_values(values: Vec<serde_json::Value>) -> Result<Vec<Tool>, String> {
    values
        .into_iter()
        .map(|v| {
            let name = v.get("name").and_then(|n| n.as_str()).unwrap_or("?").to_owned();
            serde_json::from_value(v).map_err(|e| format!("`{name}`: {e}"))
        })
        .collect()
}
