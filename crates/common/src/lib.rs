//! Shared foundations of every agola service: the error model that maps one set of error kinds
//! onto gRPC statuses and HTTP/JSON answers, the YAML configuration of the `agola` binary,
//! telemetry (tracing + OpenTelemetry with W3C trace context on gRPC metadata), and the gRPC
//! server plumbing (health, reflection, internal authentication, graceful shutdown).

pub mod config;
pub mod error;
pub mod grpc;
pub mod poll;
pub mod shutdown;
pub mod telemetry;

pub use error::{ApiError, ErrorKind};
pub use shutdown::Shutdown;
