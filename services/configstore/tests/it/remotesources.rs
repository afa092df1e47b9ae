//! Remote sources: CRUD, validation, paging, and refusing to delete one still in use.

use agola_proto::common::v1 as pbc;
use agola_proto::configstore::v1 as pb;
use tonic::Code;

use crate::common::*;

#[tokio::test]
async fn remote_source_lifecycle() {
    let storage = Storage::embedded();
    let inst = Instance::start(&storage).await;
    let mut c = inst.client.clone();
    let rs = c
        .create_remote_source(pb::CreateRemoteSourceRequest {
            remote_source: Some(remote_source("gitea")),
        })
        .await
        .expect("create")
        .into_inner()
        .remote_source
        .expect("rs");
    for r in [rs.id.as_str(), "gitea"] {
        let got = c
            .get_remote_source(pb::GetRemoteSourceRequest {
                remote_source_ref: r.to_owned(),
            })
            .await
            .expect("get")
            .into_inner()
            .remote_source
            .expect("rs");
        assert_eq!(got, rs);
    }
    assert_code(
        c.create_remote_source(pb::CreateRemoteSourceRequest {
            remote_source: Some(remote_source("gitea")),
        })
        .await,
        Code::AlreadyExists,
        "remote source \"gitea\" already exists",
    );
    assert_code(
        c.create_remote_source(pb::CreateRemoteSourceRequest {
            remote_source: Some(pb::RemoteSource {
                api_url: String::new(),
                ..remote_source("noapi")
            }),
        })
        .await,
        Code::InvalidArgument,
        "remote_source.api_url",
    );
    assert_code(
        c.create_remote_source(pb::CreateRemoteSourceRequest {
            remote_source: Some(pb::RemoteSource {
                auth_type: pbc::RemoteSourceAuthType::Oauth2.into(),
                ..remote_source("oauth")
            }),
        })
        .await,
        Code::InvalidArgument,
        "remote_source.oauth2_client_id",
    );
    assert_code(
        c.create_remote_source(pb::CreateRemoteSourceRequest {
            remote_source: Some(pb::RemoteSource {
                r#type: 99,
                ..remote_source("badtype")
            }),
        })
        .await,
        Code::InvalidArgument,
        "remote_source.type",
    );

    // Update replaces every field but the id; the old name is freed.
    let up = c
        .update_remote_source(pb::UpdateRemoteSourceRequest {
            remote_source_ref: "gitea".to_owned(),
            remote_source: Some(pb::RemoteSource {
                r#type: pbc::RemoteSourceType::Github.into(),
                api_url: "https://api.github.com".to_owned(),
                login_enabled: true,
                ..remote_source("github")
            }),
        })
        .await
        .expect("update")
        .into_inner()
        .remote_source
        .expect("rs");
    assert_eq!(
        (up.id.as_str(), up.name.as_str()),
        (rs.id.as_str(), "github")
    );
    assert!(up.login_enabled);
    assert_code(
        c.get_remote_source(pb::GetRemoteSourceRequest {
            remote_source_ref: "gitea".to_owned(),
        })
        .await,
        Code::NotFound,
        "gitea",
    );
    for n in ["gitlab", "zeta", "alpha"] {
        c.create_remote_source(pb::CreateRemoteSourceRequest {
            remote_source: Some(remote_source(n)),
        })
        .await
        .expect("create");
    }
    let names: Vec<String> = c
        .list_remote_sources(pb::ListRemoteSourcesRequest {
            start: String::new(),
            limit: 0,
            asc: true,
        })
        .await
        .expect("list")
        .into_inner()
        .remote_sources
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, vec!["alpha", "github", "gitlab", "zeta"]);

    // In use by a linked account and a project: refused, naming them.
    let u = create_user(&mut c, "linked").await;
    let la = c
        .create_user_linked_account(pb::CreateUserLinkedAccountRequest {
            user_ref: u.id.clone(),
            linked_account: Some(pb::LinkedAccount {
                remote_source_id: "github".to_owned(),
                remote_user_id: "7".to_owned(),
                ..Default::default()
            }),
        })
        .await
        .expect("link")
        .into_inner()
        .linked_account
        .expect("la");
    let p = c
        .create_project(pb::CreateProjectRequest {
            project: Some(pb::Project {
                remote_repository_config_type: pbc::RemoteRepositoryConfigType::Remotesource.into(),
                remote_source_id: "github".to_owned(),
                linked_account_id: la.id.clone(),
                repository_id: "123".to_owned(),
                repository_path: "linked/repo".to_owned(),
                ..manual_project("repo", "user/linked")
            }),
        })
        .await
        .expect("remote source project")
        .into_inner()
        .project
        .expect("project");
    assert_eq!(p.remote_source_id, rs.id);
    assert_eq!(p.repository_url, "", "manual fields cleared");
    assert_code(
        c.delete_remote_source(pb::DeleteRemoteSourceRequest {
            remote_source_ref: "github".to_owned(),
        })
        .await,
        Code::InvalidArgument,
        "still used by linked accounts of users [\"linked\"] and by projects [\"user/linked/repo\"]",
    );
    c.delete_project(pb::DeleteProjectRequest {
        project_ref: "user/linked/repo".to_owned(),
    })
    .await
    .expect("delete project");
    c.delete_user_linked_account(pb::DeleteUserLinkedAccountRequest {
        user_ref: "linked".to_owned(),
        linked_account_id: la.id.clone(),
    })
    .await
    .expect("unlink");
    c.delete_remote_source(pb::DeleteRemoteSourceRequest {
        remote_source_ref: "github".to_owned(),
    })
    .await
    .expect("delete");
    assert_code(
        c.get_remote_source(pb::GetRemoteSourceRequest {
            remote_source_ref: rs.id.clone(),
        })
        .await,
        Code::NotFound,
        "remote source",
    );
    inst.stop().await;
}
