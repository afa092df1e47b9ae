//! A YAML/JSON document tree that keeps the position of every node, so that decoding and
//! validation errors can name the line and column they are about.
//!
//! YAML is read from saphyr-parser events (YAML 1.2, JSON is a subset). Scalars are resolved
//! with the YAML 1.2 core schema. Anchors and aliases are expanded and `<<` merge keys applied.
//! Nesting depth and the expanded node count are capped, so hostile input (alias bombs, deeply
//! nested flows) fails with an error instead of exhausting the stack or memory.

use std::collections::{HashMap, HashSet};

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// Deeper documents are rejected: decoding is recursive and must not overflow the stack.
pub(crate) const MAX_DEPTH: usize = 128;
/// Upper bound on nodes after alias expansion (a 1 MiB file without aliases stays far below).
pub(crate) const MAX_NODES: usize = 1_000_000;

/// 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    /// A number, as written (ints and floats are only ever read as text or small integers).
    Number(String),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Key {
    pub name: String,
    pub pos: Option<Position>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub kind: Kind,
    pub pos: Option<Position>,
}

impl Node {
    pub fn new(kind: Kind, pos: Option<Position>) -> Self {
        Node { kind, pos }
    }

    /// Type name for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Number(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a map",
        }
    }

    /// Node count and height. Recursion is bounded: every tree was built within `MAX_DEPTH`.
    fn measure(&self) -> (usize, usize) {
        let children: Box<dyn Iterator<Item = &Node>> = match &self.kind {
            Kind::Seq(items) => Box::new(items.iter()),
            Kind::Map(entries) => Box::new(entries.iter().map(|(_, v)| v)),
            _ => return (1, 1),
        };
        let (mut count, mut height) = (1usize, 0usize);
        for c in children {
            let (n, h) = c.measure();
            count = count.saturating_add(n);
            height = height.max(h);
        }
        (count, height + 1)
    }

    /// Converts a JSON value (the output of Jsonnet, or a JSON parse without positions).
    /// `serde_json` caps nesting at 128 while parsing; values built otherwise are checked here.
    pub fn from_json(v: &serde_json::Value, depth: usize) -> Result<Node, String> {
        if depth > MAX_DEPTH {
            return Err(format!("config is nested deeper than {MAX_DEPTH} levels"));
        }
        let kind = match v {
            serde_json::Value::Null => Kind::Null,
            serde_json::Value::Bool(b) => Kind::Bool(*b),
            serde_json::Value::Number(n) => Kind::Number(n.to_string()),
            serde_json::Value::String(s) => Kind::Str(s.clone()),
            serde_json::Value::Array(items) => Kind::Seq(
                items
                    .iter()
                    .map(|i| Node::from_json(i, depth + 1))
                    .collect::<Result<_, _>>()?,
            ),
            serde_json::Value::Object(map) => Kind::Map(
                map.iter()
                    .map(|(k, v)| {
                        Ok((
                            Key {
                                name: k.clone(),
                                pos: None,
                            },
                            Node::from_json(v, depth + 1)?,
                        ))
                    })
                    .collect::<Result<_, String>>()?,
            ),
        };
        Ok(Node::new(kind, None))
    }
}

/// A YAML load failure with its position when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoadError {
    pub message: String,
    pub pos: Option<Position>,
}

impl LoadError {
    fn at(pos: Option<Position>, message: impl Into<String>) -> Self {
        LoadError {
            message: message.into(),
            pos,
        }
    }
}

fn position(span: &Span) -> Position {
    Position {
        line: span.start.line(),
        column: span.start.col() + 1,
    }
}

/// Resolves a plain scalar with the YAML 1.2 core schema.
fn resolve_plain(s: &str) -> Kind {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => Kind::Null,
        "true" | "True" | "TRUE" => Kind::Bool(true),
        "false" | "False" | "FALSE" => Kind::Bool(false),
        _ if is_number(s) => Kind::Number(s.to_owned()),
        _ => Kind::Str(s.to_owned()),
    }
}

