//! The S3 backend (aws-sdk-s3, any S3-compatible server).
//!
//! S3 puts are atomic and durable by themselves, so `persist` is a no-op. Uploads never spool
//! to disk and never buffer a whole object: a known size streams the reader into one PUT (or
//! into streamed multipart parts above [`S3Config::max_single_put_size`]); an unknown size
//! goes through a bounded multipart upload holding at most two parts in memory.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    StalledStreamProtectionConfig,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::abort_multipart_upload::builders::AbortMultipartUploadFluentBuilder;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CompletedMultipartUpload, CompletedPart, CreateBucketConfiguration,
};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use http_body::{Body, Frame, SizeHint};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use crate::error::source_error;
use crate::path::{normalize_prefix, normalize_start_after};
use crate::{Error, ObjectInfo, ObjectReader, ObjectStorage, Result, WriteSource, normalize_path};

const MIB: u64 = 1024 * 1024;
/// S3's smallest non-final multipart part.
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// Our largest part: two of them may sit in memory per unknown-size upload.
pub const MAX_PART_SIZE: u64 = 64 * MIB;
/// S3's largest single PUT.
const S3_MAX_PUT: u64 = 5 * 1024 * MIB;
/// S3's part count limit.
const S3_MAX_PARTS: u64 = 10_000;
/// Bytes per chunk handed from the reader to a streaming request body.
const STREAM_CHUNK: usize = 256 * 1024;
/// Chunks queued between the reader and the HTTP client (bounds a streaming PUT's memory).
const STREAM_QUEUE: usize = 4;
/// ListObjectsV2 page size (S3's maximum).
const LIST_PAGE: i32 = 1000;

/// Connection and upload settings of the S3 backend.
#[derive(Clone)]
pub struct S3Config {
    /// `http://host:port` or `https://host:port`; the scheme selects TLS. Without a scheme,
    /// https unless `disable_tls`.
    pub endpoint: String,
    /// Created when missing.
    pub bucket: String,
    /// The region ("location"); also the location constraint of a created bucket.
    pub region: String,
    pub access_key: String,
    pub secret_access_key: String,
    /// Path-style addressing (`endpoint/bucket/key`), needed by most self-hosted servers.
    pub path_style: bool,
    /// Forces plain HTTP even for an `https://` endpoint.
    pub disable_tls: bool,
    /// The largest object a write of unknown size may produce; exceeding it aborts the
    /// upload. Default 1 GiB.
    pub max_unknown_size: u64,
    /// The multipart part size, between 5 and 64 MiB. Default 16 MiB.
    pub part_size: u64,
    /// A known-size write above this goes as a multipart upload of streamed parts. Default
    /// and maximum 5 GiB (S3's single PUT limit); tests lower it.
    pub max_single_put_size: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: String::new(),
            bucket: String::new(),
            region: "us-east-1".to_owned(),
            access_key: String::new(),
            secret_access_key: String::new(),
            path_style: true,
            disable_tls: false,
            max_unknown_size: 1024 * MIB,
            part_size: 16 * MIB,
            max_single_put_size: S3_MAX_PUT,
        }
    }
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("secret_access_key", &"<redacted>")
            .field("path_style", &self.path_style)
            .field("disable_tls", &self.disable_tls)
            .field("max_unknown_size", &self.max_unknown_size)
            .field("part_size", &self.part_size)
            .field("max_single_put_size", &self.max_single_put_size)
            .finish()
    }
}

impl S3Config {
    fn validate(&self) -> Result<()> {
        if self.bucket.is_empty() {
            return Err(Error::InvalidInput("s3 bucket is empty".into()));
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            return Err(Error::InvalidInput(format!(
                "s3 part size {} is outside {MIN_PART_SIZE}..={MAX_PART_SIZE} bytes",
                self.part_size
            )));
        }
        if self.max_unknown_size == 0
            || self.max_unknown_size.div_ceil(self.part_size) > S3_MAX_PARTS
        {
            return Err(Error::InvalidInput(format!(
                "s3 max unknown size {} needs more than {S3_MAX_PARTS} parts of {} bytes",
                self.max_unknown_size, self.part_size
            )));
        }
        if self.max_single_put_size == 0 || self.max_single_put_size > S3_MAX_PUT {
            return Err(Error::InvalidInput(format!(
                "s3 max single put size {} is outside 1..={S3_MAX_PUT} bytes",
                self.max_single_put_size
            )));
        }
        Ok(())
    }

