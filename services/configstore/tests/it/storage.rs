//! Storage-level behaviour: two instances on real etcd + S3, a restart reloading the read
//! model from storage, maintenance with export and import.

use std::time::Duration;

use agola_proto::common::v1 as pbc;
use agola_proto::configstore::v1 as pb;
use agola_proto::datamanager::v1 as pbd;
use futures::StreamExt;
use futures::future::join_all;
use tonic::Code;

use crate::common::*;

const CATCH_UP: Duration = Duration::from_secs(20);

async fn project_paths(c: &mut Client, group: &str) -> Option<Vec<String>> {
    let r = c
        .get_project_group_projects(pb::GetProjectGroupProjectsRequest {
            project_group_ref: group.to_owned(),
        })
        .await
        .ok()?;
    Some(
        r.into_inner()
            .projects
            .into_iter()
            .map(|p| p.path)
            .collect(),
    )
}

#[tokio::test]
async fn two_instances_on_etcd_and_s3_share_the_data() {
    let storage = Storage::etcd_s3();
    let a = Instance::start(&storage).await;
    let b = Instance::start(&storage).await;
    let mut ca = a.client.clone();
    let mut cb = b.client.clone();

    // A write on A: visible on A at once, on B once its follower caught up.
    let u = create_user(&mut ca, "shared").await;
    ca.get_user(pb::GetUserRequest {
        user_ref: "shared".to_owned(),
    })
    .await
    .expect("read-your-writes on A");
    let seen = wait_until("B to see the user", CATCH_UP, || {
        let mut cb = cb.clone();
        async move {
            cb.get_user(pb::GetUserRequest {
                user_ref: "shared".to_owned(),
            })
            .await
            .ok()
            .and_then(|r| r.into_inner().user)
        }
    })
    .await;
    assert_eq!(seen.id, u.id);

    // And the other way round, with a deeper tree.
    create_group(&mut cb, "g", "user/shared").await;
    let p = create_project(&mut cb, "p", "user/shared/g").await;
    cb.create_secret(secret_req(pbc::ParentType::Project, &p.id, "s"))
        .await
        .expect("secret on B");
    let secrets = wait_until("A to see the secret", CATCH_UP, || {
        let mut ca = ca.clone();
        let id = p.id.clone();
        async move {
            let s = list_secrets_opt(&mut ca, &id).await?;
            (!s.is_empty()).then_some(s)
        }
    })
    .await;
    assert_eq!(secrets[0].parent_path, "user/shared/g/p");

    // Same-name creations spread over both instances: exactly one wins.
    let attempts = (0..20).map(|i| {
        let mut c = if i % 2 == 0 { ca.clone() } else { cb.clone() };
        async move {
            c.create_project(pb::CreateProjectRequest {
                project: Some(manual_project("race", "user/shared/g")),
            })
            .await
        }
    });
    let results = join_all(attempts).await;
    let mut ok = 0;
    for r in results {
        match r {
            Ok(_) => ok += 1,
            Err(s) => assert_eq!(s.code(), Code::AlreadyExists, "{s:?}"),
        }
    }
    assert_eq!(ok, 1);

    // A cascade delete on A disappears from B's listings whole.
    ca.delete_project_group(pb::DeleteProjectGroupRequest {
        project_group_ref: "user/shared/g".to_owned(),
    })
    .await
    .expect("delete on A");
    wait_until("B to drop the subtree", CATCH_UP, || {
        let mut cb = cb.clone();
        async move {
            let gone = cb
                .get_project_group(pb::GetProjectGroupRequest {
                    project_group_ref: "user/shared/g".to_owned(),
                })
                .await
                .is_err();
            gone.then_some(())
        }
    })
    .await;
    assert_code(
        cb.get_project(pb::GetProjectRequest {
            project_ref: p.id.clone(),
        })
        .await,
        Code::NotFound,
        "project",
    );
    assert_eq!(project_paths(&mut cb, "user/shared").await, Some(vec![]));

    // A third instance started now loads everything from storage.
    let c3 = Instance::start(&storage).await;
    let mut cc = c3.client.clone();
    let got = cc
        .get_user(pb::GetUserRequest {
            user_ref: u.id.clone(),
        })
        .await
        .expect("loaded by a new instance")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(got.name, "shared");
    c3.stop().await;
    b.stop().await;
    a.stop().await;
}

