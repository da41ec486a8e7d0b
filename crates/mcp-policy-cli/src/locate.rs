//! The lines of a policy's text, for the source line and caret under each finding. (Positions
//! come from the core: load errors, `Policy::warnings` and `mcp_policy::lint` are located there
//! in one pass.)

/// The starts of the lines of a text: the text of a line by number.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset of the first character of each line.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.bytes().enumerate().filter(|(_, b)| *b == b'\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    /// The text of the 1-based line `n`, without its line ending.
    pub(crate) fn line(&self, n: usize) -> Option<&'a str> {
        let start = *self.starts.get(n.checked_sub(1)?)?;
        let end = self.starts.get(n).map_or(self.text.len(), |next| next - 1);
        let line = self.text.get(start..end)?;
        Some(line.strip_suffix('\r').unwrap_or(line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_without_their_endings() {
        let index = LineIndex::new("a\r\nbc\n\nd");
        assert_eq!(index.line(1), Some("a"));
        assert_eq!(index.line(2), Some("bc"));
        assert_eq!(index.line(3), Some(""));
        assert_eq!(index.line(4), Some("d"));
        assert_eq!(index.line(5), None);
        assert_eq!(index.line(0), None);
    }
}
