//! Helpers shared by the runservice and scheduler tests: a run config task builder and run
//! polling through the RunService API.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use agola_integration_tests::infra;
use agola_proto::common::v1 as pbc;
use agola_proto::runservice::v1 as pb;
use agola_proto::runservice::v1::run_service_client::RunServiceClient;
use agola_runservice::types::*;

pub type Api = RunServiceClient<agola_common::grpc::GrpcChannel>;

/// A task with a unique id, a busybox container and one `echo` step, depending on `parents`
/// (ids) with the default condition.
pub fn task(name: &str, parents: &[&str]) -> RunConfigTask {
    RunConfigTask {
        id: format!("{name}-{}", infra::unique_name("t")),
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
                    (*p).to_owned(),
                    RunConfigTaskDepend {
                        task_id: (*p).to_owned(),
                        conditions: vec![],
                    },
                )
            })
            .collect(),
        steps: vec![Step::Run {
            name: "echo".into(),
            command: "echo hello".into(),
            environment: BTreeMap::new(),
            working_dir: String::new(),
            shell: String::new(),
            tty: false,
        }],
        min_approvers: 1,
        ..Default::default()
    }
}

pub async fn get_run(api: &mut Api, id: &str) -> pbc::Run {
    api.get_run(pb::GetRunRequest {
        run_id: id.to_owned(),
        change_groups: vec![],
    })
    .await
    .expect("get run")
    .into_inner()
    .run
    .expect("run")
}

/// Polls the run until `pred` holds; panics naming `what` after `timeout`.
pub async fn wait_run(
    api: &mut Api,
    id: &str,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&pbc::Run) -> bool,
) -> pbc::Run {
    let deadline = Instant::now() + timeout;
    loop {
        let run = get_run(api, id).await;
        if pred(&run) {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "run {id}: timed out waiting for {what}: {run:?}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}
