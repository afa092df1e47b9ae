//! Concurrent writers: same-name races end in one success and AlreadyExists for the others,
//! different names in one group do not conflict, and creations racing a cascade delete
//! never leave orphans.

use agola_proto::common::v1 as pbc;
use agola_proto::configstore::v1 as pb;
use futures::future::join_all;
use tonic::Code;

use crate::common::*;

/// Counts successes and asserts every failure is AlreadyExists with a clear message.
fn tally<T>(results: Vec<Result<T, tonic::Status>>, needle: &str) -> usize {
    let mut ok = 0;
    for r in results {
        match r {
            Ok(_) => ok += 1,
            Err(s) => {
                assert_eq!(s.code(), Code::AlreadyExists, "unexpected status: {s:?}");
                assert!(s.message().contains(needle), "{:?}", s.message());
            }
        }
    }
    ok
}

#[tokio::test]
async fn fifty_concurrent_same_name_projects_one_wins() {
    let storage = Storage::embedded();
    let inst = Instance::start(&storage).await;
    let mut c = inst.client.clone();
    create_user(&mut c, "racer").await;
    let attempts = (0..50).map(|_| {
        let mut c = inst.client.clone();
        async move {
            c.create_project(pb::CreateProjectRequest {
                project: Some(manual_project("same", "user/racer")),
            })
            .await
        }
    });
    let results = join_all(attempts).await;
    assert_eq!(
        tally(results, "project \"user/racer/same\" already exists"),
        1
    );
    let listed = c
        .get_project_group_projects(pb::GetProjectGroupProjectsRequest {
            project_group_ref: "user/racer".to_owned(),
        })
        .await
        .expect("list")
        .into_inner()
        .projects;
    assert_eq!(listed.len(), 1);
    inst.stop().await;
}

#[tokio::test]
async fn concurrent_creations_of_different_names_all_succeed() {
    let storage = Storage::embedded();
    let inst = Instance::start(&storage).await;
    let mut c = inst.client.clone();
    create_user(&mut c, "many").await;
    // Creations in one group only share (compare) the group, they do not serialize on it.
    let attempts = (0..40).map(|i| {
        let mut c = inst.client.clone();
        async move {
            c.create_project(pb::CreateProjectRequest {
                project: Some(manual_project(&format!("p{i}"), "user/many")),
            })
            .await
        }
    });
    for r in join_all(attempts).await {
        r.expect("distinct names never conflict for good");
    }
    let listed = c
        .get_project_group_projects(pb::GetProjectGroupProjectsRequest {
            project_group_ref: "user/many".to_owned(),
        })
        .await
        .expect("list")
        .into_inner()
        .projects;
    assert_eq!(listed.len(), 40);
    inst.stop().await;
}

#[tokio::test]
async fn concurrent_same_name_users_orgs_and_secrets() {
    let storage = Storage::embedded();
    let inst = Instance::start(&storage).await;
    let users = join_all((0..20).map(|_| {
        let mut c = inst.client.clone();
        async move {
            c.create_user(pb::CreateUserRequest {
                name: "dup".to_owned(),
                ..Default::default()
            })
            .await
        }
    }))
    .await;
    assert_eq!(tally(users, "user \"dup\" already exists"), 1);
    let orgs = join_all((0..20).map(|_| {
        let mut c = inst.client.clone();
        async move {
            c.create_org(pb::CreateOrgRequest {
                name: "duporg".to_owned(),
                visibility: pbc::Visibility::Public.into(),
                creator_user_id: "dup".to_owned(),
            })
            .await
        }
    }))
    .await;
    assert_eq!(tally(orgs, "org \"duporg\" already exists"), 1);
    let secrets = join_all((0..20).map(|_| {
        let mut c = inst.client.clone();
        async move {
            c.create_secret(secret_req(
                pbc::ParentType::Projectgroup,
                "org/duporg",
                "dupsecret",
            ))
            .await
        }
    }))
    .await;
    assert_eq!(tally(secrets, "secret \"dupsecret\" already exists"), 1);
    let tokens = join_all((0..20).map(|_| {
        let mut c = inst.client.clone();
        async move {
            c.create_user_token(pb::CreateUserTokenRequest {
                user_ref: "dup".to_owned(),
                token_name: "t".to_owned(),
            })
            .await
        }
    }))
    .await;
    assert_eq!(tally(tokens, "token \"t\""), 1);
    inst.stop().await;
}

#[tokio::test]
async fn creations_racing_a_cascade_delete_leave_no_orphans() {
    let storage = Storage::embedded();
    let inst = Instance::start(&storage).await;
    let mut c = inst.client.clone();
    create_user(&mut c, "orphan").await;
    for round in 0..5 {
        let g = create_group(&mut c, &format!("g{round}"), "user/orphan").await;
        let sub = create_group(&mut c, "sub", &g.id).await;
        let creations = join_all((0..8).map(|i| {
            let mut c = inst.client.clone();
            let parent = if i % 2 == 0 {
                g.id.clone()
            } else {
                sub.id.clone()
            };
            async move {
                c.create_project(pb::CreateProjectRequest {
                    project: Some(manual_project(&format!("p{i}"), &parent)),
                })
                .await
            }
        }));
        let delete = {
            let mut c = inst.client.clone();
            let id = g.id.clone();
            async move {
                c.delete_project_group(pb::DeleteProjectGroupRequest {
                    project_group_ref: id,
                })
                .await
            }
        };
        let (created, deleted) = tokio::join!(creations, delete);
        if let Err(s) = &deleted {
            // Only a conflict that outlasted the retries may stop the delete.
            assert_eq!(s.code(), Code::Aborted, "{s:?}");
        }
        let group_exists = c
            .get_project_group(pb::GetProjectGroupRequest {
                project_group_ref: g.id.clone(),
            })
            .await
            .is_ok();
        assert_eq!(group_exists, deleted.is_err());
        for r in created {
            let p = match r {
                Ok(p) => p,
                Err(s) => {
                    // Planned after the delete: its parent was gone (or conflicts outlasted
                    // the retries).
                    assert!(matches!(s.code(), Code::NotFound | Code::Aborted), "{s:?}");
                    continue;
                }
            };
            let p = p.into_inner().project.expect("project");
            let exists = c
                .get_project(pb::GetProjectRequest {
                    project_ref: p.id.clone(),
                })
                .await
                .is_ok();
            assert_eq!(
                exists, group_exists,
                "project {} outlived (or died without) its group",
                p.path
            );
        }
    }
    inst.stop().await;
}
