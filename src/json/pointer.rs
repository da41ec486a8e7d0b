//! JSON Pointer (RFC 6901) helpers.

/// Appends `/token` to `pointer`, escaping `~` as `~0` and `/` as `~1`.
pub(crate) fn push_token(pointer: &mut String, token: &str) {
    pointer.push('/');
    for c in token.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

/// `base` followed by one escaped token.
pub(crate) fn join(base: &str, token: &str) -> String {
    let mut p = String::with_capacity(base.len() + token.len() + 1);
    p.push_str(base);
    push_token(&mut p, token);
    p
}

/// Splits a JSON Pointer into its unescaped tokens; `None` when it is not a valid pointer
/// (it does not start with `/`, or a `~` is not followed by `0` or `1`).
pub(crate) fn tokens(pointer: &str) -> Option<Vec<String>> {
    let rest = pointer.strip_prefix('/')?;
    rest.split('/').map(unescape).collect()
}

fn unescape(token: &str) -> Option<String> {
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_unescapes() {
        assert_eq!(join("/tools", "a/b~c"), "/tools/a~1b~0c");
        assert_eq!(tokens("/tools/a~1b~0c").unwrap(), vec!["tools", "a/b~c"]);
        assert_eq!(tokens("/a/~2"), None);
        assert_eq!(tokens("a"), None);
        assert_eq!(tokens("/").unwrap(), vec![""]);
    }
}
