//! Where the parts the tool-list lint reports on stand in the text: each `tools` key's value,
//! each `hide` entry and `default`, found in one forward scan at load (the text is not kept).

use hashbrown::HashMap;

/// Line and column (1-based, the column in characters) of the values the tool-list lint points
/// at.
#[derive(Debug, Default)]
pub(crate) struct Places {
    tools: HashMap<Box<str>, (u32, u32)>,
    hide: Vec<(u32, u32)>,
    default: Option<(u32, u32)>,
}

impl Places {
    /// Scans `text` (a document that loaded) once.
    pub(crate) fn scan(text: &str) -> Places {
        let mut s = Scanner {
            bytes: text.as_bytes(),
            text,
            pos: 0,
            at: (0, 1, 1),
            places: <Places as Default>::default(),
        };
        let _ = s.document();
        s.places
    }

    /// The position of the value of `tools[key]`.
    pub(crate) fn tool(&self, key: &str) -> (usize, usize) {
        widen(self.tools.get(key).copied().or(self.default))
    }

    /// The position of `hide[index]`.
    pub(crate) fn hide(&self, index: usize) -> (usize, usize) {
        widen(self.hide.get(index).copied().or(self.default))
    }

    /// The position of the value of `default`.
    pub(crate) fn default(&self) -> (usize, usize) {
        widen(self.default)
    }
}

fn widen(p: Option<(u32, u32)>) -> (usize, usize) {
    p.map_or((1, 1), |(l, c)| (l as usize, c as usize))
}

/// The member list being scanned.
#[derive(Clone, Copy, PartialEq)]
enum Slot {
    Tools,
    Hide,
}

struct Scanner<'a> {
    bytes: &'a [u8],
    text: &'a str,
    pos: usize,
    /// The byte offset, line and column last computed: offsets are asked for in text order.
    at: (usize, u32, u32),
    places: Places,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        self.ws();
        (self.peek() == Some(b)).then(|| self.pos += 1)
    }

    /// The line and column of the current position.
    fn here(&mut self) -> (u32, u32) {
        let (from, mut line, mut column) = self.at;
        for c in self.text.get(from..self.pos).unwrap_or("").chars() {
            if c == '\n' {
                line = line.saturating_add(1);
                column = 1;
            } else {
                column = column.saturating_add(1);
            }
        }
        self.at = (self.pos.max(from), line, column);
        (line, column)
    }

    fn document(&mut self) -> Option<()> {
        self.ws();
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            self.ws();
            let key = self.string()?;
            self.eat(b':')?;
            self.ws();
            match key.as_str() {
                "default" => {
                    let here = self.here();
                    self.places.default = Some(here);
                    self.skip()?;
                }
                "tools" => self.members(Slot::Tools)?,
                "hide" => self.members(Slot::Hide)?,
                _ => self.skip()?,
            }
            if self.eat(b',').is_none() {
                return self.eat(b'}');
            }
        }
    }

    /// The members of `tools` (an object) or `hide` (an array), recording each value's place.
    fn members(&mut self, slot: Slot) -> Option<()> {
        let (open, close) = if slot == Slot::Tools { (b'{', b'}') } else { (b'[', b']') };
        if self.peek() != Some(open) {
            return self.skip();
        }
        self.pos += 1;
        if self.eat(close).is_some() {
            return Some(());
        }
        loop {
            self.ws();
            let key = if slot == Slot::Tools {
                let key = self.string()?;
                self.eat(b':')?;
                self.ws();
                Some(key)
            } else {
                None
            };
            let here = self.here();
            match key {
                Some(key) => {
                    self.places.tools.entry(key.into_boxed_str()).or_insert(here);
                }
                None => self.places.hide.push(here),
            }
            self.skip()?;
            if self.eat(b',').is_none() {
                return self.eat(close);
            }
        }
    }

    /// A string at the current position, unescaped.
    fn string(&mut self) -> Option<String> {
        let start = self.pos;
        if self.peek()? != b'"' {
            return None;
        }
        self.pos += 1;
        let mut escaped = false;
        loop {
            match self.peek()? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.pos += 2;
                }
                _ => self.pos += 1,
            }
        }
        self.pos += 1;
        let raw = self.text.get(start..self.pos)?;
        if escaped {
            serde_json::from_str(raw).ok()
        } else {
            raw.get(1..raw.len() - 1).map(str::to_owned)
        }
    }

    /// Skips one value.
    fn skip(&mut self) -> Option<()> {
        self.ws();
        let mut depth = 0usize;
        loop {
            match self.peek()? {
                b'"' => {
                    self.skip_string()?;
                    if depth == 0 {
                        return Some(());
                    }
                    continue;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        self.pos += 1;
                        return Some(());
                    }
                }
                b',' if depth == 0 => return Some(()),
                b' ' | b'\t' | b'\r' | b'\n' if depth == 0 => return Some(()),
                _ => {}
            }
            self.pos += 1;
        }
    }

    fn skip_string(&mut self) -> Option<()> {
        self.pos += 1;
        loop {
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return Some(());
                }
                b'\\' => self.pos += 2,
                _ => self.pos += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tools_hide_and_default() {
        let text = "{\n  \"version\": \"1\", \"x\": {\"tools\": {\"no\": 1}},\n  \"tools\": { \"a\": {\"limits\": [1, {\"x\": \"}\"}]},\n\t\"é/~\\\"\": [] },\n  \"hide\": [\"x\", \"y\"], \"default\": \"deny\"\n}";
        let p = Places::scan(text);
        assert_eq!(p.tool("a"), (3, 19));
        assert_eq!(p.tool("é/~\""), (4, 11));
        assert_eq!(p.hide(1), (5, 17));
        assert_eq!(p.default(), (5, 34));
        assert_eq!(p.tool("no"), (5, 34), "unknown keys fall back to `default`");
    }

    #[test]
    fn survives_text_that_is_not_json() {
        for bad in ["", "{", "{\"tools\": [1, ", "\"abc", "[}", "{\"a\"}", "]]]]"] {
            let _ = Places::scan(bad).tool("a");
        }
    }
}