    fn endpoint_url(&self) -> Result<String> {
        let e = self.endpoint.trim().trim_end_matches('/');
        if e.is_empty() {
            return Err(Error::InvalidInput("s3 endpoint is empty".into()));
        }
        Ok(if let Some(rest) = e.strip_prefix("https://") {
            if self.disable_tls {
                format!("http://{rest}")
            } else {
                e.to_owned()
            }
        } else if e.starts_with("http://") {
            e.to_owned()
        } else if e.contains("://") {
            return Err(Error::InvalidInput(format!(
                "s3 endpoint {e:?} has an unsupported scheme"
            )));
        } else if self.disable_tls {
            format!("http://{e}")
        } else {
            format!("https://{e}")
        })
    }
}

/// Objects in one S3 bucket.
#[derive(Debug, Clone)]
pub struct S3 {
    client: Client,
    bucket: String,
    max_unknown_size: u64,
    part_size: u64,
    max_single_put_size: u64,
}

impl S3 {
    /// Connects and creates the bucket when it does not exist yet.
    pub async fn new(config: S3Config) -> Result<Self> {
        config.validate()?;
        let endpoint = config.endpoint_url()?;
        let credentials = Credentials::new(
            &config.access_key,
            &config.secret_access_key,
            None,
            None,
            "agola-static",
        );
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .credentials_provider(credentials)
            .endpoint_url(endpoint)
            .force_path_style(config.path_style)
            // Default checksums would switch PUTs to aws-chunked encoding with trailers,
            // which self-hosted servers handle unevenly; TCP and TLS already guard transfers.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            // The upload body is the caller's reader, which may legitimately pause (a slow
            // producer); only the download side is watched for stalls.
            .stalled_stream_protection(
                StalledStreamProtectionConfig::enabled()
                    .upload_enabled(false)
                    .build(),
            )
            .build();
        let s3 = S3 {
            client: Client::from_conf(conf),
            bucket: config.bucket.clone(),
            max_unknown_size: config.max_unknown_size,
            part_size: config.part_size,
            max_single_put_size: config.max_single_put_size,
        };
        s3.ensure_bucket(&config.region).await?;
        Ok(s3)
    }

