//! Tool patterns: an exact tool name, or a pattern in which `*` matches any run of characters.
//!
//! Matching is case-sensitive and byte-exact. Among `tools` keys an exact name beats every
//! pattern, and among patterns the one with the most literal (non-`*`) characters wins; two
//! patterns with as many literal characters that can both match one name are ambiguous.

/// A compiled tool pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    /// The literal runs between the stars, in order (empty runs removed).
    parts: Box<[Box<str>]>,
    starts_with_star: bool,
    ends_with_star: bool,
    literal_chars: usize,
}

impl Pattern {
    /// Compiles a pattern that contains at least one `*`.
    pub(crate) fn new(text: &str) -> Self {
        Pattern {
            parts: text.split('*').filter(|p| !p.is_empty()).map(Into::into).collect(),
            starts_with_star: text.starts_with('*'),
            ends_with_star: text.ends_with('*'),
            literal_chars: literal_chars(text),
        }
    }

    /// The number of literal (non-`*`) characters: the pattern's specificity.
    pub(crate) fn specificity(&self) -> usize {
        self.literal_chars
    }

    /// Whether the pattern matches `name`.
    pub(crate) fn matches(&self, name: &str) -> bool {
        let mut rest = name;
        let n = self.parts.len();
        for (i, part) in self.parts.iter().enumerate() {
            let first = i == 0 && !self.starts_with_star;
            let last = i + 1 == n && !self.ends_with_star;
            if first {
                match rest.strip_prefix(&**part) {
                    Some(r) => rest = r,
                    None => return false,
                }
                if last {
                    // Anchored at both ends: only a text without `*` (an exact name) gets here.
                    return rest.is_empty();
                }
            } else if last {
                return rest.ends_with(&**part);
            } else {
                match rest.find(&**part) {
                    Some(at) => rest = rest.get(at + part.len()..).unwrap_or(""),
                    None => return false,
                }
            }
        }
        // All parts matched in order; without a trailing star the name must be used up, which
        // only matters when there were no parts to anchor the end (`*` alone matches anything).
        true
    }
}

/// Patterns indexed by their literal prefix (the text before the first `*`), so that finding the
/// most specific pattern for a name only tries the patterns whose prefix the name starts with:
/// the cost depends on the name's length, not on the number of patterns.
#[derive(Debug, Default)]
pub(crate) struct PatternIndex {
    /// A byte trie of the prefixes; node 0 is the root (the empty prefix).
    nodes: Vec<TrieNode>,
    /// Each pattern with its payload (the index of its rule).
    patterns: Vec<(Pattern, usize)>,
}

#[derive(Debug, Default)]
struct TrieNode {
    /// (byte, child node), sorted by byte.
    children: Vec<(u8, u32)>,
    /// The patterns whose prefix ends at this node.
    here: Vec<u32>,
}

impl PatternIndex {
    /// Indexes `patterns` (text, payload).
    pub(crate) fn new<'a>(patterns: impl IntoIterator<Item = (&'a str, usize)>) -> Self {
        let mut index = PatternIndex { nodes: vec![TrieNode::default()], patterns: Vec::new() };
        for (text, payload) in patterns {
            let prefix = text.split('*').next().unwrap_or("");
            let mut node = 0usize;
            for b in prefix.bytes() {
                node = index.child_or_insert(node, b);
            }
            let id = u32::try_from(index.patterns.len()).unwrap_or(u32::MAX);
            index.patterns.push((Pattern::new(text), payload));
            if let Some(n) = index.nodes.get_mut(node) {
                n.here.push(id);
            }
        }
        index
    }

    fn child_or_insert(&mut self, node: usize, b: u8) -> usize {
        let next = u32::try_from(self.nodes.len()).unwrap_or(u32::MAX);
        let Some(n) = self.nodes.get_mut(node) else { return 0 };
        match n.children.binary_search_by_key(&b, |(c, _)| *c) {
            Ok(i) => n.children.get(i).map_or(0, |(_, child)| *child as usize),
            Err(i) => {
                n.children.insert(i, (b, next));
                self.nodes.push(TrieNode::default());
                next as usize
            }
        }
    }

    /// The payload of the most specific pattern matching `name`.
    #[inline]
    pub(crate) fn find(&self, name: &str) -> Option<usize> {
        if self.patterns.is_empty() {
            return None;
        }
        self.find_in_trie(name)
    }

    fn find_in_trie(&self, name: &str) -> Option<usize> {
        let mut best: Option<(usize, usize)> = None;
        let mut consider = |node: &TrieNode| {
            for id in &node.here {
                if let Some((p, payload)) = self.patterns.get(*id as usize) {
                    if best.is_none_or(|(s, _)| p.specificity() > s) && p.matches(name) {
                        best = Some((p.specificity(), *payload));
                    }
                }
            }
        };
        let mut node = self.nodes.first()?;
        consider(node);
        for b in name.bytes() {
            let Ok(i) = node.children.binary_search_by_key(&b, |(c, _)| *c) else { break };
            let Some(next) = node.children.get(i).and_then(|(_, n)| self.nodes.get(*n as usize))
            else {
                break;
            };
            node = next;
            consider(node);
        }
        best.map(|(_, payload)| payload)
    }
}

