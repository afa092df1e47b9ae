//! Cache-key templates: literal text plus `{{ fn "arg" }}` actions, a small, strict subset of Go
//! `text/template` (what Agola's keys use).
//!
//! Functions: `md5sum FILE`, `sha256sum FILE` (hex digest of a file, relative paths against the
//! current directory), `env NAME` (empty when unset), `os` (`linux`), `arch` (`amd64`, `arm64`,
//! `386`, `arm`), `unixtime` (seconds), `year`, `month` (1-12), `day` (UTC). Arguments are
//! double-quoted strings (Go escapes) or backquoted raw strings. `{{-` / `-}}` trim the
//! whitespace around an action and `{{/* ... */}}` is a comment, as in Go. Unknown functions,
//! wrong argument counts and syntax errors are reported at parse time with their line and
//! column; unreadable files at render time, naming the file.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Text(String),
    Call(Call),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Call {
    func: Func,
    args: Vec<String>,
    pos: Pos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    line: usize,
    col: usize,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}", self.line, self.col)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Md5sum,
    Sha256sum,
    Env,
    Os,
    Arch,
    Unixtime,
    Year,
    Month,
    Day,
}

impl Func {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "md5sum" => Self::Md5sum,
            "sha256sum" => Self::Sha256sum,
            "env" => Self::Env,
            "os" => Self::Os,
            "arch" => Self::Arch,
            "unixtime" => Self::Unixtime,
            "year" => Self::Year,
            "month" => Self::Month,
            "day" => Self::Day,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Md5sum => "md5sum",
            Self::Sha256sum => "sha256sum",
            Self::Env => "env",
            Self::Os => "os",
            Self::Arch => "arch",
            Self::Unixtime => "unixtime",
            Self::Year => "year",
            Self::Month => "month",
            Self::Day => "day",
        }
    }

    fn arity(self) -> usize {
        match self {
            Self::Md5sum | Self::Sha256sum | Self::Env => 1,
            _ => 0,
        }
    }
}

/// What rendering may look at: the clock, the environment and the directory relative file
/// names resolve against. Tests build one in code.
pub struct Context<'a> {
    /// Seconds since the Unix epoch.
    pub unix_time: u64,
    /// Directory that relative `md5sum`/`sha256sum` paths resolve against.
    pub base_dir: &'a Path,
    /// Environment lookup for `env`.
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

/// The Go architecture name of the build target (`amd64`, `arm64`, `386`, `arm`).
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        other => other,
    }
}