    async fn ensure_bucket(&self, region: &str) -> Result<()> {
        let mut req = self.client.create_bucket().bucket(&self.bucket);
        // us-east-1 is the default location and must not be named as a constraint.
        if !region.is_empty() && region != "us-east-1" {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region))
                    .build(),
            );
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error().is_some_and(|se| {
                    se.is_bucket_already_owned_by_you() || se.is_bucket_already_exists()
                }) =>
            {
                Ok(())
            }
            Err(e) => Err(unavailable(format!("creating bucket {:?}", self.bucket), e)),
        }
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(ObjectInfo {
                path: key.to_owned(),
                last_modified: out
                    .last_modified
                    .and_then(|d| SystemTime::try_from(d).ok())
                    .unwrap_or(UNIX_EPOCH),
                size: out
                    .content_length
                    .and_then(|l| u64::try_from(l).ok())
                    .unwrap_or(0),
            }),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_not_found()) => {
                Err(Error::not_exist(key))
            }
            Err(e) => Err(unavailable(format!("stat {key:?}"), e)),
        }
    }

    /// A known-size object in one PUT whose body streams from the reader.
    async fn put_streaming(&self, key: &str, reader: WriteSource<'_>, size: u64) -> Result<()> {
        if size == 0 {
            // No body to hold back: check the source is empty before creating anything.
            if reader.read(&mut [0u8; 1]).await.map_err(source_error)? > 0 {
                return Err(Error::InvalidInput(format!(
                    "data for {key:?} is longer than the declared size of 0 bytes"
                )));
            }
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_length(0)
                .body(ByteStream::from_static(b""))
                .send()
                .await
                .map_err(|e| unavailable(format!("put {key:?}"), e))?;
            return Ok(());
        }
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let send = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(to_i64(size)?)
            .body(ByteStream::from_body_1_x(ChannelBody::new(rx, size)))
            .send();
        let pump = pump_exact(key, reader, size, 0, size, true, tx);
        run_streamed(send, pump)
            .await
            .map_err(|e| e.into_error(format!("put {key:?}")))?;
        Ok(())
    }

    /// A known-size object above the single-PUT limit: a multipart upload whose parts stream
    /// from the reader one after the other (nothing buffered).
    async fn put_multipart_known(
        &self,
        key: &str,
        reader: WriteSource<'_>,
        size: u64,
    ) -> Result<()> {
        let part_len = self.part_size.max(size.div_ceil(S3_MAX_PARTS));
        let upload = self.create_multipart(key).await?;
        let res = async {
            let mut parts = Vec::new();
            let mut offset = 0;
            let mut number = 0;
            while offset < size {
                number += 1;
                let len = part_len.min(size - offset);
                let last = offset + len == size;
                let (tx, rx) = mpsc::channel(STREAM_QUEUE);
                let send = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload.upload_id)
                    .part_number(number)
                    .content_length(to_i64(len)?)
                    .body(ByteStream::from_body_1_x(ChannelBody::new(rx, len)))
                    .send();
                let pump = pump_exact(key, &mut *reader, len, offset, size, last, tx);
                let out = run_streamed(send, pump)
                    .await
                    .map_err(|e| e.into_error(format!("upload part {number} of {key:?}")))?;
                parts.push(
                    CompletedPart::builder()
                        .set_e_tag(out.e_tag)
                        .part_number(number)
                        .build(),
                );
                offset += len;
            }
            self.complete_multipart(key, &upload.upload_id, parts).await
        }
        .await;
        upload.finish(res).await
    }

    /// An unknown-size object: parts are read into memory one at a time while the previous
    /// one uploads (at most two in memory); a payload smaller than one part is a single PUT.
    async fn put_unknown(&self, key: &str, reader: WriteSource<'_>) -> Result<()> {
        let max = self.max_unknown_size;
        let part_size = self.part_size as usize;
        // One byte past the limit is enough to tell "too large" from "exactly the limit".
        let mut limited = reader.take(max.saturating_add(1));
        let too_large = || {
            Error::InvalidInput(format!(
                "data for {key:?} exceeds the maximum object size of {max} bytes for writes of \
                 unknown size (max_unknown_size)"
            ))
        };

        let first = fill_part(&mut limited, part_size, STREAM_CHUNK).await?;
        let mut total = first.len() as u64;
        if total > max {
            return Err(too_large());
        }
        if first.len() < part_size {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_length(to_i64(total)?)
                .body(ByteStream::from(first))
                .send()
                .await
                .map_err(|e| unavailable(format!("put {key:?}"), e))?;
            return Ok(());
        }

        let upload = self.create_multipart(key).await?;
        let res = async {
            let mut parts = Vec::new();
            let mut current = first;
            let mut number = 1;
            loop {
                let (etag, next) = tokio::try_join!(
                    self.upload_part(key, &upload.upload_id, number, current),
                    // Later parts are most likely full: allocate them whole, since growing by
                    // doubling briefly holds old and new buffers on top of the part uploading.
                    fill_part(&mut limited, part_size, part_size),
                )?;
                parts.push(
                    CompletedPart::builder()
                        .set_e_tag(etag)
                        .part_number(number)
                        .build(),
                );
                total += next.len() as u64;
                if total > max {
                    return Err(too_large());
                }
                if next.is_empty() {
                    break;
                }
                number += 1;
                if next.len() < part_size {
                    let etag = self
                        .upload_part(key, &upload.upload_id, number, next)
                        .await?;
                    parts.push(
                        CompletedPart::builder()
                            .set_e_tag(etag)
                            .part_number(number)
                            .build(),
                    );
                    break;
                }
                current = next;
            }
            self.complete_multipart(key, &upload.upload_id, parts).await
        }
        .await;
        upload.finish(res).await
    }

    async fn create_multipart(&self, key: &str) -> Result<MultipartUpload> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| unavailable(format!("create multipart upload of {key:?}"), e))?;
        let upload_id = out.upload_id.ok_or_else(|| {
            Error::Unavailable(format!(
                "create multipart upload of {key:?}: no upload id in the answer"
            ))
        })?;
        Ok(MultipartUpload {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            upload_id,
            armed: true,
        })
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        data: Bytes,
    ) -> Result<Option<String>> {
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .content_length(to_i64(data.len() as u64)?)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| unavailable(format!("upload part {number} of {key:?}"), e))?;
        Ok(out.e_tag)
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<()> {
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| unavailable(format!("complete multipart upload of {key:?}"), e))?;
        Ok(())
    }
}