async fn list_secrets_opt(c: &mut Client, project: &str) -> Option<Vec<pb::Secret>> {
    c.list_secrets(pb::ListSecretsRequest {
        parent_type: pbc::ParentType::Project.into(),
        parent_ref: project.to_owned(),
        tree: false,
    })
    .await
    .ok()
    .map(|r| r.into_inner().secrets)
}

#[tokio::test]
async fn a_restarted_instance_reloads_its_data() {
    let storage = Storage::embedded();
    let inst = Instance::start(&storage).await;
    let mut c = inst.client.clone();
    create_user(&mut c, "persist").await;
    let token = c
        .create_user_token(pb::CreateUserTokenRequest {
            user_ref: "persist".to_owned(),
            token_name: "t".to_owned(),
        })
        .await
        .expect("token")
        .into_inner()
        .token;
    create_group(&mut c, "g", "user/persist").await;
    create_project(&mut c, "p", "user/persist/g").await;
    inst.stop().await;

    let inst = Instance::start(&storage).await;
    let mut c = inst.client.clone();
    let u = c
        .get_user_by_token(pb::GetUserByTokenRequest { token })
        .await
        .expect("token index rebuilt")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(u.name, "persist");
    assert_eq!(
        project_paths(&mut c, "user/persist/g").await,
        Some(vec!["user/persist/g/p".to_owned()])
    );
    // Names stay unique across the restart.
    assert_code(
        c.create_project(pb::CreateProjectRequest {
            project: Some(manual_project("p", "user/persist/g")),
        })
        .await,
        Code::AlreadyExists,
        "already exists",
    );
    inst.stop().await;
}

#[tokio::test]
async fn maintenance_export_and_import_round_trip() {
    let storage = Storage::embedded();
    let inst = Instance::start(&storage).await;
    let mut c = inst.client.clone();
    let mut m = inst.maintenance.clone();
    create_user(&mut c, "exported").await;
    create_project(&mut c, "p", "user/exported").await;

    assert_code(
        m.import(futures::stream::iter(Vec::<pbd::ImportRequest>::new()))
            .await,
        Code::FailedPrecondition,
        "maintenance",
    );
    let mut stream = m
        .export(pbd::ExportRequest {})
        .await
        .expect("export")
        .into_inner();
    let mut dump = Vec::new();
    while let Some(chunk) = stream.next().await {
        dump.extend(chunk.expect("chunk").data);
    }
    let text = String::from_utf8(dump.clone()).expect("utf8");
    assert!(text.contains("\"data_type\":\"user\""), "{text}");
    assert!(text.contains("\"data_type\":\"project\""), "{text}");

    // Changes after the export are rolled back by the import.
    create_user(&mut c, "later").await;
    m.enter_maintenance(pbd::EnterMaintenanceRequest {})
        .await
        .expect("enter");
    assert_code(
        m.enter_maintenance(pbd::EnterMaintenanceRequest {}).await,
        Code::FailedPrecondition,
        "already in maintenance",
    );
    // The API is unavailable in maintenance.
    wait_until("reads to stop in maintenance", CATCH_UP, || {
        let mut c = c.clone();
        async move {
            let r = c
                .get_user(pb::GetUserRequest {
                    user_ref: "exported".to_owned(),
                })
                .await;
            matches!(r, Err(s) if s.code() == Code::Unavailable).then_some(())
        }
    })
    .await;
    let chunks: Vec<pbd::ImportRequest> = dump
        .chunks(100)
        .map(|d| pbd::ImportRequest { data: d.to_vec() })
        .collect();
    m.import(futures::stream::iter(chunks))
        .await
        .expect("import");
    m.exit_maintenance(pbd::ExitMaintenanceRequest {})
        .await
        .expect("exit");
    assert_code(
        m.exit_maintenance(pbd::ExitMaintenanceRequest {}).await,
        Code::FailedPrecondition,
        "not in maintenance",
    );

    wait_until("the imported data to be served", CATCH_UP, || {
        let mut c = c.clone();
        async move {
            let later = c
                .get_user(pb::GetUserRequest {
                    user_ref: "later".to_owned(),
                })
                .await;
            let gone = matches!(later, Err(s) if s.code() == Code::NotFound);
            let kept = project_paths(&mut c, "user/exported").await
                == Some(vec!["user/exported/p".to_owned()]);
            (gone && kept).then_some(())
        }
    })
    .await;
    // Writes work again after the import.
    create_user(&mut c, "after").await;
    inst.stop().await;
}
