//! A pre-parse guard for Jsonnet and Starlark sources: both evaluators build and walk their
//! syntax trees recursively, so a deeply nested expression (`[[[[…]]]]`, `-----x`, a thousand
//! chained `local`s) overflows the thread stack, which aborts the whole process. The guard
//! tokenises the source just enough (strings, comments, brackets, operators, keywords) to bound
//! the depth of any syntax tree it can produce, and rejects sources over the bound.
//!
//! The bound is conservative: along the path of open brackets it adds the brackets themselves
//! and every operator, postfix call/index and nesting keyword since the last separator of each
//! bracket level. Separators end a sub-expression: `,` in both languages; `;` and `=`
//! (assignment, keyword argument) and the end of a statement in Starlark; `;` in Jsonnet, which
//! closes a `local` whose nesting is counted separately until the next `,`.

/// Deepest accepted nesting bound; real configs stay far below (≈ 20).
pub(crate) const MAX_NESTING: usize = 200;
/// Deepest accepted Starlark statement indentation, in columns (tabs count 8).
pub(crate) const MAX_INDENT: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    Starlark,
    Jsonnet,
}

#[derive(Debug)]
pub(crate) struct TooDeep {
    pub message: String,
    pub line: usize,
    pub column: usize,
}

#[derive(Default, Clone, Copy)]
struct Group {
    /// Operators and postfix operations since the last separator.
    chain: usize,
    /// Jsonnet `local`/`assert` since the last `,`: each nests what follows its `;`.
    nest: usize,
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    line: usize,
    line_start: usize,
    lang: Lang,
    groups: Vec<Group>,
    /// Brackets open plus the chain and nest counts of every open group.
    path: usize,
    /// The previous token ends an operand, so `(`/`[` is a call/index.
    operand: bool,
    /// Previous significant byte, for telling `<=`, `==`, `!=` from `=`.
    prev: u8,
}

const STARLARK_CHAIN: &[&str] = &["and", "or", "not", "if", "else", "lambda", "in", "is"];
const JSONNET_CHAIN: &[&str] = &[
    "if",
    "then",
    "else",
    "function",
    "error",
    "in",
    "import",
    "importstr",
    "importbin",
    "tailstrict",
];
const JSONNET_NEST: &[&str] = &["local", "assert"];