#[async_trait]
impl ObjectStorage for S3 {
    async fn stat(&self, path: &str) -> Result<ObjectInfo> {
        let key = normalize_path(path)?;
        self.head(key).await
    }

    async fn read_range(&self, path: &str, offset: u64, len: Option<u64>) -> Result<ObjectReader> {
        let key = normalize_path(path)?;
        // HEAD first: a GET error cannot always tell a missing key from other failures, and
        // the size turns the request into a valid range.
        let size = self.head(key).await?.size;
        if offset >= size || len == Some(0) {
            return Ok(Box::new(tokio::io::empty()));
        }
        let end = len.map_or(size, |l| offset.saturating_add(l).min(size));
        let mut req = self.client.get_object().bucket(&self.bucket).key(key);
        if offset > 0 || end < size {
            req = req.range(format!("bytes={offset}-{}", end - 1));
        }
        match req.send().await {
            Ok(out) => Ok(Box::new(out.body.into_async_read())),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_no_such_key()) => {
                Err(Error::not_exist(key))
            }
            // The object shrank between HEAD and GET (a concurrent overwrite): past its end.
            Err(e) if e.code() == Some("InvalidRange") => Ok(Box::new(tokio::io::empty())),
            Err(e) => Err(unavailable(format!("read {key:?}"), e)),
        }
    }

    async fn write(
        &self,
        path: &str,
        reader: WriteSource<'_>,
        size: Option<u64>,
        _persist: bool,
    ) -> Result<()> {
        let key = normalize_path(path)?;
        match size {
            Some(size) if size <= self.max_single_put_size => {
                self.put_streaming(key, reader, size).await
            }
            Some(size) => self.put_multipart_known(key, reader, size).await,
            None => self.put_unknown(key, reader).await,
        }
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let key = normalize_path(path)?;
        // S3 deletes of missing keys succeed; the contract wants NotExist.
        self.head(key).await?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| unavailable(format!("delete {key:?}"), e))?;
        Ok(())
    }

    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        recursive: bool,
    ) -> BoxStream<'static, Result<ObjectInfo>> {
        let prefix = match normalize_prefix(prefix) {
            Ok(p) => p.to_owned(),
            Err(e) => return stream::once(async move { Err(e) }).boxed(),
        };
        let start_after = normalize_start_after(start_after);
        let client = self.client.clone();
        let bucket = self.bucket.clone();
        // One page per step: nothing runs ahead of the consumer, and dropping the stream
        // drops the request in flight.
        stream::unfold(Some(None::<String>), move |state| {
            let client = client.clone();
            let bucket = bucket.clone();
            let prefix = prefix.clone();
            let start_after = start_after.clone();
            async move {
                let token = state?;
                let mut req = client
                    .list_objects_v2()
                    .bucket(bucket)
                    .max_keys(LIST_PAGE)
                    .set_continuation_token(token.clone());
                if !prefix.is_empty() {
                    req = req.prefix(prefix);
                }
                // StartAfter only matters for the first page; later pages continue the token.
                if token.is_none() {
                    req = req.set_start_after(start_after);
                }
                if !recursive {
                    req = req.delimiter("/");
                }
                match req.send().await {
                    Err(e) => {
                        let err = unavailable("list", e);
                        Some((vec![Err(err)], None))
                    }
                    Ok(out) => {
                        let next = match (out.is_truncated, out.next_continuation_token) {
                            (Some(true), Some(t)) => Some(Some(t)),
                            _ => None,
                        };
                        let items = out
                            .contents
                            .unwrap_or_default()
                            .into_iter()
                            .filter_map(|o| {
                                let path = o.key?;
                                Some(Ok(ObjectInfo {
                                    path,
                                    last_modified: o
                                        .last_modified
                                        .and_then(|d| SystemTime::try_from(d).ok())
                                        .unwrap_or(UNIX_EPOCH),
                                    size: o.size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                                }))
                            })
                            .collect::<Vec<_>>();
                        Some((items, next))
                    }
                }
            }
        })
        .flat_map(stream::iter)
        .boxed()
    }
}

