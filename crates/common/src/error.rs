//! The error model every service speaks (spec 00 §5).
//!
//! A small set of [`ErrorKind`]s, each named for what the caller should do, with exactly one
//! mapping to a gRPC [`tonic::Code`] and one to an HTTP status. Service crates keep their own
//! error enums and convert them into [`ApiError`] once; [`ApiError::to_status`] and
//! [`ApiError::from_status`] carry kind, code and message across gRPC so the gateway can pass an
//! internal service's 4xx straight through. Internal and unavailable errors never reach a client
//! with their text: they answer the fixed `internal server error` and the detail is logged.

use std::fmt;

use http::StatusCode;
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataValue;

/// gRPC metadata key carrying the specific error code (`not_found`, `log_lost`, ...).
pub const ERROR_CODE_METADATA: &str = "agola-error-code";

/// The text every client sees for a 5xx, whatever happened.
pub const INTERNAL_MESSAGE: &str = "internal server error";

/// What went wrong, from the caller's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed or not allowed in the current state; do not retry as is.
    BadRequest,
    /// The referenced resource does not exist (or is invisible to the caller).
    NotFound,
    /// Missing or invalid credentials.
    Unauthorized,
    /// Valid credentials without the needed permission.
    Forbidden,
    /// The resource already exists (name taken, ...).
    AlreadyExists,
    /// An optimistic-concurrency check failed; re-read and retry.
    Concurrency,
    /// A dependency is temporarily unreachable; retrying later may succeed.
    Unavailable,
    /// A bug or an unexpected failure; the detail is only logged.
    Internal,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::BadRequest,
        ErrorKind::NotFound,
        ErrorKind::Unauthorized,
        ErrorKind::Forbidden,
        ErrorKind::AlreadyExists,
        ErrorKind::Concurrency,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
    ];

    /// The gRPC code this kind travels as.
    pub fn grpc_code(self) -> tonic::Code {
        match self {
            ErrorKind::BadRequest => tonic::Code::InvalidArgument,
            ErrorKind::NotFound => tonic::Code::NotFound,
            ErrorKind::Unauthorized => tonic::Code::Unauthenticated,
            ErrorKind::Forbidden => tonic::Code::PermissionDenied,
            ErrorKind::AlreadyExists => tonic::Code::AlreadyExists,
            ErrorKind::Concurrency => tonic::Code::Aborted,
            ErrorKind::Unavailable => tonic::Code::Unavailable,
            ErrorKind::Internal => tonic::Code::Internal,
        }
    }

    /// The kind a received gRPC code stands for. Codes we never send map to the closest kind;
    /// anything unexpected is internal.
    pub fn from_grpc_code(code: tonic::Code) -> Option<ErrorKind> {
        use tonic::Code;
        Some(match code {
            Code::Ok => return None,
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
                ErrorKind::BadRequest
            }
            Code::NotFound => ErrorKind::NotFound,
            Code::Unauthenticated => ErrorKind::Unauthorized,
            Code::PermissionDenied => ErrorKind::Forbidden,
            Code::AlreadyExists => ErrorKind::AlreadyExists,
            Code::Aborted => ErrorKind::Concurrency,
            Code::Unavailable => ErrorKind::Unavailable,
            Code::Internal
            | Code::Unknown
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Unimplemented
            | Code::DataLoss => ErrorKind::Internal,
        })
    }

    /// The HTTP status of the REST answer.
    pub fn http_status(self) -> StatusCode {
        match self {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::AlreadyExists | ErrorKind::Concurrency => StatusCode::CONFLICT,
            ErrorKind::Unavailable | ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The default value of the JSON `code` field.
    pub fn default_code(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::Concurrency => "concurrent_update",
            ErrorKind::Unavailable | ErrorKind::Internal => "internal",
        }
    }

    /// Whether the message may be shown to a client (every 4xx); 5xx texts are only logged.
    pub fn is_client_visible(self) -> bool {
        !matches!(self, ErrorKind::Unavailable | ErrorKind::Internal)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.default_code())
    }
}