impl Scanner<'_> {
    fn err(&self, message: String) -> TooDeep {
        TooDeep {
            message,
            line: self.line,
            column: self.i.saturating_sub(self.line_start) + 1,
        }
    }

    fn peek(&self, off: usize) -> u8 {
        self.b.get(self.i + off).copied().unwrap_or(0)
    }

    fn newline(&mut self) {
        self.line += 1;
        self.line_start = self.i + 1;
    }

    fn bump_chain(&mut self) -> Result<(), TooDeep> {
        if let Some(g) = self.groups.last_mut() {
            g.chain += 1;
        }
        self.path += 1;
        self.check()
    }

    fn bump_nest(&mut self) -> Result<(), TooDeep> {
        if let Some(g) = self.groups.last_mut() {
            g.nest += 1;
        }
        self.path += 1;
        self.check()
    }

    fn reset_chain(&mut self) {
        if let Some(g) = self.groups.last_mut() {
            self.path -= g.chain;
            g.chain = 0;
        }
    }

    fn reset_nest(&mut self) {
        if let Some(g) = self.groups.last_mut() {
            self.path -= g.nest;
            g.nest = 0;
        }
    }

    fn check(&self) -> Result<(), TooDeep> {
        if self.path > MAX_NESTING {
            return Err(self.err(format!(
                "expression nested too deeply (more than {MAX_NESTING} levels)"
            )));
        }
        Ok(())
    }

    /// Skips a quoted string starting at the quote; backslash escapes the next byte.
    fn skip_quoted(&mut self, quote: u8, triple: bool) {
        self.i += if triple { 3 } else { 1 };
        while self.i < self.b.len() {
            let c = self.b[self.i];
            if c == b'\\' {
                if self.peek(1) == b'\n' {
                    self.i += 1;
                    self.newline();
                }
                self.i += 2;
                continue;
            }
            if c == b'\n' {
                // a single-quoted Starlark string cannot span lines: the parser reports it
                if !triple && self.lang == Lang::Starlark {
                    return;
                }
                self.newline();
            }
            if c == quote && (!triple || (self.peek(1) == quote && self.peek(2) == quote)) {
                self.i += if triple { 3 } else { 1 };
                return;
            }
            self.i += 1;
        }
    }

    /// Jsonnet verbatim string `@'…'`/`@"…"`: a doubled quote is the only escape.
    fn skip_verbatim(&mut self, quote: u8) {
        self.i += 2;
        while self.i < self.b.len() {
            let c = self.b[self.i];
            if c == b'\n' {
                self.newline();
            } else if c == quote {
                if self.peek(1) == quote {
                    self.i += 2;
                    continue;
                }
                self.i += 1;
                return;
            }
            self.i += 1;
        }
    }

    /// Jsonnet text block: `|||`, the rest of the line, then lines indented at least as the
    /// first content line, then a line of whitespace and `|||`.
    fn skip_text_block(&mut self) {
        self.i += 3;
        // rest of the opening line
        while self.i < self.b.len() && self.b[self.i] != b'\n' {
            self.i += 1;
        }
        let mut indent: Option<&[u8]> = None;
        while self.i < self.b.len() {
            // at a newline: look at the next line
            self.newline();
            self.i += 1;
            let start = self.i;
            while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t') {
                self.i += 1;
            }
            let ws = &self.b[start..self.i];
            if self.i >= self.b.len() {
                return;
            }
            if self.b[self.i] == b'\n' {
                // blank lines belong to the block
                continue;
            }
            let prefix = *indent.get_or_insert(ws);
            if ws.len() < prefix.len() || !ws.starts_with(prefix) || prefix.is_empty() {
                // the block is over: the terminator `|||` should be here
                if self.b[self.i..].starts_with(b"|||") {
                    self.i += 3;
                }
                return;
            }
            while self.i < self.b.len() && self.b[self.i] != b'\n' {
                self.i += 1;
            }
        }
    }

    fn skip_line_comment(&mut self) {
        while self.i < self.b.len() && self.b[self.i] != b'\n' {
            self.i += 1;
        }
    }

    fn skip_block_comment(&mut self) {
        self.i += 2;
        while self.i < self.b.len() {
            if self.b[self.i] == b'*' && self.peek(1) == b'/' {
                self.i += 2;
                return;
            }
            if self.b[self.i] == b'\n' {
                self.newline();
            }
            self.i += 1;
        }
    }

    /// Starlark indentation at the start of a line outside brackets.
    fn indentation(&mut self) -> Result<(), TooDeep> {
        let mut cols = 0usize;
        while self.i < self.b.len() {
            match self.b[self.i] {
                b' ' => cols += 1,
                b'\t' => cols += 8,
                _ => break,
            }
            self.i += 1;
        }
        let blank = matches!(self.peek(0), b'\n' | b'#' | b'\r' | 0);
        if !blank && cols > MAX_INDENT {
            return Err(self.err(format!(
                "statements nested too deeply (indented more than {MAX_INDENT} columns)"
            )));
        }
        Ok(())
    }

    fn word(&mut self) -> Result<(), TooDeep> {
        let start = self.i;
        let numeric = self.b[start].is_ascii_digit();
        while self.i < self.b.len() {
            let c = self.b[self.i];
            let part =
                c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 || (numeric && c == b'.');
            if !part {
                break;
            }
            self.i += 1;
        }
        let w = &self.b[start..self.i];
        // a string prefix (r"", b'', rb"") is part of the string that follows
        if self.lang == Lang::Starlark
            && matches!(self.peek(0), b'\'' | b'"')
            && matches!(w, b"r" | b"b" | b"rb" | b"br" | b"R" | b"B")
        {
            return Ok(());
        }
        let (chain, nest): (&[&str], &[&str]) = match self.lang {
            Lang::Starlark => (STARLARK_CHAIN, &[]),
            Lang::Jsonnet => (JSONNET_CHAIN, JSONNET_NEST),
        };
        if chain.iter().any(|k| k.as_bytes() == w) {
            self.operand = false;
            return self.bump_chain();
        }
        if nest.iter().any(|k| k.as_bytes() == w) {
            self.operand = false;
            return self.bump_nest();
        }
        self.operand = true;
        Ok(())
    }

    fn run(&mut self) -> Result<(), TooDeep> {
        if self.lang == Lang::Starlark {
            self.indentation()?;
        }
        while self.i < self.b.len() {
            let c = self.b[self.i];
            match c {
                b'\n' => {
                    let continued = self.i > 0 && self.b[self.i - 1] == b'\\';
                    self.newline();
                    self.i += 1;
                    // a new Starlark statement (outside brackets, no `\` continuation)
                    if self.lang == Lang::Starlark && self.groups.len() == 1 && !continued {
                        self.reset_chain();
                        self.operand = false;
                        self.indentation()?;
                    }
                    continue;
                }
                b' ' | b'\t' | b'\r' | b'\\' => {
                    self.i += 1;
                    continue;
                }
                b'#' => {
                    self.skip_line_comment();
                    continue;
                }
                b'/' if self.lang == Lang::Jsonnet && self.peek(1) == b'/' => {
                    self.skip_line_comment();
                    continue;
                }
                b'/' if self.lang == Lang::Jsonnet && self.peek(1) == b'*' => {
                    self.skip_block_comment();
                    continue;
                }
                b'\'' | b'"' => {
                    let triple =
                        self.lang == Lang::Starlark && self.peek(1) == c && self.peek(2) == c;
                    self.skip_quoted(c, triple);
                    self.operand = true;
                }
                b'@' if self.lang == Lang::Jsonnet && matches!(self.peek(1), b'\'' | b'"') => {
                    let q = self.peek(1);
                    self.skip_verbatim(q);
                    self.operand = true;
                }
                b'|' if self.lang == Lang::Jsonnet
                    && self.peek(1) == b'|'
                    && self.peek(2) == b'|' =>
                {
                    self.skip_text_block();
                    self.operand = true;
                }
                b'(' | b'[' | b'{' => {
                    // a call, an index, or (Jsonnet) an object extension `a { … }`: each
                    // nests the operand before it
                    if self.operand {
                        self.bump_chain()?;
                    }
                    self.groups.push(Group::default());
                    self.path += 1;
                    self.check()?;
                    self.operand = false;
                    self.i += 1;
                }
                b')' | b']' | b'}' => {
                    if self.groups.len() > 1
                        && let Some(g) = self.groups.pop()
                    {
                        self.path -= g.chain + g.nest + 1;
                    }
                    self.operand = true;
                    self.i += 1;
                }
                b',' => {
                    self.reset_chain();
                    self.reset_nest();
                    self.operand = false;
                    self.i += 1;
                }
                b';' => {
                    self.reset_chain();
                    self.operand = false;
                    self.i += 1;
                }
                b'=' => {
                    if self.peek(1) == b'=' {
                        self.i += 1;
                        self.bump_chain()?;
                    } else if matches!(self.prev, b'<' | b'>' | b'!') {
                        // second half of `<=`, `>=`, `!=`: counted with the first
                    } else if self.lang == Lang::Starlark {
                        self.reset_chain();
                    }
                    self.operand = false;
                    self.i += 1;
                }
                b'+' | b'-' | b'*' | b'/' | b'%' | b'&' | b'|' | b'^' | b'~' | b'<' | b'>'
                | b'!' | b'.' => {
                    self.bump_chain()?;
                    self.operand = false;
                    self.i += 1;
                }
                c if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80 => {
                    if c == b'$' {
                        self.i += 1;
                        self.operand = true;
                    } else {
                        self.word()?;
                    }
                }
                _ => {
                    self.operand = false;
                    self.i += 1;
                }
            }
            self.prev = c;
        }
        Ok(())
    }
}

