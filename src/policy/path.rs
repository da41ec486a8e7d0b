//! Paths into the call document `{tool, args, context, grant, session}`.
//!
//! A path is written dotted (`args.cluster.num_workers`) or as a JSON Pointer (`/args/a.b/0`, for
//! keys that contain dots). Each segment after the first is an object key, or an array index when
//! it is a non-negative integer without leading zeros and the value there is an array.

use std::fmt;

/// The first segment of a path: which part of the call it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Root {
    Tool,
    Args,
    Context,
    Grant,
    Session,
}

/// One segment after the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) key: Box<str>,
    /// The segment as an array index, when it is written as one.
    pub(crate) index: Option<usize>,
}

/// A parsed, valid path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Path {
    pub(crate) root: Root,
    pub(crate) segments: Box<[Segment]>,
    text: Box<str>,
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parses a path, or says in plain words what is wrong with it.
pub(crate) fn parse(text: &str) -> Result<Path, String> {
    let tokens: Vec<String> = if text.starts_with('/') {
        crate::json::pointer::tokens(text).ok_or_else(|| {
            format!(
                "invalid JSON Pointer `{text}`: a `~` must be followed by `0` (for `~`) or `1` \
                 (for `/`)"
            )
        })?
    } else {
        text.split('.').map(str::to_owned).collect()
    };
    if tokens.iter().any(String::is_empty) {
        return Err(format!(
            "path `{text}` has an empty segment: write `args.a.b` or the JSON Pointer `/args/a/b`"
        ));
    }
    let mut tokens = tokens.into_iter();
    let first = tokens.next().unwrap_or_default();
    let root = match first.as_str() {
        "tool" => Root::Tool,
        "args" => Root::Args,
        "context" => Root::Context,
        "grant" => Root::Grant,
        "session" => Root::Session,
        other => {
            let hint = super::suggest::did_you_mean(other, ROOTS)
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            return Err(format!(
                "path `{text}` starts with `{other}`, but a path starts with one of `tool`, `args`, \
                 `context`, `grant`, `session`{hint}"
            ));
        }
    };
    let segments =
        tokens.map(|t| Segment { index: array_index(&t), key: t.into_boxed_str() }).collect();
    Ok(Path { root, segments, text: text.into() })
}

const ROOTS: &[&str] = &["tool", "args", "context", "grant", "session"];

/// `Some(n)` when `token` is a non-negative integer written without leading zeros.
fn array_index(token: &str) -> Option<usize> {
    let valid =
        token.bytes().all(|b| b.is_ascii_digit()) && (token == "0" || !token.starts_with('0'));
    if valid { token.parse().ok() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_and_pointer_forms() {
        let p = parse("args.cluster.num_workers").unwrap();
        assert_eq!(p.root, Root::Args);
        assert_eq!(p.segments.len(), 2);
        let p = parse("/args/a.b/0").unwrap();
        assert_eq!(&*p.segments[0].key, "a.b");
        assert_eq!(p.segments[1].index, Some(0));
        let p = parse("/args/a~1b/01").unwrap();
        assert_eq!(&*p.segments[0].key, "a/b");
        assert_eq!(p.segments[1].index, None);
        assert_eq!(parse("session").unwrap().root, Root::Session);
    }

    #[test]
    fn rejects_bad_paths() {
        assert!(parse("args..x").unwrap_err().contains("empty segment"));
        assert!(parse("").unwrap_err().contains("empty segment"));
        assert!(parse("/").unwrap_err().contains("empty segment"));
        assert!(parse("arg.x").unwrap_err().contains("did you mean `args`"));
        assert!(parse("/args/~2").unwrap_err().contains("invalid JSON Pointer"));
    }
}