/// An error as it crosses a service boundary: kind, specific code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    /// Specific code, e.g. `run_not_restartable`; defaults to the kind's code.
    pub code: String,
    /// For 4xx kinds, the text shown to the client; for 5xx kinds, detail for the log only.
    pub message: String,
}

/// The JSON body of every REST error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            code: kind.default_code().to_owned(),
            message: message.into(),
        }
    }

    /// Refines the default code (`log_lost`, `run_not_restartable`, ...).
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = code.into();
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::AlreadyExists, message)
    }
    pub fn concurrency(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Concurrency, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// The message a client may see.
    pub fn client_message(&self) -> &str {
        if self.kind.is_client_visible() {
            &self.message
        } else {
            INTERNAL_MESSAGE
        }
    }

    /// The code a client may see: 5xx kinds always say `internal`.
    pub fn client_code(&self) -> &str {
        if self.kind.is_client_visible() {
            &self.code
        } else {
            self.kind.default_code()
        }
    }

    /// Converts to a gRPC status. A 5xx kind logs its detail here and sends only the fixed text.
    pub fn to_status(&self) -> tonic::Status {
        if !self.kind.is_client_visible() {
            tracing::error!(kind = %self.kind, code = %self.code, detail = %self.message, "request failed");
        }
        let mut status = tonic::Status::new(self.kind.grpc_code(), self.client_message());
        if let Ok(value) = MetadataValue::try_from(self.client_code()) {
            status.metadata_mut().insert(ERROR_CODE_METADATA, value);
        }
        status
    }

    /// Decodes a status received from another service back into kind, code and message.
    /// Returns an internal error for `Ok` (a status that is not an error was treated as one).
    pub fn from_status(status: &tonic::Status) -> Self {
        let Some(kind) = ErrorKind::from_grpc_code(status.code()) else {
            return ApiError::internal("an ok status was handled as an error");
        };
        let code = status
            .metadata()
            .get(ERROR_CODE_METADATA)
            .and_then(|v| v.to_str().ok())
            .filter(|c| !c.is_empty() && c.len() <= 64)
            .map(str::to_owned)
            .unwrap_or_else(|| kind.default_code().to_owned());
        ApiError {
            kind,
            code,
            message: status.message().to_owned(),
        }
    }

    /// The HTTP status and JSON body of the REST answer. 5xx detail never goes into the body.
    pub fn to_http(&self) -> (StatusCode, ErrorBody) {
        if !self.kind.is_client_visible() {
            tracing::error!(kind = %self.kind, code = %self.code, detail = %self.message, "request failed");
        }
        (
            self.kind.http_status(),
            ErrorBody {
                code: self.client_code().to_owned(),
                message: self.client_message().to_owned(),
            },
        )
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        e.to_status()
    }
}

impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> Self {
        ApiError::from_status(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_grpc() {
        for kind in ErrorKind::ALL {
            let err = ApiError::new(kind, "resource \"x\" is bad");
            let status = err.to_status();
            assert_eq!(status.code(), kind.grpc_code());
            let back = ApiError::from_status(&status);
            assert_eq!(back.kind, kind, "{kind:?}");
            if kind.is_client_visible() {
                assert_eq!(back.message, "resource \"x\" is bad");
                assert_eq!(back.code, kind.default_code());
            } else {
                assert_eq!(back.message, INTERNAL_MESSAGE);
                assert_eq!(back.code, "internal");
            }
        }
    }

    #[test]
    fn grpc_code_table() {
        let table = [
            (ErrorKind::BadRequest, tonic::Code::InvalidArgument),
            (ErrorKind::NotFound, tonic::Code::NotFound),
            (ErrorKind::Unauthorized, tonic::Code::Unauthenticated),
            (ErrorKind::Forbidden, tonic::Code::PermissionDenied),
            (ErrorKind::AlreadyExists, tonic::Code::AlreadyExists),
            (ErrorKind::Concurrency, tonic::Code::Aborted),
            (ErrorKind::Unavailable, tonic::Code::Unavailable),
            (ErrorKind::Internal, tonic::Code::Internal),
        ];
        for (kind, code) in table {
            assert_eq!(kind.grpc_code(), code);
            assert_eq!(ErrorKind::from_grpc_code(code), Some(kind));
        }
    }

    #[test]
    fn received_codes_we_never_send_map_to_the_closest_kind() {
        use tonic::Code;
        assert_eq!(ErrorKind::from_grpc_code(Code::Ok), None);
        for c in [Code::FailedPrecondition, Code::OutOfRange] {
            assert_eq!(ErrorKind::from_grpc_code(c), Some(ErrorKind::BadRequest));
        }
        for c in [
            Code::Unknown,
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
            Code::Unimplemented,
            Code::DataLoss,
        ] {
            assert_eq!(ErrorKind::from_grpc_code(c), Some(ErrorKind::Internal));
        }
    }

    #[test]
    fn http_table() {
        let table = [
            (ErrorKind::BadRequest, 400, "bad_request"),
            (ErrorKind::NotFound, 404, "not_found"),
            (ErrorKind::Unauthorized, 401, "unauthorized"),
            (ErrorKind::Forbidden, 403, "forbidden"),
            (ErrorKind::AlreadyExists, 409, "already_exists"),
            (ErrorKind::Concurrency, 409, "concurrent_update"),
            (ErrorKind::Unavailable, 500, "internal"),
            (ErrorKind::Internal, 500, "internal"),
        ];
        for (kind, status, code) in table {
            let (s, body) = ApiError::new(kind, "detail with /secret/path").to_http();
            assert_eq!(s.as_u16(), status, "{kind:?}");
            assert_eq!(body.code, code);
            if status == 500 {
                assert_eq!(body.message, INTERNAL_MESSAGE);
            } else {
                assert_eq!(body.message, "detail with /secret/path");
            }
        }
    }

    #[test]
    fn json_body_has_exactly_code_and_message() {
        let (_, body) = ApiError::not_found("project \"p\" does not exist").to_http();
        let json = serde_json::to_value(&body).expect("serialize");
        assert_eq!(
            json,
            serde_json::json!({"code": "not_found", "message": "project \"p\" does not exist"})
        );
    }

    #[test]
    fn specific_code_travels_for_client_errors_only() {
        let err = ApiError::bad_request("run cannot be restarted").with_code("run_not_restartable");
        let back = ApiError::from_status(&err.to_status());
        assert_eq!(back.code, "run_not_restartable");
        assert_eq!(back.to_http().1.code, "run_not_restartable");

        let err = ApiError::internal("disk /var/lib exploded").with_code("log_lost");
        let status = err.to_status();
        assert!(!status.message().contains("/var/lib"));
        assert_eq!(ApiError::from_status(&status).code, "internal");
        let (_, body) = err.to_http();
        assert_eq!(body.code, "internal");
        assert!(!body.message.contains("exploded"));
    }

    #[test]
    fn remote_internal_text_never_leaks_through_http() {
        // A foreign server (not ours) may put detail in an INTERNAL status message.
        let status = tonic::Status::internal("panic at db.rs:42 password=hunter2");
        let err = ApiError::from_status(&status);
        assert_eq!(err.kind, ErrorKind::Internal);
        let (s, body) = err.to_http();
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body.message, INTERNAL_MESSAGE);
        // Re-sent over gRPC by the gateway it stays hidden too.
        assert_eq!(err.to_status().message(), INTERNAL_MESSAGE);
    }

    #[test]
    fn remote_client_error_passes_through_with_message() {
        let status = tonic::Status::already_exists("project group \"g\" already exists");
        let (s, body) = ApiError::from_status(&status).to_http();
        assert_eq!(s, StatusCode::CONFLICT);
        assert_eq!(body.code, "already_exists");
        assert_eq!(body.message, "project group \"g\" already exists");
    }

    #[test]
    fn garbage_error_code_metadata_falls_back_to_default() {
        let mut status = tonic::Status::not_found("x");
        status
            .metadata_mut()
            .insert(ERROR_CODE_METADATA, MetadataValue::from_static(""));
        assert_eq!(ApiError::from_status(&status).code, "not_found");
    }
}