/// Rejects sources whose syntax trees could be deep enough to overflow the evaluator's stack.
pub(crate) fn check_nesting(text: &[u8], lang: Lang) -> Result<(), TooDeep> {
    let mut s = Scanner {
        b: text,
        i: 0,
        line: 1,
        line_start: 0,
        lang,
        groups: vec![Group::default()],
        path: 0,
        operand: false,
        prev: 0,
    };
    s.run()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(src: &str, lang: Lang) -> bool {
        check_nesting(src.as_bytes(), lang).is_ok()
    }

    #[test]
    fn real_configs_pass() {
        let star = "def main(ctx):\n    x = 'a' + ctx['branch'] + \"b\"\n    return {'runs': [{'name': x, 'tasks': [t for t in range(3) if t > 1 and not t == 2]}]}\n";
        assert!(ok(star, Lang::Starlark));
        let jsonnet = "function(ctx)\n  local a = 1 + 2;\n  local f(x) = if x > 1 then x else -x;\n  { runs: [ { name: 'r' + a, tasks: [f(1), f(2)] } ] }\n";
        assert!(ok(jsonnet, Lang::Jsonnet));
        // many statements, many locals, long lists: separators keep the counts low
        let many: String = (0..5000).map(|i| format!("x{i} = 1 + 2 + 3\n")).collect();
        assert!(ok(&many, Lang::Starlark));
        let locals: String = (0..150)
            .map(|i| format!("local x{i} = 1 + 2 + 3;\n"))
            .collect::<String>()
            + "{}";
        assert!(ok(&locals, Lang::Jsonnet));
        let list = format!(
            "[{}]",
            (0..10000)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert!(ok(&list, Lang::Jsonnet));
    }

    #[test]
    fn deep_sources_are_rejected() {
        let n = MAX_NESTING + 1;
        let cases_star = [
            format!("x = {}{}", "[".repeat(n), "]".repeat(n)),
            format!("x = 1{}", "+1".repeat(n)),
            format!("x = {}1", "-".repeat(n)),
            format!("x = f{}", "()".repeat(n)),
            format!("x = a{}", ".b".repeat(n)),
            format!("x = {}1", "not ".repeat(n)),
            format!("x = {}1", "lambda: ".repeat(n)),
            format!("x = 1 \\\n{}", "+ 1 \\\n".repeat(n)),
            format!("def f():\n{}pass\n", " ".repeat(MAX_INDENT + 1)),
        ];
        for src in &cases_star {
            assert!(!ok(src, Lang::Starlark), "{src:.60}");
        }
        let cases_jsonnet = [
            format!("{}1{}", "[".repeat(n), "]".repeat(n)),
            format!("{}1", "local x = 1; ".repeat(n)),
            format!("{}1{}", "{a: ".repeat(n), "}".repeat(n)),
            format!("{}1", "-".repeat(n)),
            format!("{}1", "function(x) ".repeat(n)),
            format!("{}1", "if true then 1 else ".repeat(n)),
        ];
        for src in &cases_jsonnet {
            assert!(!ok(src, Lang::Jsonnet), "{src:.60}");
        }
    }

    #[test]
    fn strings_and_comments_hide_nothing_and_count_nothing() {
        let deep = "[".repeat(MAX_NESTING + 1);
        for src in [
            format!("x = '{deep}'"),
            format!("x = \"\"\"{deep}\n{deep}\"\"\""),
            format!("x = r'\\'{deep}'"),
            format!("# {deep}\nx = 1"),
        ] {
            assert!(ok(&src, Lang::Starlark), "{src:.60}");
        }
        for src in [
            format!("'{deep}'"),
            format!("@'{deep}'''"),
            format!("// {deep}\n1"),
            format!("/* {deep} */ 1"),
            format!("|||\n  {deep}\n  a ||| b\n|||"),
        ] {
            assert!(ok(&src, Lang::Jsonnet), "{src:.60}");
        }
        // code after a string is still scanned
        assert!(!ok(&format!("x = 'a' + {deep}"), Lang::Starlark));
        assert!(!ok(&format!("@'a''' + {deep}"), Lang::Jsonnet));
        assert!(!ok(&format!("|||\n  a\n||| + {deep}"), Lang::Jsonnet));
    }
}
