//! The executor's client of the runservice's `ExecutorControlService`.

use agola_common::grpc::GrpcChannel;
use agola_proto::runservice::v1::executor_control_service_client::ExecutorControlServiceClient;

/// Client of the runservice (a lazy channel: cloning is cheap, connecting happens on use).
pub type RunserviceClient = ExecutorControlServiceClient<GrpcChannel>;

/// Connects (lazily) to the runservice at `url`.
pub fn client(url: &str, internal_token: Option<&str>) -> crate::error::Result<RunserviceClient> {
    let channel = agola_common::grpc::connect(url, internal_token)
        .map_err(|e| crate::error::Error::Config(format!("runserviceUrl {url:?}: {e}")))?;
    // Archives and caches are streamed in chunks, but allow generous messages anyway.
    Ok(ExecutorControlServiceClient::new(channel)
        .max_decoding_message_size(16 * 1024 * 1024)
        .max_encoding_message_size(16 * 1024 * 1024))
}
