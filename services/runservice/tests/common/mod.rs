//! Fixtures shared by the runservice test binaries. Each binary uses a subset of them.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use agola_common::Shutdown;
use agola_datamanager::{Config as DmConfig, DataManager};
use agola_kv::embedded::EmbeddedKv;
use agola_kv::{Kv, Prefixed};
use agola_objectstorage::{ObjectStorage, Posix};
use agola_runservice::runs::Runs;
use agola_runservice::store::Store;
use agola_runservice::types::*;

/// A task with id `id-<name>`, a busybox container, no steps, depending on `id-<parent>`
/// for each parent with the default condition.
pub fn task(name: &str, parents: &[&str]) -> RunConfigTask {
    RunConfigTask {
        id: format!("id-{name}"),
        name: name.to_owned(),
        runtime: Runtime {
            arch: String::new(),
            containers: vec![Container {
                image: "busybox".into(),
                ..Default::default()
            }],
        },
        depends: parents
            .iter()
            .map(|p| {
                (
                    format!("id-{p}"),
                    RunConfigTaskDepend {
                        task_id: format!("id-{p}"),
                        conditions: vec![],
                    },
                )
            })
            .collect(),
        min_approvers: 1,
        ..Default::default()
    }
}

/// An amd64 executor with no task limit, alive now.
pub fn executor(id: &str, group: &str, dynamic: bool, siblings: &[&str]) -> Executor {
    Executor {
        id: id.to_owned(),
        listen_url: String::new(),
        archs: vec!["amd64".into()],
        labels: BTreeMap::new(),
        allow_privileged_containers: false,
        active_tasks_limit: 0,
        active_tasks: 0,
        dynamic,
        executor_group: group.to_owned(),
        siblings_executors: siblings.iter().map(|s| (*s).to_owned()).collect(),
        last_status_update_time: chrono::Utc::now(),
    }
}

/// Run operations over a fresh embedded KV and posix object storage in a temp dir.
pub async fn embedded_runs() -> (Runs, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let kv = EmbeddedKv::open(dir.path().join("kv")).await.expect("kv");
    let kv: Arc<dyn Kv> = Arc::new(Prefixed::new(Arc::new(kv), "runservice/"));
    let ost: Arc<dyn ObjectStorage> = Arc::new(Posix::new(dir.path().join("ost")).expect("ost"));
    let dm = DataManager::new(DmConfig::new("rundata"), kv.clone(), ost);
    dm.init(Shutdown::never()).await.expect("init");
    (Runs::new(Store::new(kv), dm), dir)
}
