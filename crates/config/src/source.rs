//! Config sources: which file of `.agola/` is used, the size limit, and evaluation of the four
//! formats into one positioned document tree.

use std::path::Path;
use std::time::Duration;

use crate::context::RefContext;
use crate::error::{ConfigError, Error, Result};
use crate::node::{LoadError, Node, load_yaml};

mod guard;
mod jsonnet;
mod starlark;

/// Stack of the thread Jsonnet and Starlark run on. Their parsers and evaluators recurse over
/// the syntax tree; with [`guard`] bounding its depth this leaves a wide margin even in debug
/// builds (≈ 20 KiB per level). Only touched pages are committed.
const EVAL_STACK_SIZE: usize = 64 << 20;

/// Directory of the config files, relative to the repository root.
pub const CONFIG_DIR: &str = ".agola";
/// Largest accepted config, and largest accepted Jsonnet/Starlark output.
pub const MAX_CONFIG_SIZE: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigFormat {
    Starlark,
    Jsonnet,
    Json,
    Yaml,
}

impl ConfigFormat {
    /// The formats in lookup order: the first file found wins.
    pub const LOOKUP_ORDER: [ConfigFormat; 4] = [
        ConfigFormat::Starlark,
        ConfigFormat::Jsonnet,
        ConfigFormat::Json,
        ConfigFormat::Yaml,
    ];

    /// File name inside [`CONFIG_DIR`].
    pub fn file_name(self) -> &'static str {
        match self {
            ConfigFormat::Starlark => "config.star",
            ConfigFormat::Jsonnet => "config.jsonnet",
            ConfigFormat::Json => "config.json",
            ConfigFormat::Yaml => "config.yml",
        }
    }

    /// Path relative to the repository root, e.g. `.agola/config.yml`.
    pub fn repo_path(self) -> String {
        format!("{CONFIG_DIR}/{}", self.file_name())
    }

    pub fn name(self) -> &'static str {
        match self {
            ConfigFormat::Starlark => "starlark",
            ConfigFormat::Jsonnet => "jsonnet",
            ConfigFormat::Json => "json",
            ConfigFormat::Yaml => "yaml",
        }
    }

    /// The format of a config file name (`config.yml`, `.agola/config.star`...).
    pub fn from_file_name(name: &str) -> Option<Self> {
        let base = name.rsplit('/').next().unwrap_or(name);
        Self::LOOKUP_ORDER
            .into_iter()
            .find(|f| f.file_name() == base)
    }
}

impl std::fmt::Display for ConfigFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Reads the config of a repository checked out at `repo_dir`: the first of
/// `.agola/config.star`, `config.jsonnet`, `config.json`, `config.yml` that exists.
pub fn read_config_dir(repo_dir: &Path) -> Result<(ConfigFormat, Vec<u8>)> {
    for format in ConfigFormat::LOOKUP_ORDER {
        let path = repo_dir.join(CONFIG_DIR).join(format.file_name());
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(Error::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        // checked before reading, so a huge file is never loaded
        let size = usize::try_from(meta.len()).unwrap_or(usize::MAX);
        if size > MAX_CONFIG_SIZE {
            return Err(Error::TooLarge {
                file: format.repo_path(),
                size,
                limit: MAX_CONFIG_SIZE,
            });
        }
        let data = std::fs::read(&path).map_err(|source| Error::Read {
            path: path.display().to_string(),
            source,
        })?;
        return Ok((format, data));
    }
    Err(Error::NotFound)
}

fn check_size(file: String, size: usize) -> Result<()> {
    if size > MAX_CONFIG_SIZE {
        return Err(Error::TooLarge {
            file,
            size,
            limit: MAX_CONFIG_SIZE,
        });
    }
    Ok(())
}

fn invalid(message: impl Into<String>, line: Option<usize>, column: Option<usize>) -> Error {
    let mut e = ConfigError::new(message);
    e.line = line;
    e.column = column;
    Error::Invalid(vec![e])
}

fn load_error(format: ConfigFormat, e: LoadError) -> Error {
    invalid(
        format!("invalid {format}: {}", e.message),
        e.pos.map(|p| p.line),
        e.pos.map(|p| p.column),
    )
}

/// Bounds on Jsonnet and Starlark evaluation, which run user code inside the gateway.
///
/// Starlark is stopped after `max_statements` statements or `timeout`; both evaluators refuse
/// calls deeper than `max_call_depth`. Jsonnet has no statement hook: a config that computes
/// for long (huge `std.range`) is bounded only by the caller running it on a thread it can
/// abandon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalLimits {
    pub max_statements: u64,
    pub timeout: Duration,
    pub max_call_depth: usize,
}

