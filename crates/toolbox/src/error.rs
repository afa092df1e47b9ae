//! The toolbox error type. Every message names what failed (the file, the entry, the template
//! action) because it ends up in a step log read by a person.

use std::io;

/// Result alias used across the toolbox.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, grouped by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line is wrong: fix the invocation (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// The input (JSON request, template, archive, glob, user name) is invalid: fix the input.
    #[error("{0}")]
    InvalidInput(String),
    /// An archive entry was refused because extracting it could write outside the destination
    /// or is otherwise unsafe. Nothing of that entry was written.
    #[error("rejected archive entry {entry:?}: {reason}")]
    Rejected { entry: String, reason: String },
    /// The operation is not allowed for the current user (e.g. switching user when not root).
    #[error("{0}")]
    PermissionDenied(String),
    /// The command given to `exec` could not be executed.
    #[error("cannot execute {command:?}: {source}")]
    Exec {
        command: String,
        #[source]
        source: io::Error,
    },
    /// A file system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Builds an [`Error::Io`] with a context naming the object of the failed operation.
    pub fn io(context: impl Into<String>, source: impl Into<io::Error>) -> Self {
        Self::Io {
            context: context.into(),
            source: source.into(),
        }
    }

    /// Process exit code for this error: 2 for usage errors, 127/126 for a command that cannot
    /// be found/executed (as shells do), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => 2,
            Self::Exec { source, .. } if source.kind() == io::ErrorKind::NotFound => 127,
            Self::Exec { .. } => 126,
            _ => 1,
        }
    }
}

/// Shorthand for `map_err(|e| Error::io(context, e))` with a lazily built context.
pub(crate) trait IoContext<T> {
    fn ctx<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<io::Error>> IoContext<T> for std::result::Result<T, E> {
    fn ctx<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| Error::io(context(), e))
    }
}
