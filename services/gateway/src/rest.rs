//! REST/JSON routes under `/api/v1alpha`.

use agola_common::ApiError;
use axum::Json;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Unknown routes or methods under the API prefix answer 400, not 404, so a missing resource
/// stays distinguishable from a bad route (spec 00 §5).
pub fn router() -> axum::Router {
    axum::Router::new()
        .route("/version", get(version))
        .fallback(unknown_route)
        .method_not_allowed_fallback(unknown_route)
}

async fn version() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "version": crate::VERSION }))
}

async fn unknown_route(method: http::Method, uri: http::Uri) -> Response {
    error_response(ApiError::bad_request(format!(
        "unknown route {method} {}",
        uri.path()
    )))
}

/// The one place REST errors become HTTP answers.
pub fn error_response(err: ApiError) -> Response {
    let (status, body) = err.to_http();
    (status, Json(body)).into_response()
}
