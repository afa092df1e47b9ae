//! The one error type of the crate, named for what the caller does about it.

use agola_common::ApiError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object does not exist; callers usually turn this into their own not-found.
    #[error("object {path:?} does not exist")]
    NotExist { path: String },
    /// The path breaks the key rules (see [`crate::normalize_path`]) or conflicts with the
    /// tree shape of the backend; do not retry as is.
    #[error("invalid object path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    /// The data does not match the request (size mismatch, too large, bad config value...);
    /// do not retry as is.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The backend failed (I/O error, S3 unreachable or erroring); retrying later may succeed.
    #[error("object storage unavailable: {0}")]
    Unavailable(String),
}

impl Error {
    pub fn is_not_exist(&self) -> bool {
        matches!(self, Error::NotExist { .. })
    }

    pub(crate) fn not_exist(path: &str) -> Self {
        Error::NotExist {
            path: path.to_owned(),
        }
    }

    /// An invalid path error; very long paths are cut in the message to keep logs readable.
    pub(crate) fn invalid_path(path: &str, reason: impl Into<String>) -> Self {
        const SHOWN: usize = 128;
        let path = if path.len() > SHOWN {
            let mut end = SHOWN;
            while !path.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}... ({} bytes)", &path[..end], path.len())
        } else {
            path.to_owned()
        };
        Error::InvalidPath {
            path,
            reason: reason.into(),
        }
    }
}

/// An error of the caller's byte source while writing. Bad data is the caller's to fix;
/// anything else (a dropped connection...) may pass on a retry.
pub(crate) fn source_error(e: std::io::Error) -> Error {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidData | ErrorKind::InvalidInput | ErrorKind::UnexpectedEof => {
            Error::InvalidInput(format!("reading the data to write: {e}"))
        }
        _ => Error::Unavailable(format!("reading the data to write: {e}")),
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotExist { .. } => ApiError::not_found(e.to_string()),
            Error::InvalidPath { .. } | Error::InvalidInput(_) => {
                ApiError::bad_request(e.to_string())
            }
            Error::Unavailable(_) => ApiError::unavailable(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use agola_common::error::ErrorKind;

    use super::*;

    #[test]
    fn api_error_kinds() {
        let cases = [
            (Error::not_exist("a"), ErrorKind::NotFound),
            (
                Error::invalid_path("a//b", "empty segment"),
                ErrorKind::BadRequest,
            ),
            (Error::InvalidInput("short".into()), ErrorKind::BadRequest),
            (Error::Unavailable("down".into()), ErrorKind::Unavailable),
        ];
        for (err, kind) in cases {
            assert_eq!(ApiError::from(err).kind, kind);
        }
    }

    #[test]
    fn long_paths_are_cut_in_messages() {
        let long = "é".repeat(1000);
        let msg = Error::invalid_path(&long, "too long").to_string();
        assert!(msg.len() < 300, "{msg}");
        assert!(msg.contains("(2000 bytes)"), "{msg}");
    }
}
