//! Errors of the pipeline config crate.

use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// None of the config files exists: the repository has no pipeline.
    #[error("no config file found")]
    NotFound,
    /// The config (or the evaluated Jsonnet/Starlark output) is over the size limit.
    #[error("config file {file} is {size} bytes, more than the {limit} bytes limit")]
    TooLarge {
        file: String,
        size: usize,
        limit: usize,
    },
    /// The config cannot be used: every problem found, each naming where it is.
    #[error("{}", ConfigErrors(.0))]
    Invalid(Vec<ConfigError>),
    /// The config directory could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The messages of the "Setup Error" run this error becomes (spec 60 §7 step 5).
    pub fn setup_errors(&self) -> Vec<String> {
        match self {
            Error::Invalid(errors) => errors.iter().map(ToString::to_string).collect(),
            other => vec![other.to_string()],
        }
    }

    /// The individual problems of an invalid config; empty for other errors.
    pub fn config_errors(&self) -> &[ConfigError] {
        match self {
            Error::Invalid(errors) => errors,
            _ => &[],
        }
    }
}

/// Displays a list of errors on one line each.
struct ConfigErrors<'a>(&'a [ConfigError]);

impl fmt::Display for ConfigErrors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// How an error names a run or task: its name, or its 1-based position while it has no usable
/// name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ident {
    Name(String),
    Index(usize),
}

impl Ident {
    pub fn name(&self) -> Option<&str> {
        match self {
            Ident::Name(n) => Some(n),
            Ident::Index(_) => None,
        }
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ident::Name(n) => write!(f, "{n:?}"),
            Ident::Index(i) => write!(f, "#{i}"),
        }
    }
}

/// One problem in a config, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub run: Option<Ident>,
    pub task: Option<Ident>,
    /// Step number, 1-based.
    pub step: Option<usize>,
    /// 1-based line and column in the YAML/JSON source, when known.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl ConfigError {
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError {
            run: None,
            task: None,
            step: None,
            line: None,
            column: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut prefix = Vec::new();
        if let Some(run) = &self.run {
            prefix.push(format!("run {run}"));
        }
        if let Some(task) = &self.task {
            prefix.push(format!("task {task}"));
        }
        if let Some(step) = self.step {
            prefix.push(format!("step {step}"));
        }
        if !prefix.is_empty() {
            write!(f, "{}: ", prefix.join(", "))?;
        }
        f.write_str(&self.message)?;
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, " (line {l}, column {c})"),
            (Some(l), None) => write!(f, " (line {l})"),
            _ => Ok(()),
        }
    }
}