/// An open multipart upload that is aborted unless completed, also when the write future is
/// dropped half-way (then from a spawned task, best effort).
struct MultipartUpload {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    armed: bool,
}

impl MultipartUpload {
    /// Passes the upload's result through, aborting the upload on error.
    async fn finish(mut self, res: Result<()>) -> Result<()> {
        self.armed = false;
        if res.is_err()
            && let Err(e) = self.abort_request().send().await
        {
            tracing::warn!(
                key = %self.key,
                error = %DisplayErrorContext(&e),
                "aborting a failed multipart upload failed"
            );
        }
        res
    }

    fn abort_request(&self) -> AbortMultipartUploadFluentBuilder {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
    }
}

impl Drop for MultipartUpload {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let req = self.abort_request();
            handle.spawn(async move {
                let _ = req.send().await;
            });
        }
    }
}

/// Reads up to `part_size` bytes (less only at EOF) into a buffer that starts at
/// `initial_capacity` and grows as data arrives, so a small payload does not cost a whole part
/// of memory.
async fn fill_part<R>(reader: &mut R, part_size: usize, initial_capacity: usize) -> Result<Bytes>
where
    R: tokio::io::AsyncRead + Unpin + ?Sized,
{
    let mut buf: Vec<u8> = Vec::with_capacity(part_size.min(initial_capacity));
    while buf.len() < part_size {
        if buf.len() == buf.capacity() {
            let grow = buf.capacity().max(STREAM_CHUNK).min(part_size - buf.len());
            buf.reserve_exact(grow);
        }
        let room = (buf.capacity() - buf.len()).min(part_size - buf.len());
        let n = (&mut *reader)
            .take(room as u64)
            .read_buf(&mut buf)
            .await
            .map_err(source_error)?;
        if n == 0 {
            break;
        }
    }
    Ok(Bytes::from(buf))
}

/// Why a streamed upload failed.
enum StreamError {
    /// The source broke the contract (wrong size) or failed.
    Source(Error),
    /// The request failed (the SDK error, formatted).
    Request(String),
}

impl StreamError {
    fn into_error(self, what: String) -> Error {
        match self {
            StreamError::Source(e) => e,
            StreamError::Request(detail) => Error::Unavailable(format!("{what}: {detail}")),
        }
    }
}

/// Drives a request whose body is fed by `pump`. When the source breaks the contract the
/// request is dropped mid-body: the server never receives the declared length and creates
/// nothing.
async fn run_streamed<T, E>(
    send: impl Future<Output = std::result::Result<T, SdkError<E>>>,
    pump: impl Future<Output = std::result::Result<(), PumpError>>,
) -> std::result::Result<T, StreamError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let sdk_err = |e: SdkError<E>| StreamError::Request(DisplayErrorContext(&e).to_string());
    tokio::pin!(send, pump);
    tokio::select! {
        biased;
        r = &mut pump => match r {
            Err(PumpError::Source(e)) => Err(StreamError::Source(e)),
            // ReceiverGone: the request ended early; its own error says why.
            Ok(()) | Err(PumpError::ReceiverGone) => send.await.map_err(sdk_err),
        },
        r = &mut send => {
            let out = r.map_err(sdk_err)?;
            // A success needs the whole body, so the pump has nothing left to do.
            match pump.await {
                Err(PumpError::Source(e)) => Err(StreamError::Source(e)),
                Ok(()) | Err(PumpError::ReceiverGone) => Ok(out),
            }
        }
    }
}

enum PumpError {
    Source(Error),
    ReceiverGone,
}

