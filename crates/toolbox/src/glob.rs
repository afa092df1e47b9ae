//! Doublestar globs, as used by `save_to_workspace` and `save_cache` paths.
//!
//! Patterns are matched against `/`-separated paths relative to the source directory:
//! - `**` as a whole path segment matches zero or more segments;
//! - `*` matches any run of characters within a segment (leading dots included), `?` one
//!   character, `[abc]`, `[a-z]`, `[!x]`/`[^x]` a character class;
//! - `{a,b}` alternatives (may nest and contain `/`); `\` escapes the next character.
//!
//! Malformed patterns (unclosed `[` or `{`, trailing `\`) are errors naming the pattern.

use crate::{Error, Result};

/// Upper bound on the alternatives a pattern may expand to, so a hostile pattern cannot blow up.
const MAX_ALTERNATIVES: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `*`
    Star,
    /// `?`
    Any,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// `**`
    AnyDirs,
    Name(Vec<Token>),
}

/// A compiled doublestar pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    raw: String,
    alternatives: Vec<Vec<Segment>>,
}

impl Pattern {
    /// Compiles `pattern`; a leading `/` or `./` is ignored (patterns are relative).
    pub fn new(pattern: &str) -> Result<Self> {
        let bad =
            |why: &str| Error::InvalidInput(format!("invalid glob pattern {pattern:?}: {why}"));
        let mut alternatives = Vec::new();
        for alt in expand_braces(pattern).map_err(|w| bad(&w))? {
            alternatives.push(compile(&alt).map_err(|w| bad(&w))?);
        }
        Ok(Self {
            raw: pattern.to_string(),
            alternatives,
        })
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Whether the relative path `path` (segments separated by `/`) matches.
    pub fn matches(&self, path: &str) -> bool {
        let comps = split(path);
        self.alternatives
            .iter()
            .any(|segs| match_segments(segs, &comps))
    }

    /// Whether some path strictly below directory `dir` could match: lets a walk skip subtrees.
    pub fn may_match_below(&self, dir: &str) -> bool {
        let comps = split(dir);
        self.alternatives
            .iter()
            .any(|segs| prefix_may_match(segs, &comps))
    }
}

fn split(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

/// Expands `{a,b}` alternatives (outermost first, recursively), keeping escapes intact.
fn expand_braces(pattern: &str) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    expand_into(pattern, &mut out)?;
    Ok(out)
}

fn expand_into(pattern: &str, out: &mut Vec<String>) -> std::result::Result<(), String> {
    let chars: Vec<char> = pattern.chars().collect();
    // find the first unescaped `{` outside a class
    let mut i = 0;
    let mut open = None;
    let mut in_class = false;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            '{' if !in_class => {
                open = Some(i);
                break;
            }
            _ => {}
        }
        i += 1;
    }
    let Some(open) = open else {
        if out.len() >= MAX_ALTERNATIVES {
            return Err(format!(
                "expands to more than {MAX_ALTERNATIVES} alternatives"
            ));
        }
        out.push(pattern.to_string());
        return Ok(());
    };
    // find its matching `}` and the top-level commas
    let mut depth = 0usize;
    let mut commas = Vec::new();
    let mut close = None;
    let mut j = open + 1;
    while j < chars.len() {
        match chars[j] {
            '\\' => j += 1,
            '{' => depth += 1,
            '}' if depth == 0 => {
                close = Some(j);
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => commas.push(j),
            _ => {}
        }
        j += 1;
    }
    let close = close.ok_or_else(|| "unclosed '{'".to_string())?;
    let prefix: String = chars[..open].iter().collect();
    let suffix: String = chars[close + 1..].iter().collect();
    let mut start = open + 1;
    for end in commas.into_iter().chain(std::iter::once(close)) {
        let alt: String = chars[start..end].iter().collect();
        expand_into(&format!("{prefix}{alt}{suffix}"), out)?;
        start = end + 1;
    }
    Ok(())
}

fn compile(pattern: &str) -> std::result::Result<Vec<Segment>, String> {
    let mut segs: Vec<Segment> = Vec::new();
    for seg in pattern.split('/') {
        if seg.is_empty() || seg == "." {
            continue;
        }
        if seg == "**" {
            if segs.last() != Some(&Segment::AnyDirs) {
                segs.push(Segment::AnyDirs);
            }
            continue;
        }
        segs.push(Segment::Name(tokenize(seg)?));
    }
    Ok(segs)
}

fn tokenize(seg: &str) -> std::result::Result<Vec<Token>, String> {
    let chars: Vec<char> = seg.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                let c = chars.get(i + 1).ok_or("trailing '\\'")?;
                toks.push(Token::Literal(*c));
                i += 2;
            }
            '*' => {
                if toks.last() != Some(&Token::Star) {
                    toks.push(Token::Star);
                }
                i += 1;
            }
            '?' => {
                toks.push(Token::Any);
                i += 1;
            }
            '[' => {
                let (tok, next) = class(&chars, i)?;
                toks.push(tok);
                i = next;
            }
            c => {
                toks.push(Token::Literal(c));
                i += 1;
            }
        }
    }
    Ok(toks)
}

/// Parses a class starting at `chars[start] == '['`; returns it and the index after `]`.
fn class(chars: &[char], start: usize) -> std::result::Result<(Token, usize), String> {
    let mut i = start + 1;
    let negated = matches!(chars.get(i), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = *chars.get(i).ok_or("unclosed '['")?;
        if c == ']' && !first {
            return Ok((Token::Class { negated, ranges }, i + 1));
        }
        first = false;
        let lo = if c == '\\' {
            i += 1;
            *chars.get(i).ok_or("unclosed '['")?
        } else {
            c
        };
        i += 1;
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|c| *c != ']') {
            let mut hi = *chars.get(i + 1).ok_or("unclosed '['")?;
            i += 2;
            if hi == '\\' {
                hi = *chars.get(i).ok_or("unclosed '['")?;
                i += 1;
            }
            if hi < lo {
                return Err(format!("bad range '{lo}-{hi}'"));
            }
            ranges.push((lo, hi));
        } else {
            ranges.push((lo, lo));
        }
    }
}

