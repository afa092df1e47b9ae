//! Configstore tests against the real service: served in-process on a loopback listener and
//! called over gRPC, on the embedded KV + posix object storage and on etcd + S3. One test
//! binary with modules, to keep link time down.

mod common;
mod concurrency;
mod orgs;
mod remotesources;
mod secrets;
mod storage;
mod tree;
mod users;
