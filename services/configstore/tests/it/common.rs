//! The test harness: configstore instances served in-process on `127.0.0.1:0`, talked to over
//! gRPC, on a fresh embedded KV + posix object storage (a temp dir) or on the real etcd + S3
//! that `scripts/test.sh` starts (a fresh key prefix and bucket per test).

use std::future::Future;
use std::time::Duration;

use agola_common::Shutdown;
use agola_common::config::{KvConfig, ObjectStorageConfig};
use agola_common::shutdown::ShutdownTrigger;
use agola_configstore::Config;
use agola_proto::common::v1 as pbc;
use agola_proto::configstore::v1 as pb;
use agola_proto::configstore::v1::configstore_service_client::ConfigstoreServiceClient;
use agola_proto::datamanager::v1::maintenance_service_client::MaintenanceServiceClient;
use tokio::net::TcpListener;
use tonic::transport::Channel;

pub type Client = ConfigstoreServiceClient<Channel>;

fn required(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{var} is not set: run the suite through scripts/test.sh (or eval \"$(scripts/dev-infra.sh)\"), which starts etcd and the S3 server"
        ),
    }
}

/// A name unique to this test process and call, for KV prefixes and buckets.
pub fn unique(prefix: &str) -> String {
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

/// Storage shared by one or more instances.
pub struct Storage {
    pub config: Config,
    /// Keeps the data dir (embedded KV, posix object storage) alive.
    _dir: tempfile::TempDir,
}

impl Storage {
    /// A fresh embedded KV and posix object storage in a temp dir.
    pub fn embedded() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        Storage { config, _dir: dir }
    }

    /// A fresh key prefix on the test etcd and a fresh bucket on the test S3 server.
    pub fn etcd_s3() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let endpoints = required("AGOLA_TEST_ETCD_ENDPOINTS")
            .split(',')
            .map(str::to_owned)
            .collect();
        let config = Config {
            data_dir: dir.path().to_owned(),
            kv: Some(KvConfig::Etcd {
                endpoints,
                prefix: format!("test/{}/", unique("cs")),
            }),
            object_storage: Some(ObjectStorageConfig::S3 {
                endpoint: required("AGOLA_TEST_S3_ENDPOINT"),
                bucket: unique("cs").to_lowercase(),
                location: String::new(),
                access_key: required("AGOLA_TEST_S3_ACCESS_KEY"),
                secret_access_key: required("AGOLA_TEST_S3_SECRET_KEY"),
                disable_tls: false,
                path_style: true,
            }),
            ..Config::default()
        };
        Storage { config, _dir: dir }
    }
}

/// One configstore served in-process.
pub struct Instance {
    pub client: Client,
    pub maintenance: MaintenanceServiceClient<Channel>,
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<Result<(), agola_configstore::Error>>,
}

impl Instance {
    /// Serves a configstore on `storage` and waits until it answers.
    pub async fn start(storage: &Storage) -> Self {
        wait_until(
            "the configstore to start",
            Duration::from_secs(60),
            || async {
                match Self::try_start(storage).await {
                    Ok(inst) => Some(inst),
                    // A stopped instance of this process may still be letting go of the embedded
                    // KV file (its last background tasks end just after it): try again.
                    Err(e) if e.contains("already open") => None,
                    Err(e) => panic!("configstore failed to start: {e}"),
                }
            },
        )
        .await
    }

    async fn try_start(storage: &Storage) -> Result<Self, String> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (trigger, shutdown): (ShutdownTrigger, Shutdown) = Shutdown::new();
        let task = tokio::spawn(agola_configstore::serve(
            storage.config.clone(),
            listener,
            shutdown,
        ));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("url")
            .connect_lazy();
        let client = ConfigstoreServiceClient::new(channel.clone());
        // Ready once it answers; a start that failed ends the serve task with the reason.
        let ready = wait_until("the configstore to answer", Duration::from_secs(60), || {
            let mut client = client.clone();
            let finished = task.is_finished();
            async move {
                if finished {
                    return Some(false);
                }
                let probe = tokio::time::timeout(
                    Duration::from_secs(2),
                    client.list_users(pb::ListUsersRequest::default()),
                )
                .await;
                matches!(probe, Ok(Ok(_))).then_some(true)
            }
        })
        .await;
        if !ready {
            return Err(match task.await {
                Ok(Err(e)) => e.to_string(),
                other => format!("stopped at start: {other:?}"),
            });
        }
        Ok(Instance {
            client,
            maintenance: MaintenanceServiceClient::new(channel),
            trigger,
            task,
        })
    }

    /// Stops the instance and waits for it to release its storage.
    pub async fn stop(self) {
        self.trigger.trigger();
        let _ = self.task.await;
    }
}

/// Polls `check` until it returns `Some`; panics naming `what` after `timeout`.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match agola_common::poll::wait_until(what, timeout, check).await {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