fn is_number(s: &str) -> bool {
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    if let Some(oct) = s.strip_prefix("0o") {
        return !oct.is_empty() && oct.bytes().all(|b| (b'0'..=b'7').contains(&b));
    }
    if let Some(hex) = s.strip_prefix("0x") {
        return !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") || matches!(s, ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    // [0-9]+ (. [0-9]*)? | . [0-9]+, then an optional exponent
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match frac {
        None => !int.is_empty() && digits(int),
        Some(f) => digits(int) && digits(f) && !(int.is_empty() && f.is_empty()),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

enum Frame {
    Seq {
        items: Vec<Node>,
        pos: Position,
        anchor: usize,
    },
    Map {
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        pos: Position,
        anchor: usize,
    },
}

struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    nodes: usize,
}

impl Builder {
    fn count(&mut self, n: usize, pos: Option<Position>) -> Result<(), LoadError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(LoadError::at(
                pos,
                format!("config expands to more than {MAX_NODES} nodes (aliases?)"),
            ));
        }
        Ok(())
    }

    fn push(&mut self, node: Node, anchor: usize) -> Result<(), LoadError> {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_some() {
                    return Err(LoadError::at(
                        node.pos,
                        "multiple YAML documents are not supported",
                    ));
                }
                self.root = Some(node);
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
        Ok(())
    }

    fn open(&mut self, frame: Frame, pos: Position) -> Result<(), LoadError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(LoadError::at(
                Some(pos),
                format!("config is nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        self.count(1, Some(pos))?;
        self.stack.push(frame);
        Ok(())
    }
}

/// Builds a map from its raw entries: keys must be scalars and unique; `<<` merges the entries
/// of a map (or list of maps) that are not set explicitly.
fn finish_map(entries: Vec<(Node, Node)>, pos: Position) -> Result<Node, LoadError> {
    let mut out: Vec<(Key, Node)> = Vec::with_capacity(entries.len());
    // small maps (nearly all of them) are scanned, which allocates nothing; a 1 MiB map can
    // hold ~100k keys, so large ones use a set
    let use_set = entries.len() > 16;
    let mut seen: HashSet<String> = HashSet::new();
    let mut is_new = |out: &[(Key, Node)], name: &str| {
        if use_set {
            seen.insert(name.to_owned())
        } else {
            !out.iter().any(|(k, _)| k.name == name)
        }
    };
    let mut merges = Vec::new();
    for (k, v) in entries {
        let name = match k.kind {
            Kind::Str(s) | Kind::Number(s) => s,
            Kind::Bool(b) => b.to_string(),
            Kind::Null => String::new(),
            Kind::Seq(_) | Kind::Map(_) => {
                return Err(LoadError::at(k.pos, "map keys must be strings"));
            }
        };
        if name == "<<" {
            merges.push(v);
            continue;
        }
        if !is_new(&out, &name) {
            return Err(LoadError::at(k.pos, format!("duplicate key {name:?}")));
        }
        out.push((Key { name, pos: k.pos }, v));
    }
    for m in merges {
        let sources = match m.kind {
            Kind::Map(e) => vec![e],
            Kind::Seq(items) => {
                let mut sources = Vec::new();
                for i in items {
                    match i.kind {
                        Kind::Map(e) => sources.push(e),
                        _ => {
                            return Err(LoadError::at(
                                i.pos,
                                "a merge key (<<) takes a map or a list of maps",
                            ));
                        }
                    }
                }
                sources
            }
            _ => {
                return Err(LoadError::at(
                    m.pos,
                    "a merge key (<<) takes a map or a list of maps",
                ));
            }
        };
        for source in sources {
            for (k, v) in source {
                if is_new(&out, &k.name) {
                    out.push((k, v));
                }
            }
        }
    }
    Ok(Node::new(Kind::Map(out), Some(pos)))
}

/// Parses a YAML (or JSON) document into a positioned tree. An empty document is `Null`.
pub(crate) fn load_yaml(text: &str) -> Result<Node, LoadError> {
    let mut b = Builder {
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        nodes: 0,
    };
    let mut documents = 0usize;
    for ev in Parser::new_from_str(text) {
        let (ev, span) = ev.map_err(|e| {
            LoadError::at(
                Some(Position {
                    line: e.marker().line(),
                    column: e.marker().col() + 1,
                }),
                e.info().to_owned(),
            )
        })?;
        let pos = position(&span);
        match ev {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(LoadError::at(
                        Some(pos),
                        "multiple YAML documents are not supported",
                    ));
                }
            }
            Event::Scalar(value, style, anchor, tag) => {
                b.count(1, Some(pos))?;
                let explicit_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let kind = if style == ScalarStyle::Plain && !explicit_str {
                    resolve_plain(&value)
                } else {
                    Kind::Str(value.into_owned())
                };
                b.push(Node::new(kind, Some(pos)), anchor)?;
            }
            Event::Alias(id) => {
                let Some((n, height)) = b.anchors.get(&id).map(Node::measure) else {
                    return Err(LoadError::at(Some(pos), "alias of an unknown anchor"));
                };
                // an alias can graft a deep tree deep inside another: keep the total bounded
                if b.stack.len() + height > MAX_DEPTH {
                    return Err(LoadError::at(
                        Some(pos),
                        format!("config is nested deeper than {MAX_DEPTH} levels"),
                    ));
                }
                // counted before cloning, so an alias bomb stops before it allocates
                b.count(n, Some(pos))?;
                if let Some(mut node) = b.anchors.get(&id).cloned() {
                    node.pos = Some(pos);
                    b.push(node, 0)?;
                }
            }
            Event::SequenceStart(anchor, _) => {
                b.open(
                    Frame::Seq {
                        items: Vec::new(),
                        pos,
                        anchor,
                    },
                    pos,
                )?;
            }
            Event::MappingStart(anchor, _) => {
                b.open(
                    Frame::Map {
                        entries: Vec::new(),
                        key: None,
                        pos,
                        anchor,
                    },
                    pos,
                )?;
            }
            Event::SequenceEnd => match b.stack.pop() {
                Some(Frame::Seq { items, pos, anchor }) => {
                    b.push(Node::new(Kind::Seq(items), Some(pos)), anchor)?;
                }
                _ => return Err(LoadError::at(Some(pos), "unbalanced YAML sequence")),
            },
            Event::MappingEnd => match b.stack.pop() {
                Some(Frame::Map {
                    entries,
                    key,
                    pos,
                    anchor,
                }) => {
                    if key.is_some() {
                        return Err(LoadError::at(Some(pos), "map key without a value"));
                    }
                    let node = finish_map(entries, pos)?;
                    b.push(node, anchor)?;
                }
                _ => return Err(LoadError::at(Some(pos), "unbalanced YAML mapping")),
            },
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
    }
    Ok(b.root.unwrap_or(Node::new(Kind::Null, None)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_scalars_follow_the_core_schema() {
        let cases = [
            ("~", Kind::Null),
            ("null", Kind::Null),
            ("true", Kind::Bool(true)),
            ("False", Kind::Bool(false)),
            ("yes", Kind::Str("yes".into())),
            ("12", Kind::Number("12".into())),
            ("-1.5e3", Kind::Number("-1.5e3".into())),
            ("0x1F", Kind::Number("0x1F".into())),
            (".5", Kind::Number(".5".into())),
            ("1.2.3", Kind::Str("1.2.3".into())),
            ("512Mi", Kind::Str("512Mi".into())),
            ("e3", Kind::Str("e3".into())),
            (".", Kind::Str(".".into())),
        ];
        for (text, want) in cases {
            assert_eq!(resolve_plain(text), want, "{text}");
        }
    }

    #[test]
    fn positions_are_one_based() {
        let n = load_yaml("a:\n  b: [1, 'x']\n").expect("valid yaml");
        let Kind::Map(entries) = &n.kind else {
            panic!("not a map")
        };
        assert_eq!(entries[0].0.pos, Some(Position { line: 1, column: 1 }));
        let Kind::Map(inner) = &entries[0].1.kind else {
            panic!("not a map")
        };
        let Kind::Seq(items) = &inner[0].1.kind else {
            panic!("not a seq")
        };
        assert_eq!(
            items[1].pos,
            Some(Position {
                line: 2,
                column: 10
            })
        );
        assert_eq!(items[1].kind, Kind::Str("x".into()));
    }

    #[test]
    fn aliases_and_merge_keys() {
        let n = load_yaml("base: &b {image: alpine, user: root}\nc: {<<: *b, user: me}\nd: *b\n")
            .expect("valid yaml");
        let Kind::Map(entries) = &n.kind else {
            panic!("not a map")
        };
        let Kind::Map(c) = &entries[1].1.kind else {
            panic!("not a map")
        };
        let get = |name: &str| c.iter().find(|(k, _)| k.name == name).map(|(_, v)| &v.kind);
        assert_eq!(get("user"), Some(&Kind::Str("me".into())));
        assert_eq!(get("image"), Some(&Kind::Str("alpine".into())));
        assert!(matches!(entries[2].1.kind, Kind::Map(_)));
    }

    #[test]
    fn hostile_documents_fail_cleanly() {
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(load_yaml(&deep).is_err());
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = load_yaml(&bomb).expect_err("alias bomb must fail");
        assert!(err.message.contains("nodes"), "{}", err.message);
        assert!(load_yaml("a: 1\na: 2\n").is_err());
        assert!(load_yaml("a: 1\n---\nb: 2\n").is_err());
    }
}
