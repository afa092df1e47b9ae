//! The working tree of `agola run`: archived once (in a blocking thread, to a temporary
//! file) and uploaded as a cache entry of the run's private cache group; every clone step is
//! replaced by a restore of that entry, so tasks start from the working tree as it is,
//! uncommitted changes included.

use std::path::Path;

use agola_common::grpc::GrpcChannel;
use agola_config::{CLONE_STEP_NAME, RestoreCacheStep, RunConfig, Step};
use agola_proto::runservice::v1 as pb;
use agola_proto::runservice::v1::executor_control_service_client::ExecutorControlServiceClient;
use anyhow::Context;
use sha2::Digest;
use tokio::io::AsyncReadExt;

/// A short stable hash of the repository path (names the cache group, so caches of one
/// repository are shared by the runs of one `--data-dir`).
pub fn dir_hash(dir: &Path) -> String {
    let digest = sha2::Sha256::digest(dir.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..8])
}

/// Replaces every clone step by a restore of the working tree entry; returns whether any
/// task clones.
pub fn replace_clone_steps(runs: &mut [RunConfig], key: &str) -> bool {
    let mut any = false;
    for rc in runs {
        for task in rc.tasks.values_mut() {
            for step in &mut task.steps {
                if let Step::Run(r) = step
                    && r.name == CLONE_STEP_NAME
                {
                    *step = Step::RestoreCache(RestoreCacheStep {
                        keys: vec![key.to_owned()],
                        dest_dir: String::new(),
                    });
                    any = true;
                }
            }
        }
    }
    any
}

/// Archives `dir` and uploads it as cache entry `<cache_group>-<key>`.
pub async fn upload(
    channel: GrpcChannel,
    dir: &Path,
    cache_group: &str,
    key: &str,
) -> anyhow::Result<()> {
    let tmp = tempfile::NamedTempFile::new().context("creating a temporary file")?;
    let file = tmp.reopen().context("opening the temporary file")?;
    let source = dir.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let info = agola_toolbox::archive::ArchiveInfo {
            source_dir: source.display().to_string(),
            dest_dir: String::new(),
            paths: vec!["**".into()],
        };
        let expand = |d: &str| Ok(std::path::PathBuf::from(d));
        let (entries, _skipped) = agola_toolbox::archive::plan(&[info], &expand)
            .map_err(|e| anyhow::anyhow!("archiving the working tree: {e}"))?;
        let w = agola_toolbox::archive::write_tar(&entries, std::io::BufWriter::new(file))
            .map_err(|e| anyhow::anyhow!("archiving the working tree: {e}"))?;
        w.into_inner()
            .map_err(|e| anyhow::anyhow!("archiving the working tree: {e}"))?
            .sync_all()
            .context("archiving the working tree")?;
        Ok(())
    })
    .await
    .context("archiving the working tree")??;
    let size = tmp.as_file().metadata().context("archive size")?.len();
    let mut reader = tokio::fs::File::from_std(tmp.reopen().context("reading the archive")?);
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::PutCacheRequest>(4);
    tx.send(pb::PutCacheRequest {
        payload: Some(pb::put_cache_request::Payload::Header(pb::PutCacheHeader {
            key: format!("{cache_group}-{key}"),
            size: Some(size),
        })),
    })
    .await
    .context("uploading the working tree")?;
    let feeder = tokio::spawn(async move {
        let mut buf = vec![0u8; 1024 * 1024];
        loop {
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                return Ok::<(), std::io::Error>(());
            }
            let msg = pb::PutCacheRequest {
                payload: Some(pb::put_cache_request::Payload::Data(buf[..n].to_vec())),
            };
            if tx.send(msg).await.is_err() {
                return Ok(());
            }
        }
    });
    ExecutorControlServiceClient::new(channel)
        .put_cache(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|s| anyhow::anyhow!("uploading the working tree: {}", s.message()))?;
    feeder
        .await
        .context("uploading the working tree")?
        .context("reading the working tree archive")?;
    drop(tmp);
    Ok(())
}
