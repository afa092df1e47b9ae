//! Test harness of agola's end-to-end tests: an in-process [`TestCluster`] whose components
//! listen on `127.0.0.1:0` listeners the harness binds and passes in, the addresses of the
//! real infrastructure `scripts/test.sh` starts ([`infra`]), and polling helpers.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use agola::config::{Component, Config};
use agola::serve::Running;
use anyhow::Context;
use tokio::net::TcpListener;

/// Addresses of the infrastructure started by `scripts/test.sh`. A missing variable is a hard
/// failure: a test needing etcd, S3 or docker never passes by skipping.
pub mod infra {
    fn required(var: &str) -> String {
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => v,
            _ => panic!(
                "{var} is not set: run the suite through scripts/test.sh, which starts etcd, the S3 server and dockerd"
            ),
        }
    }

    /// etcd client endpoints (`AGOLA_TEST_ETCD_ENDPOINTS`, comma-separated).
    pub fn etcd_endpoints() -> Vec<String> {
        required("AGOLA_TEST_ETCD_ENDPOINTS")
            .split(',')
            .map(str::to_owned)
            .collect()
    }

    /// S3 endpoint and credentials (`AGOLA_TEST_S3_ENDPOINT`, `_ACCESS_KEY`, `_SECRET_KEY`).
    pub fn s3() -> (String, String, String) {
        (
            required("AGOLA_TEST_S3_ENDPOINT"),
            required("AGOLA_TEST_S3_ACCESS_KEY"),
            required("AGOLA_TEST_S3_SECRET_KEY"),
        )
    }

    /// Docker socket path (`AGOLA_TEST_DOCKER_SOCKET`).
    pub fn docker_socket() -> String {
        required("AGOLA_TEST_DOCKER_SOCKET")
    }

    /// Name of the local busybox image the script imported (`AGOLA_TEST_BUSYBOX_IMAGE`).
    pub fn busybox_image() -> String {
        required("AGOLA_TEST_BUSYBOX_IMAGE")
    }

    /// Directory with the static toolbox binaries (`AGOLA_TEST_TOOLBOX_DIR`).
    pub fn toolbox_dir() -> std::path::PathBuf {
        std::path::PathBuf::from(required("AGOLA_TEST_TOOLBOX_DIR"))
    }

    /// A name unique to this test process, for KV prefixes and buckets.
    pub fn unique_name(prefix: &str) -> String {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        format!(
            "{prefix}-{}-{nanos}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        )
    }
}

/// Polls `check` until it returns `Some`, failing after `timeout` (see
/// [`agola_common::poll::wait_until`]).
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    Ok(agola_common::poll::wait_until(what, timeout, check).await?)
}

/// Components running in this process on ephemeral loopback ports.
#[derive(Debug)]
pub struct TestCluster {
    running: Option<Running>,
    addrs: BTreeMap<Component, SocketAddr>,
    /// The cluster's data dir (embedded KV, posix object storage), removed on drop.
    data_dir: tempfile::TempDir,
}

impl TestCluster {
    /// Starts `components` with `config` (its listen addresses are ignored; its data dir is
    /// replaced by a fresh temporary one).
    pub async fn start(
        mut config: Config,
        components: BTreeSet<Component>,
    ) -> anyhow::Result<Self> {
        let data_dir = tempfile::tempdir().context("creating the cluster data dir")?;
        config.data_dir = data_dir.path().to_owned();
        if config.executor.toolbox_path.is_none() {
            config.executor.toolbox_path = Some(infra::toolbox_dir());
        }
        let mut listeners = BTreeMap::new();
        let mut addrs = BTreeMap::new();
        for c in components {
            let l = TcpListener::bind("127.0.0.1:0")
                .await
                .context("binding a loopback listener")?;
            addrs.insert(c, l.local_addr()?);
            listeners.insert(c, l);
        }
        let running = agola::serve::start(config, listeners)?;
        Ok(TestCluster {
            running: Some(running),
            addrs,
            data_dir,
        })
    }

    pub fn addr(&self, c: Component) -> SocketAddr {
        self.addrs[&c]
    }

    pub fn url(&self, c: Component) -> String {
        format!("http://{}", self.addr(c))
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.data_dir.path()
    }

    pub fn components(&self) -> impl Iterator<Item = Component> + '_ {
        self.addrs.keys().copied()
    }

    /// Stops every component and reports the first error any of them hit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        match self.running.take() {
            Some(r) => r.stop().await,
            None => Ok(()),
        }
    }
}