/// Feeds exactly `len` bytes of the reader to a request body. With `check_eof` it also makes
/// sure the reader ends there, and holds the last chunk back until it knows: a body that
/// misses its final bytes is never complete, so a too-long source creates nothing either.
async fn pump_exact(
    key: &str,
    reader: WriteSource<'_>,
    len: u64,
    offset: u64,
    total: u64,
    check_eof: bool,
    tx: mpsc::Sender<io::Result<Bytes>>,
) -> std::result::Result<(), PumpError> {
    let fail = |e: Error| {
        // Poison the body too, for the case the request is polled before it is dropped.
        let _ = tx.try_send(Err(io::Error::other(e.to_string())));
        PumpError::Source(e)
    };
    let mut remaining = len;
    while remaining > 0 {
        let want = remaining.min(STREAM_CHUNK as u64) as usize;
        let mut buf = vec![0u8; want];
        let mut filled = 0;
        while filled < want {
            match reader.read(&mut buf[filled..]).await {
                Ok(0) => {
                    let got = offset + (len - remaining) + filled as u64;
                    return Err(fail(Error::InvalidInput(format!(
                        "data for {key:?} ended after {got} of the declared {total} bytes"
                    ))));
                }
                Ok(n) => filled += n,
                Err(e) => return Err(fail(source_error(e))),
            }
        }
        remaining -= want as u64;
        if remaining == 0 && check_eof {
            let mut probe = [0u8; 1];
            match reader.read(&mut probe).await {
                Ok(0) => {}
                Ok(_) => {
                    return Err(fail(Error::InvalidInput(format!(
                        "data for {key:?} is longer than the declared size of {total} bytes"
                    ))));
                }
                Err(e) => return Err(fail(source_error(e))),
            }
        }
        tx.send(Ok(Bytes::from(buf)))
            .await
            .map_err(|_| PumpError::ReceiverGone)?;
    }
    Ok(())
}

/// A request body of known length fed through a channel, so the reader can be borrowed by
/// the writing task while the HTTP client owns the body.
struct ChannelBody {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    remaining: u64,
}

impl ChannelBody {
    fn new(rx: mpsc::Receiver<io::Result<Bytes>>, len: u64) -> Self {
        ChannelBody { rx, remaining: len }
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, io::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(data))) => {
                self.remaining = self.remaining.saturating_sub(data.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            // The pump stopped before the declared length: the body is incomplete.
            Poll::Ready(None) => Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "request body ended before its declared length",
            )))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

fn to_i64(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| Error::InvalidInput(format!("size {n} is too large")))
}

fn unavailable<E, R>(what: impl fmt::Display, e: SdkError<E, R>) -> Error
where
    E: std::error::Error + Send + Sync + 'static,
    R: fmt::Debug,
{
    Error::Unavailable(format!("{what}: {}", DisplayErrorContext(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation() {
        let ok = S3Config {
            endpoint: "http://127.0.0.1:9000".into(),
            bucket: "b".into(),
            ..S3Config::default()
        };
        assert!(ok.validate().is_ok());
        for bad in [
            S3Config {
                part_size: 4 * MIB,
                ..ok.clone()
            },
            S3Config {
                part_size: 65 * MIB,
                ..ok.clone()
            },
            S3Config {
                max_unknown_size: 0,
                ..ok.clone()
            },
            S3Config {
                max_unknown_size: 10_001 * 5 * MIB,
                part_size: 5 * MIB,
                ..ok.clone()
            },
            S3Config {
                bucket: String::new(),
                ..ok.clone()
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(Error::InvalidInput(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn endpoint_scheme() {
        let c = |endpoint: &str, disable_tls: bool| S3Config {
            endpoint: endpoint.into(),
            disable_tls,
            ..S3Config::default()
        };
        assert_eq!(
            c("h:1", false).endpoint_url().ok().as_deref(),
            Some("https://h:1")
        );
        assert_eq!(
            c("h:1", true).endpoint_url().ok().as_deref(),
            Some("http://h:1")
        );
        assert_eq!(
            c("https://h:1/", true).endpoint_url().ok().as_deref(),
            Some("http://h:1")
        );
        assert_eq!(
            c("http://h:1", false).endpoint_url().ok().as_deref(),
            Some("http://h:1")
        );
        assert!(c("ftp://h", false).endpoint_url().is_err());
        assert!(c("", false).endpoint_url().is_err());
    }

    #[test]
    fn debug_hides_the_secret() {
        let c = S3Config {
            secret_access_key: "hunter2".into(),
            ..S3Config::default()
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn fill_part_stops_at_part_size_and_eof() {
        let data: Vec<u8> = (0..100u8).collect();
        let mut r = &data[..];
        let a = fill_part(&mut r, 64, 16).await.expect("fill");
        let b = fill_part(&mut r, 64, 16).await.expect("fill");
        let c = fill_part(&mut r, 64, 16).await.expect("fill");
        assert_eq!((a.len(), b.len(), c.len()), (64, 36, 0));
        assert_eq!([&a[..], &b[..]].concat(), data);
    }
}