impl Default for EvalLimits {
    /// Real configs execute a few thousand statements; a debug build runs ~100k per second.
    fn default() -> Self {
        EvalLimits {
            max_statements: 1_000_000,
            timeout: Duration::from_secs(10),
            max_call_depth: 200,
        }
    }
}

/// Evaluates a config source into the document tree decoding works on.
pub(crate) fn evaluate(
    format: ConfigFormat,
    data: &[u8],
    ctx: &RefContext,
    limits: &EvalLimits,
) -> Result<Node> {
    check_size(format.repo_path(), data.len())?;
    match format {
        ConfigFormat::Yaml => {
            let text = utf8(format, data)?;
            load_yaml(text).map_err(|e| load_error(format, e))
        }
        ConfigFormat::Json => {
            let text = utf8(format, data)?;
            // serde_json first: its messages are the clearer ones for JSON syntax errors
            let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
                // the position goes into the error's own fields, not twice into the message
                let full = e.to_string();
                let message = full
                    .rsplit_once(" at line ")
                    .map_or(full.as_str(), |(m, _)| m);
                invalid(
                    format!("invalid json: {message}"),
                    Some(e.line()),
                    Some(e.column()),
                )
            })?;
            // then the YAML reader for positions; JSON that it reads differently (tabs in
            // indentation, for one) keeps the serde_json tree, without positions
            match load_yaml(text) {
                Ok(node) => Ok(node),
                // serde_json silently keeps the last of duplicate keys: report them instead
                Err(e) if e.message.starts_with("duplicate key") => Err(load_error(format, e)),
                Err(_) => Node::from_json(&value, 0).map_err(|m| invalid(m, None, None)),
            }
        }
        ConfigFormat::Jsonnet => {
            guarded(format, data, guard::Lang::Jsonnet)?;
            let json = isolated(|| jsonnet::evaluate(data, ctx, limits))?;
            check_size(format!("{} output", format.repo_path()), json.len())?;
            let value: serde_json::Value = serde_json::from_str(&json)
                .map_err(|e| invalid(format!("jsonnet output is not usable: {e}"), None, None))?;
            Node::from_json(&value, 0).map_err(|m| invalid(m, None, None))
        }
        ConfigFormat::Starlark => {
            let text = utf8(format, data)?;
            guarded(format, data, guard::Lang::Starlark)?;
            isolated(|| starlark::evaluate(text, ctx, limits))
        }
    }
}

fn guarded(format: ConfigFormat, data: &[u8], lang: guard::Lang) -> Result<()> {
    guard::check_nesting(data, lang).map_err(|e| {
        invalid(
            format!("{format} config: {}", e.message),
            Some(e.line),
            Some(e.column),
        )
    })
}

/// Runs an evaluator on its own thread: a big stack for its recursion, and a panic inside a
/// third-party evaluator becomes a config error instead of taking the caller down.
fn isolated<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        let spawned = std::thread::Builder::new()
            .name("agola-config-eval".to_owned())
            .stack_size(EVAL_STACK_SIZE)
            .spawn_scoped(s, f);
        match spawned {
            Ok(handle) => handle.join().unwrap_or_else(|_| {
                Err(invalid(
                    "config evaluation failed unexpectedly (the evaluator panicked)",
                    None,
                    None,
                ))
            }),
            Err(e) => Err(invalid(
                format!("cannot start the config evaluator: {e}"),
                None,
                None,
            )),
        }
    })
}

fn utf8(format: ConfigFormat, data: &[u8]) -> Result<&str> {
    std::str::from_utf8(data).map_err(|e| {
        invalid(
            format!("{format} config is not valid UTF-8: {e}"),
            None,
            None,
        )
    })
}

/// 1-based line and column of a byte offset, for evaluator errors that give offsets.
pub(crate) fn line_column(text: &[u8], offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}