fn token_matches(tok: &Token, c: char) -> bool {
    match tok {
        Token::Literal(l) => *l == c,
        Token::Any => true,
        Token::Class { negated, ranges } => {
            ranges.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != *negated
        }
        Token::Star => false,
    }
}

/// Matches one segment with single-point backtracking on `*` (linear for practical patterns).
fn match_name(toks: &[Token], name: &str) -> bool {
    let name: Vec<char> = name.chars().collect();
    let (mut t, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if t < toks.len() && toks[t] == Token::Star {
            star = Some((t, n));
            t += 1;
        } else if t < toks.len() && token_matches(&toks[t], name[n]) {
            t += 1;
            n += 1;
        } else if let Some((st, sn)) = star {
            t = st + 1;
            n = sn + 1;
            star = Some((st, sn + 1));
        } else {
            return false;
        }
    }
    toks[t..].iter().all(|tok| *tok == Token::Star)
}

fn match_segments(segs: &[Segment], comps: &[&str]) -> bool {
    match segs.split_first() {
        None => comps.is_empty(),
        Some((Segment::AnyDirs, rest)) => {
            (0..=comps.len()).any(|skip| match_segments(rest, &comps[skip..]))
        }
        Some((Segment::Name(toks), rest)) => match comps.split_first() {
            Some((first, others)) => match_name(toks, first) && match_segments(rest, others),
            None => false,
        },
    }
}

fn prefix_may_match(segs: &[Segment], comps: &[&str]) -> bool {
    match segs.split_first() {
        None => false,
        Some((Segment::AnyDirs, _)) => true,
        Some((Segment::Name(toks), rest)) => match comps.split_first() {
            None => true,
            Some((first, others)) => match_name(toks, first) && prefix_may_match(rest, others),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, path: &str) -> bool {
        Pattern::new(p).expect("valid pattern").matches(path)
    }

    #[test]
    fn literal_and_single_star() {
        assert!(m("a.txt", "a.txt"));
        assert!(!m("a.txt", "b.txt"));
        assert!(m("*.txt", "a.txt"));
        assert!(m("*.txt", ".hidden.txt"));
        assert!(!m("*.txt", "dir/a.txt"));
        assert!(m("dir/*", "dir/a"));
        assert!(!m("dir/*", "dir"));
        assert!(m("*", "anything"));
        assert!(!m("*", "a/b"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m("a**b", "aXb"));
    }

    #[test]
    fn doublestar() {
        assert!(m("**", "a"));
        assert!(m("**", "a/b/c"));
        assert!(m("**/*.rs", "main.rs"));
        assert!(m("**/*.rs", "src/a/b/main.rs"));
        assert!(!m("**/*.rs", "src/main.go"));
        assert!(m("src/**", "src/a/b"));
        assert!(m("src/**", "src"));
        assert!(!m("src/**", "other/a"));
        assert!(m("a/**/z", "a/z"));
        assert!(m("a/**/z", "a/b/c/z"));
        assert!(!m("a/**/z", "a/b/c/y"));
        assert!(m("a/**/**/z", "a/b/z"));
        assert!(m("./a/*", "a/b"));
        assert!(m("/a/*", "a/b"));
    }

    #[test]
    fn question_classes_and_escapes() {
        assert!(m("?.md", "a.md"));
        assert!(!m("?.md", "ab.md"));
        assert!(m("[abc].txt", "b.txt"));
        assert!(!m("[abc].txt", "d.txt"));
        assert!(m("[a-c]x", "cx"));
        assert!(m("[!a-c]x", "dx"));
        assert!(m("[^a-c]x", "dx"));
        assert!(!m("[!a-c]x", "ax"));
        assert!(m("[]]", "]"));
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "a"));
        assert!(m("é?", "éà"));
    }

    #[test]
    fn braces() {
        assert!(m("*.{rs,toml}", "Cargo.toml"));
        assert!(m("*.{rs,toml}", "lib.rs"));
        assert!(!m("*.{rs,toml}", "lib.go"));
        assert!(m("{src,tests}/**/*.rs", "tests/it/a.rs"));
        assert!(m("{a,b/{c,d}}/x", "b/d/x"));
        assert!(m("{a,}x", "x"));
        assert!(m("\\{a,b\\}", "{a,b}"));
    }

    #[test]
    fn malformed_patterns_are_errors_naming_them() {
        for p in ["[abc", "{a,b", "a\\", "[z-a]"] {
            let err = Pattern::new(p).expect_err(p).to_string();
            assert!(err.contains(&format!("{p:?}")), "{err}");
        }
        let huge = "{a,b,c,d}".repeat(6);
        assert!(Pattern::new(&huge).is_err());
    }

    #[test]
    fn prefix_pruning() {
        let p = Pattern::new("src/*/x.rs").expect("valid");
        assert!(p.may_match_below(""));
        assert!(p.may_match_below("src"));
        assert!(p.may_match_below("src/a"));
        assert!(!p.may_match_below("src/a/x.rs"));
        assert!(!p.may_match_below("target"));
        let p = Pattern::new("**/x").expect("valid");
        assert!(p.may_match_below("anything/deep"));
        let p = Pattern::new("a").expect("valid");
        assert!(!p.may_match_below("a"));
    }
}