/// Asserts an error's code and that its message contains `needle`.
#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(
    r: Result<T, tonic::Status>,
    code: tonic::Code,
    needle: &str,
) {
    match r {
        Ok(v) => panic!("expected {code:?} containing {needle:?}, got Ok({v:?})"),
        Err(s) => {
            assert_eq!(s.code(), code, "unexpected status: {s:?}");
            assert!(
                s.message().contains(needle),
                "message {:?} does not contain {needle:?}",
                s.message()
            );
        }
    }
}

// --- request builders ------------------------------------------------------------------------

pub async fn create_user(c: &mut Client, name: &str) -> pb::User {
    c.create_user(pb::CreateUserRequest {
        name: name.to_owned(),
        ..Default::default()
    })
    .await
    .expect("create user")
    .into_inner()
    .user
    .expect("user")
}

pub async fn create_org(c: &mut Client, name: &str, creator: &str) -> pb::Org {
    c.create_org(pb::CreateOrgRequest {
        name: name.to_owned(),
        visibility: pbc::Visibility::Public.into(),
        creator_user_id: creator.to_owned(),
    })
    .await
    .expect("create org")
    .into_inner()
    .org
    .expect("org")
}

pub fn group_parent(r: &str) -> Option<pb::Parent> {
    Some(pb::Parent {
        r#type: pbc::ParentType::Projectgroup.into(),
        id: r.to_owned(),
    })
}

pub fn new_group(name: &str, parent: &str) -> pb::CreateProjectGroupRequest {
    pb::CreateProjectGroupRequest {
        project_group: Some(pb::ProjectGroup {
            name: name.to_owned(),
            parent: group_parent(parent),
            visibility: pbc::Visibility::Private.into(),
            ..Default::default()
        }),
    }
}

pub async fn create_group(c: &mut Client, name: &str, parent: &str) -> pb::ProjectGroup {
    c.create_project_group(new_group(name, parent))
        .await
        .expect("create group")
        .into_inner()
        .project_group
        .expect("group")
}

pub fn manual_project(name: &str, parent: &str) -> pb::Project {
    pb::Project {
        name: name.to_owned(),
        parent: group_parent(parent),
        visibility: pbc::Visibility::Public.into(),
        remote_repository_config_type: pbc::RemoteRepositoryConfigType::Manual.into(),
        repository_url: format!("https://git.example.com/{name}.git"),
        ssh_private_key: "-----BEGIN OPENSSH PRIVATE KEY-----".to_owned(),
        ssh_host_key: "git.example.com ssh-ed25519 AAAA".to_owned(),
        skip_ssh_host_key_check: true,
        pass_vars_to_forked_pr: true,
        webhook_secret: "hook".to_owned(),
        ..Default::default()
    }
}

pub async fn create_project(c: &mut Client, name: &str, parent: &str) -> pb::Project {
    c.create_project(pb::CreateProjectRequest {
        project: Some(manual_project(name, parent)),
    })
    .await
    .expect("create project")
    .into_inner()
    .project
    .expect("project")
}

pub fn secret_req(kind: pbc::ParentType, parent: &str, name: &str) -> pb::CreateSecretRequest {
    pb::CreateSecretRequest {
        parent_type: kind.into(),
        parent_ref: parent.to_owned(),
        secret: Some(pb::Secret {
            name: name.to_owned(),
            r#type: pbc::SecretType::Internal.into(),
            data: [("password".to_owned(), format!("{name}-value"))].into(),
            ..Default::default()
        }),
    }
}

pub fn variable_req(kind: pbc::ParentType, parent: &str, name: &str) -> pb::CreateVariableRequest {
    pb::CreateVariableRequest {
        parent_type: kind.into(),
        parent_ref: parent.to_owned(),
        variable: Some(pb::Variable {
            name: name.to_owned(),
            values: vec![pbc::VariableValue {
                secret_name: "s".to_owned(),
                secret_var: "password".to_owned(),
                when: Some(pbc::When {
                    branch: Some(pbc::WhenConditions {
                        include: vec!["main".to_owned()],
                        exclude: vec![],
                    }),
                    ..Default::default()
                }),
            }],
            ..Default::default()
        }),
    }
}

pub fn remote_source(name: &str) -> pb::RemoteSource {
    pb::RemoteSource {
        name: name.to_owned(),
        r#type: pbc::RemoteSourceType::Gitea.into(),
        auth_type: pbc::RemoteSourceAuthType::Password.into(),
        api_url: "https://gitea.example.com".to_owned(),
        ..Default::default()
    }
}

pub async fn list_secrets(
    c: &mut Client,
    kind: pbc::ParentType,
    parent: &str,
    tree: bool,
) -> Vec<pb::Secret> {
    c.list_secrets(pb::ListSecretsRequest {
        parent_type: kind.into(),
        parent_ref: parent.to_owned(),
        tree,
    })
    .await
    .expect("list secrets")
    .into_inner()
    .secrets
}