/// Converts days since 1970-01-01 to a (year, month, day) civil date (proleptic Gregorian).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // day is in 1..=31 and month in 1..=12 by construction
    (year, month as u32, day as u32)
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn position(&self, at: usize) -> Pos {
        let before = &self.src[..at];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Pos {
            line: before.matches('\n').count() + 1,
            col: before[line_start..].chars().count() + 1,
        }
    }

    fn error(&self, at: usize, msg: impl std::fmt::Display) -> Error {
        Error::InvalidInput(format!("template: {}: {msg}", self.position(at)))
    }

    fn skip_spaces(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_whitespace() {
                self.pos += c.len_utf8();
            } else {
                break;
            }
        }
    }

    /// At `-}}` (preceded by a space) or `}}`: consumes it, returns whether it trims.
    fn action_end(&mut self, after_space: bool) -> Option<bool> {
        if after_space && self.rest().starts_with("-}}") {
            self.pos += 3;
            Some(true)
        } else if self.rest().starts_with("}}") {
            self.pos += 2;
            Some(false)
        } else {
            None
        }
    }

    fn string(&mut self) -> Result<String> {
        let start = self.pos;
        let quote = self.peek();
        self.pos += 1;
        let mut out = String::new();
        if quote == Some('`') {
            let Some(end) = self.rest().find('`') else {
                return Err(self.error(start, "unterminated raw string"));
            };
            out.push_str(&self.rest()[..end]);
            self.pos += end + 1;
            return Ok(out);
        }
        loop {
            let Some(c) = self.peek() else {
                return Err(self.error(start, "unterminated quoted string"));
            };
            self.pos += c.len_utf8();
            match c {
                '"' => return Ok(out),
                '\n' => return Err(self.error(start, "unterminated quoted string")),
                '\\' => {
                    let esc_at = self.pos - 1;
                    let Some(e) = self.peek() else {
                        return Err(self.error(start, "unterminated quoted string"));
                    };
                    self.pos += e.len_utf8();
                    match e {
                        '"' => out.push('"'),
                        '\\' => out.push('\\'),
                        '\'' => out.push('\''),
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        'a' => out.push('\u{7}'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        'v' => out.push('\u{b}'),
                        'x' | 'u' | 'U' => {
                            let n = match e {
                                'x' => 2,
                                'u' => 4,
                                _ => 8,
                            };
                            let hex = self.rest().get(..n).unwrap_or("");
                            let ch = u32::from_str_radix(hex, 16)
                                .ok()
                                .filter(|_| hex.len() == n)
                                .and_then(char::from_u32)
                                .ok_or_else(|| self.error(esc_at, "invalid escape in string"))?;
                            out.push(ch);
                            self.pos += n;
                        }
                        other => {
                            return Err(
                                self.error(esc_at, format!("unknown escape sequence \\{other}"))
                            );
                        }
                    }
                }
                c => out.push(c),
            }
        }
    }

    /// Parses the inside of an action, after `{{` (and an optional `- `). Returns the call (or
    /// `None` for a comment) and whether the closing delimiter trims.
    fn action(&mut self, open_at: usize) -> Result<(Option<Call>, bool)> {
        let mut words: Vec<(usize, String)> = Vec::new();
        let mut func: Option<(usize, String)> = None;
        let mut comment = false;
        loop {
            let before = self.pos;
            self.skip_spaces();
            let after_space = self.pos > before;
            if let Some(trim) = self.action_end(after_space) {
                if comment {
                    return Ok((None, trim));
                }
                let Some((fpos, name)) = func else {
                    return Err(self.error(open_at, "empty action: missing function name"));
                };
                let Some(f) = Func::from_name(&name) else {
                    return Err(self.error(fpos, format!("unknown function {name:?}")));
                };
                if words.len() != f.arity() {
                    return Err(self.error(
                        fpos,
                        format!(
                            "function {name:?} takes {} argument(s), got {}",
                            f.arity(),
                            words.len()
                        ),
                    ));
                }
                let call = Call {
                    func: f,
                    args: words.into_iter().map(|(_, w)| w).collect(),
                    pos: self.position(fpos),
                };
                return Ok((Some(call), trim));
            }
            let at = self.pos;
            match self.peek() {
                None => return Err(self.error(open_at, "unclosed action: missing \"}}\"")),
                Some(_) if comment => {
                    return Err(self.error(at, "unexpected text after comment"));
                }
                Some('/') if self.rest().starts_with("/*") && func.is_none() => {
                    let Some(end) = self.rest().find("*/") else {
                        return Err(self.error(at, "unclosed comment"));
                    };
                    self.pos += end + 2;
                    comment = true;
                }
                Some('"' | '`') => {
                    if func.is_none() {
                        return Err(self.error(at, "expected a function name, found a string"));
                    }
                    let s = self.string()?;
                    words.push((at, s));
                }
                Some(c) if c.is_alphabetic() || c == '_' => {
                    let len = self
                        .rest()
                        .find(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
                        .unwrap_or(self.rest().len());
                    let ident = self.rest()[..len].to_string();
                    self.pos += len;
                    if func.is_some() {
                        return Err(self.error(
                            at,
                            format!("unexpected {ident:?}: arguments must be quoted strings"),
                        ));
                    }
                    func = Some((at, ident));
                }
                Some(c) => return Err(self.error(at, format!("unexpected character {c:?}"))),
            }
        }
    }
}

/// Parses a template.
pub fn parse(src: &str) -> Result<Template> {
    let mut p = Parser { src, pos: 0 };
    let mut nodes = Vec::new();
    let mut text = String::new();
    let mut trim_next = false;
    while p.pos < src.len() {
        let Some(idx) = p.rest().find("{{") else {
            let tail = p.rest();
            text.push_str(if trim_next { tail.trim_start() } else { tail });
            break;
        };
        let mut chunk = &p.rest()[..idx];
        if trim_next {
            chunk = chunk.trim_start();
        }
        text.push_str(chunk);
        let open_at = p.pos + idx;
        p.pos = open_at + 2;
        // `{{- ` trims the preceding text (Go requires the space after the dash)
        let rest = p.rest();
        if rest.starts_with('-') && rest[1..].starts_with(char::is_whitespace) {
            p.pos += 1;
            text.truncate(text.trim_end().len());
        }
        let (call, trim) = p.action(open_at)?;
        trim_next = trim;
        if let Some(call) = call {
            if !text.is_empty() {
                nodes.push(Node::Text(std::mem::take(&mut text)));
            }
            nodes.push(Node::Call(call));
        }
    }
    if !text.is_empty() {
        nodes.push(Node::Text(text));
    }
    Ok(Template { nodes })
}

fn digest_file<D: Digest>(func: &str, base: &Path, name: &str, pos: Pos) -> Result<String> {
    if name.is_empty() {
        return Err(Error::InvalidInput(format!(
            "template: {pos}: {func}: empty file name"
        )));
    }
    let path = base.join(name);
    let fail = |e: std::io::Error| Error::Io {
        context: format!("template: {pos}: {func} {name:?}"),
        source: e,
    };
    let mut file = File::open(&path).map_err(fail)?;
    let mut hasher = D::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(fail)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

impl Template {
    /// Renders the template.
    pub fn render(&self, ctx: &Context<'_>) -> Result<String> {
        let mut out = String::new();
        let days = i64::try_from(ctx.unix_time / 86_400).unwrap_or(i64::MAX / 2);
        for node in &self.nodes {
            match node {
                Node::Text(t) => out.push_str(t),
                Node::Call(call) => {
                    let arg = call.args.first().map(String::as_str).unwrap_or("");
                    let value = match call.func {
                        Func::Md5sum => {
                            digest_file::<Md5>(call.func.name(), ctx.base_dir, arg, call.pos)?
                        }
                        Func::Sha256sum => {
                            digest_file::<Sha256>(call.func.name(), ctx.base_dir, arg, call.pos)?
                        }
                        Func::Env => (ctx.env)(arg).unwrap_or_default(),
                        Func::Os => std::env::consts::OS.to_string(),
                        Func::Arch => go_arch().to_string(),
                        Func::Unixtime => ctx.unix_time.to_string(),
                        Func::Year => civil_from_days(days).0.to_string(),
                        Func::Month => civil_from_days(days).1.to_string(),
                        Func::Day => civil_from_days(days).2.to_string(),
                    };
                    out.push_str(&value);
                }
            }
        }
        Ok(out)
    }
}

/// Parses and renders `src` against the real clock, environment and current directory.
pub fn render_str(src: &str) -> Result<String> {
    let tpl = parse(src)?;
    let cwd =
        std::env::current_dir().map_err(|e| Error::io("cannot read the current directory", e))?;
    let unix_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let env = |name: &str| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
    tpl.render(&Context {
        unix_time,
        base_dir: &cwd,
        env: &env,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2024-02-29T12:00:00Z
    const T: u64 = 1_709_208_000;

    fn render_in(dir: &Path, src: &str) -> Result<String> {
        let env = |name: &str| match name {
            "SET" => Some("value".to_string()),
            _ => None,
        };
        parse(src)?.render(&Context {
            unix_time: T,
            base_dir: dir,
            env: &env,
        })
    }

    fn render(src: &str) -> Result<String> {
        render_in(Path::new("/nonexistent-base"), src)
    }

    fn err(src: &str) -> String {
        render(src).expect_err(src).to_string()
    }

    #[test]
    fn literal_text_passes_through() {
        assert_eq!(render("").expect("render"), "");
        assert_eq!(
            render("plain-key } { }").expect("render"),
            "plain-key } { }"
        );
        assert_eq!(render("a\nb\n").expect("render"), "a\nb\n");
    }

    #[test]
    fn clock_and_platform_functions() {
        assert_eq!(
            render("{{ year }}-{{ month }}-{{ day }}").expect("render"),
            "2024-2-29"
        );
        assert_eq!(render("{{unixtime}}").expect("render"), T.to_string());
        assert_eq!(render("{{ os }}").expect("render"), "linux");
        let arch = render("{{ arch }}").expect("render");
        assert!(
            ["amd64", "arm64", "386", "arm"].contains(&arch.as_str()),
            "{arch}"
        );
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(10_956), (1999, 12, 31));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn env_function() {
        assert_eq!(render("k-{{ env \"SET\" }}").expect("render"), "k-value");
        assert_eq!(render("k-{{ env \"UNSET\" }}-x").expect("render"), "k--x");
        assert_eq!(render("{{ env `SET` }}").expect("render"), "value");
    }

    #[test]
    fn digest_functions() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("go.sum"), b"abc").expect("write");
        assert_eq!(
            render_in(dir.path(), "{{ md5sum \"go.sum\" }}").expect("render"),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(
            render_in(dir.path(), "cache-{{ sha256sum \"go.sum\" }}").expect("render"),
            "cache-ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let abs = dir.path().join("go.sum");
        let src = format!("{{{{ md5sum \"{}\" }}}}", abs.display());
        assert_eq!(
            render(&src).expect("render"),
            "900150983cd24fb0d6963f7d28e17f72"
        );
    }

    #[test]
    fn unreadable_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = render_in(dir.path(), "{{ md5sum \"missing.lock\" }}")
            .expect_err("missing")
            .to_string();
        assert!(e.contains("md5sum \"missing.lock\""), "{e}");
        let e = render_in(dir.path(), "{{ sha256sum \".\" }}")
            .expect_err("dir")
            .to_string();
        assert!(e.contains("sha256sum \".\""), "{e}");
        let e = render_in(dir.path(), "{{ md5sum \"\" }}")
            .expect_err("empty")
            .to_string();
        assert!(e.contains("empty file name"), "{e}");
    }

    #[test]
    fn string_escapes() {
        assert_eq!(
            render("{{ env \"S\\x45T\" }}").expect("render"),
            "value",
            "\\x45 is E"
        );
        assert_eq!(render("{{ env \"SE\\u0054\" }}").expect("render"), "value");
        assert!(err("{{ env \"\\q\" }}").contains("unknown escape"));
    }

    #[test]
    fn trim_markers_and_comments() {
        assert_eq!(render("a  {{- year -}}  b").expect("render"), "a2024b");
        assert_eq!(render("a {{/* note */}} b").expect("render"), "a  b");
        assert_eq!(render("a {{- /* note */ -}} b").expect("render"), "ab");
    }

    #[test]
    fn unknown_function_is_named_with_position() {
        let e = err("key-\n  {{ sha1sum \"x\" }}");
        assert!(e.contains("unknown function \"sha1sum\""), "{e}");
        assert!(e.contains("line 2, column 6"), "{e}");
    }

    #[test]
    fn syntax_errors() {
        assert!(err("{{ year").contains("unclosed action"));
        assert!(err("{{ }}").contains("missing function name"));
        assert!(err("{{ env \"X }}").contains("unterminated quoted string"));
        assert!(err("{{ env `X }}").contains("unterminated raw string"));
        assert!(err("{{ env X }}").contains("arguments must be quoted strings"));
        assert!(err("{{ \"x\" }}").contains("expected a function name"));
        assert!(err("{{ env \"a\" | md5sum }}").contains("unexpected character '|'"));
        assert!(err("{{ year \"x\" }}").contains("takes 0 argument(s), got 1"));
        assert!(err("{{ md5sum }}").contains("takes 1 argument(s), got 0"));
        assert!(err("{{ env \"a\" \"b\" }}").contains("got 2"));
        assert!(err("{{/* open }}").contains("unclosed comment"));
    }

    #[test]
    fn parse_keeps_text_and_calls_in_order() {
        let t = parse("a{{ os }}b").expect("parse");
        assert_eq!(t.nodes.len(), 3);
        assert_eq!(t.nodes[0], Node::Text("a".into()));
        assert!(matches!(
            t.nodes[1],
            Node::Call(Call { func: Func::Os, .. })
        ));
        assert_eq!(t.nodes[2], Node::Text("b".into()));
    }
}