/// Number of non-`*` characters of a pattern.
pub(crate) fn literal_chars(text: &str) -> usize {
    text.chars().filter(|c| *c != '*').count()
}

/// Whether `text` is a pattern (contains `*`) rather than an exact name.
pub(crate) fn is_pattern(text: &str) -> bool {
    text.contains('*')
}

/// Whether the patterns `a` and `b` can both match one name; if so, the shortest such name.
pub(crate) fn common_match(a: &str, b: &str) -> Option<String> {
    // Fast rejection: the literal prefixes (before the first `*`) must agree, and so must the
    // literal suffixes; most pairs of real patterns differ there.
    let (pa, pb) = (a.split('*').next().unwrap_or(""), b.split('*').next().unwrap_or(""));
    let (sa, sb) = (a.rsplit('*').next().unwrap_or(""), b.rsplit('*').next().unwrap_or(""));
    if !(pa.starts_with(pb) || pb.starts_with(pa)) || !(sa.ends_with(sb) || sb.ends_with(sa)) {
        return None;
    }
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let (n, m) = (a.len(), b.len());
    // Breadth-first search over (i, j) positions, recording how each state was reached, so the
    // first time (n, m) is reached gives a shortest example.
    let idx = |i: usize, j: usize| i * (m + 1) + j;
    let mut from: Vec<Option<(usize, Option<char>)>> = vec![None; (n + 1) * (m + 1)];
    let mut seen = vec![false; (n + 1) * (m + 1)];
    let mut queue = std::collections::VecDeque::new();
    queue.push_back((0usize, 0usize));
    if let Some(s) = seen.get_mut(0) {
        *s = true;
    }
    while let Some((i, j)) = queue.pop_front() {
        if i == n && j == m {
            let mut out = Vec::new();
            let mut at = idx(i, j);
            while let Some(Some((prev, c))) = from.get(at) {
                if let Some(c) = c {
                    out.push(*c);
                }
                at = *prev;
            }
            out.reverse();
            return Some(out.into_iter().collect());
        }
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
        let mut next: Vec<(usize, usize, Option<char>)> = Vec::with_capacity(3);
        // Zero-width moves first, so the search prefers short examples.
        if ca == Some('*') {
            next.push((i + 1, j, None));
        }
        if cb == Some('*') {
            next.push((i, j + 1, None));
        }
        match (ca, cb) {
            (Some('*'), Some('*')) => {}
            (Some('*'), Some(c)) => next.push((i, j + 1, Some(c))),
            (Some(c), Some('*')) => next.push((i + 1, j, Some(c))),
            (Some(x), Some(y)) if x == y => next.push((i + 1, j + 1, Some(x))),
            _ => {}
        }
        for (ni, nj, c) in next {
            let k = idx(ni, nj);
            if let Some(s) = seen.get_mut(k) {
                if !*s {
                    *s = true;
                    if let Some(f) = from.get_mut(k) {
                        *f = Some((idx(i, j), c));
                    }
                    queue.push_back((ni, nj));
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        Pattern::new(p).matches(s)
    }

    #[test]
    fn matching() {
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("dbfs_*", "dbfs_"));
        assert!(m("dbfs_*", "dbfs_delete"));
        assert!(!m("dbfs_*", "DBFS_delete"));
        assert!(!m("dbfs_*", "xdbfs_delete"));
        assert!(m("*_run", "cancel_run"));
        assert!(!m("*_run", "cancel_runs"));
        assert!(m("a*b*c", "abc"));
        assert!(m("a*b*c", "aXbYc"));
        assert!(!m("a*b*c", "aXbY"));
        assert!(m("a*a", "aa"));
        assert!(!m("a*a", "a"));
        assert!(m("*ab*", "xaby"));
        assert!(m("**", "x"));
        assert!(m("a*b", "ab"));
        assert!(!m("ab*ba", "aba"));
    }

    #[test]
    fn index_finds_the_most_specific_match() {
        let index = PatternIndex::new([
            ("*", 0),
            ("list_*", 1),
            ("list_secret*", 2),
            ("*_run", 3),
            ("l*s", 4),
        ]);
        assert_eq!(index.find("list_jobs"), Some(1));
        assert_eq!(index.find("list_secrets"), Some(2));
        assert_eq!(index.find("cancel_run"), Some(3));
        assert_eq!(index.find("x"), Some(0));
        assert_eq!(index.find(""), Some(0));
        let none = PatternIndex::new([("a*", 0)]);
        assert_eq!(none.find("b"), None);
        assert_eq!(none.find("é"), None);
        assert_eq!(none.find("a"), Some(0));
    }

    #[test]
    fn intersections() {
        assert_eq!(common_match("a*", "*b").as_deref(), Some("ab"));
        assert_eq!(common_match("list_*", "*_jobs").as_deref(), Some("list_jobs"));
        assert_eq!(common_match("a*", "b*"), None);
        assert_eq!(common_match("*a", "*b"), None);
        let ex = common_match("*x*", "*y*").unwrap();
        assert!(m("*x*", &ex) && m("*y*", &ex), "{ex}");
        assert_eq!(common_match("ab", "a*"), Some("ab".into()));
    }
}
