//! Users: CRUD, refs by id and name, validation, root group, tokens, linked accounts, paging.

use agola_proto::common::v1 as pbc;
use agola_proto::configstore::v1 as pb;
use tonic::Code;

use crate::common::*;

#[tokio::test]
async fn user_crud_by_id_and_name() {
    let storage = Storage::embedded();
    let inst = Instance::start(&storage).await;
    let mut c = inst.client.clone();

    let u = create_user(&mut c, "alice").await;
    assert_eq!(u.name, "alice");
    assert!(!u.id.is_empty());
    assert_eq!(u.secret.len(), 64, "a generated secret");

    for r in [u.id.as_str(), "alice"] {
        let got = c
            .get_user(pb::GetUserRequest {
                user_ref: r.to_owned(),
            })
            .await
            .expect("get")
            .into_inner()
            .user
            .expect("user");
        assert_eq!(got, u);
    }
    // Its root project group exists at user/alice.
    let root = c
        .get_project_group(pb::GetProjectGroupRequest {
            project_group_ref: "user/alice".to_owned(),
        })
        .await
        .expect("root group")
        .into_inner()
        .project_group
        .expect("group");
    assert_eq!(root.path, "user/alice");
    assert_eq!(root.parent_path, "");
    let parent = root.parent.expect("parent");
    assert_eq!(parent.r#type, i32::from(pbc::ParentType::User));
    assert_eq!(parent.id, u.id);

    assert_code(
        c.create_user(pb::CreateUserRequest {
            name: "alice".to_owned(),
            ..Default::default()
        })
        .await,
        Code::AlreadyExists,
        "user \"alice\" already exists",
    );

    // Rename and make admin; paths follow the name.
    let up = c
        .update_user(pb::UpdateUserRequest {
            user_ref: "alice".to_owned(),
            name: "alicia".to_owned(),
            admin: true,
        })
        .await
        .expect("update")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(
        (up.name.as_str(), up.admin, &up.id),
        ("alicia", true, &u.id)
    );
    assert_code(
        c.get_user(pb::GetUserRequest {
            user_ref: "alice".to_owned(),
        })
        .await,
        Code::NotFound,
        "alice",
    );
    let root = c
        .get_project_group(pb::GetProjectGroupRequest {
            project_group_ref: "user/alicia".to_owned(),
        })
        .await
        .expect("renamed root")
        .into_inner()
        .project_group
        .expect("group");
    assert_eq!(root.path, "user/alicia");
    // The old name is free again.
    create_user(&mut c, "alice").await;
    assert_code(
        c.update_user(pb::UpdateUserRequest {
            user_ref: "alicia".to_owned(),
            name: "alice".to_owned(),
            admin: true,
        })
        .await,
        Code::AlreadyExists,
        "alice",
    );

    c.delete_user(pb::DeleteUserRequest {
        user_ref: u.id.clone(),
    })
    .await
    .expect("delete");
    assert_code(
        c.get_user(pb::GetUserRequest {
            user_ref: u.id.clone(),
        })
        .await,
        Code::NotFound,
        &u.id,
    );
    assert_code(
        c.get_project_group(pb::GetProjectGroupRequest {
            project_group_ref: root.id.clone(),
        })
        .await,
        Code::NotFound,
        "project group",
    );
    assert_code(
        c.delete_user(pb::DeleteUserRequest {
            user_ref: u.id.clone(),
        })
        .await,
        Code::NotFound,
        "user",
    );
    inst.stop().await;
}

#[tokio::test]
async fn names_are_validated_naming_the_field() {
    let storage = Storage::embedded();
    let inst = Instance::start(&storage).await;
    let mut c = inst.client.clone();
    for bad in ["", "1abc", "a--b", "a_b", "-a", "a-", "with space"] {
        assert_code(
            c.create_user(pb::CreateUserRequest {
                name: bad.to_owned(),
                ..Default::default()
            })
            .await,
            Code::InvalidArgument,
            "invalid name",
        );
    }
    assert_code(
        c.create_user(pb::CreateUserRequest {
            name: "a".repeat(101),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "at most 100",
    );
    assert_code(
        c.create_user(pb::CreateUserRequest {
            name: uuid_like(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "uuid",
    );
    create_user(&mut c, "bob").await;
    assert_code(
        c.create_org(pb::CreateOrgRequest {
            name: "bad_org".to_owned(),
            visibility: pbc::Visibility::Public.into(),
            creator_user_id: String::new(),
        })
        .await,
        Code::InvalidArgument,
        "invalid name \"bad_org\"",
    );
    assert_code(
        c.create_project_group(new_group("9g", "user/bob")).await,
        Code::InvalidArgument,
        "project_group.name",
    );
    assert_code(
        c.create_project(pb::CreateProjectRequest {
            project: Some(manual_project("p.x", "user/bob")),
        })
        .await,
        Code::InvalidArgument,
        "project.name",
    );
    assert_code(
        c.create_secret(secret_req(pbc::ParentType::Projectgroup, "user/bob", "1s"))
            .await,
        Code::InvalidArgument,
        "secret.name",
    );
    assert_code(
        c.create_variable(variable_req(
            pbc::ParentType::Projectgroup,
            "user/bob",
            "a b",
        ))
        .await,
        Code::InvalidArgument,
        "variable.name",
    );
    assert_code(
        c.create_remote_source(pb::CreateRemoteSourceRequest {
            remote_source: Some(remote_source("r_s")),
        })
        .await,
        Code::InvalidArgument,
        "remote_source.name",
    );
    // Secret and variable names may use '_' and start with it.
    c.create_secret(secret_req(
        pbc::ParentType::Projectgroup,
        "user/bob",
        "_my_secret-1",
    ))
    .await
    .expect("underscore secret name");
    inst.stop().await;
}

fn uuid_like() -> String {
    "abcdef12-3456-4789-8abc-def012345678".to_owned()
}

#[tokio::test]
async fn tokens_are_random_and_resolve_users() {
    let storage = Storage::embedded();
    let inst = Instance::start(&storage).await;
    let mut c = inst.client.clone();
    let u = create_user(&mut c, "tokenuser").await;
    let create = |name: &str| pb::CreateUserTokenRequest {
        user_ref: "tokenuser".to_owned(),
        token_name: name.to_owned(),
    };
    let t1 = c
        .create_user_token(create("ci"))
        .await
        .expect("token")
        .into_inner()
        .token;
    let t2 = c
        .create_user_token(create("laptop"))
        .await
        .expect("token")
        .into_inner()
        .token;
    for t in [&t1, &t2] {
        assert!(t.len() >= 32, "at least 128 bits: {t}");
        assert!(t.chars().all(|c| c.is_ascii_hexdigit()), "hex: {t}");
    }
    assert_ne!(t1, t2);
    assert_code(
        c.create_user_token(create("ci")).await,
        Code::AlreadyExists,
        "token \"ci\"",
    );
    assert_code(
        c.create_user_token(create("")).await,
        Code::InvalidArgument,
        "token_name",
    );
    let by_token = c
        .get_user_by_token(pb::GetUserByTokenRequest { token: t1.clone() })
        .await
        .expect("by token")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(by_token.id, u.id);
    assert_eq!(by_token.tokens.get("ci"), Some(&t1));

    c.delete_user_token(pb::DeleteUserTokenRequest {
        user_ref: u.id.clone(),
        token_name: "ci".to_owned(),
    })
    .await
    .expect("delete token");
    assert_code(
        c.get_user_by_token(pb::GetUserByTokenRequest { token: t1.clone() })
            .await,
        Code::NotFound,
        "no user holds this token",
    );
    assert_code(
        c.delete_user_token(pb::DeleteUserTokenRequest {
            user_ref: u.id.clone(),
            token_name: "ci".to_owned(),
        })
        .await,
        Code::NotFound,
        "token \"ci\"",
    );
    assert_code(
        c.get_user_by_token(pb::GetUserByTokenRequest {
            token: String::new(),
        })
        .await,
        Code::NotFound,
        "token",
    );
    // The other token still works; a missing user is NotFound.
    c.get_user_by_token(pb::GetUserByTokenRequest { token: t2 })
        .await
        .expect("second token");
    assert_code(
        c.create_user_token(pb::CreateUserTokenRequest {
            user_ref: "nobody".to_owned(),
            token_name: "x".to_owned(),
        })
        .await,
        Code::NotFound,
        "user \"nobody\"",
    );
    inst.stop().await;
}

#[tokio::test]
async fn linked_accounts_and_remote_user_lookups() {
    let storage = Storage::embedded();
    let inst = Instance::start(&storage).await;
    let mut c = inst.client.clone();
    let rs = c
        .create_remote_source(pb::CreateRemoteSourceRequest {
            remote_source: Some(remote_source("gitea")),
        })
        .await
        .expect("rs")
        .into_inner()
        .remote_source
        .expect("rs");
    // A user registered through the remote source: created with its linked account.
    let u = c
        .create_user(pb::CreateUserRequest {
            name: "reg".to_owned(),
            admin: false,
            linked_account: Some(pb::LinkedAccount {
                remote_source_id: "gitea".to_owned(),
                remote_user_id: "42".to_owned(),
                remote_user_name: "reg42".to_owned(),
                user_access_token: "tok".to_owned(),
                oauth2_access_token_expires_at: Some(prost_types::Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 0,
                }),
                ..Default::default()
            }),
        })
        .await
        .expect("user with linked account")
        .into_inner()
        .user
        .expect("user");
    let (la_id, la) = u.linked_accounts.iter().next().expect("one account");
    assert_eq!(la.remote_source_id, rs.id, "stored by id");
    assert_eq!(
        la.oauth2_access_token_expires_at.map(|t| t.seconds),
        Some(1_700_000_000)
    );

    let by_la = c
        .get_user_by_linked_account(pb::GetUserByLinkedAccountRequest {
            linked_account_id: la_id.clone(),
        })
        .await
        .expect("by linked account")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(by_la.id, u.id);
    let by_remote = c
        .get_user_by_remote_user(pb::GetUserByRemoteUserRequest {
            remote_user_id: "42".to_owned(),
            remote_source_id: rs.id.clone(),
        })
        .await
        .expect("by remote user")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(by_remote.id, u.id);

    // The same remote user cannot be linked twice, to anyone.
    let other = create_user(&mut c, "other").await;
    let link = |user: &str, remote_user: &str| pb::CreateUserLinkedAccountRequest {
        user_ref: user.to_owned(),
        linked_account: Some(pb::LinkedAccount {
            remote_source_id: rs.id.clone(),
            remote_user_id: remote_user.to_owned(),
            ..Default::default()
        }),
    };
    assert_code(
        c.create_user_linked_account(link("other", "42")).await,
        Code::AlreadyExists,
        "already linked to user \"reg\"",
    );
    let la2 = c
        .create_user_linked_account(link("other", "43"))
        .await
        .expect("link")
        .into_inner()
        .linked_account
        .expect("la");
    assert_code(
        c.create_user_linked_account(pb::CreateUserLinkedAccountRequest {
            user_ref: "other".to_owned(),
            linked_account: Some(pb::LinkedAccount {
                remote_source_id: "nosuch".to_owned(),
                remote_user_id: "1".to_owned(),
                ..Default::default()
            }),
        })
        .await,
        Code::NotFound,
        "remote source \"nosuch\"",
    );

    // Update: every field but id and remote source.
    let updated = c
        .update_user_linked_account(pb::UpdateUserLinkedAccountRequest {
            user_ref: other.id.clone(),
            linked_account_id: la2.id.clone(),
            linked_account: Some(pb::LinkedAccount {
                remote_user_id: "44".to_owned(),
                remote_user_name: "renamed".to_owned(),
                oauth2_access_token: "new".to_owned(),
                ..Default::default()
            }),
        })
        .await
        .expect("update la")
        .into_inner()
        .linked_account
        .expect("la");
    assert_eq!(
        (
            updated.id.as_str(),
            updated.remote_source_id.as_str(),
            updated.remote_user_id.as_str()
        ),
        (la2.id.as_str(), rs.id.as_str(), "44")
    );
    assert_eq!(updated.oauth2_access_token, "new");
    assert_code(
        c.get_user_by_remote_user(pb::GetUserByRemoteUserRequest {
            remote_user_id: "43".to_owned(),
            remote_source_id: rs.id.clone(),
        })
        .await,
        Code::NotFound,
        "no user is linked",
    );
    assert_code(
        c.update_user_linked_account(pb::UpdateUserLinkedAccountRequest {
            user_ref: other.id.clone(),
            linked_account_id: la2.id.clone(),
            linked_account: Some(pb::LinkedAccount {
                remote_user_id: "42".to_owned(),
                ..Default::default()
            }),
        })
        .await,
        Code::AlreadyExists,
        "already linked",
    );

    c.delete_user_linked_account(pb::DeleteUserLinkedAccountRequest {
        user_ref: "other".to_owned(),
        linked_account_id: la2.id.clone(),
    })
    .await
    .expect("unlink");
    assert_code(
        c.get_user_by_linked_account(pb::GetUserByLinkedAccountRequest {
            linked_account_id: la2.id.clone(),
        })
        .await,
        Code::NotFound,
        "linked account",
    );
    assert_code(
        c.delete_user_linked_account(pb::DeleteUserLinkedAccountRequest {
            user_ref: "other".to_owned(),
            linked_account_id: la2.id.clone(),
        })
        .await,
        Code::NotFound,
        "linked account",
    );
    inst.stop().await;
}

#[tokio::test]
async fn user_listing_pages_by_name() {
    let storage = Storage::embedded();
    let inst = Instance::start(&storage).await;
    let mut c = inst.client.clone();
    let mut names: Vec<String> = (0..105).map(|i| format!("u{i:03}")).collect();
    // Created out of order: the listing sorts by name, not by creation.
    names.reverse();
    let creations = names.iter().map(|n| {
        let mut c = c.clone();
        async move { create_user(&mut c, n).await }
    });
    futures::future::join_all(creations).await;
    names.sort();

    let list = |start: &str, limit: u32, asc: bool| pb::ListUsersRequest {
        start: start.to_owned(),
        limit,
        asc,
    };
    let page = |r: pb::ListUsersResponse| r.users.into_iter().map(|u| u.name).collect::<Vec<_>>();

    let first = page(
        c.list_users(list("", 0, true))
            .await
            .expect("list")
            .into_inner(),
    );
    assert_eq!(first, names[..25], "default limit 25, ascending");
    let next = page(
        c.list_users(list(&first[24], 10, true))
            .await
            .expect("list")
            .into_inner(),
    );
    assert_eq!(next, names[25..35], "start is exclusive");
    let all = page(
        c.list_users(list("", 1000, true))
            .await
            .expect("list")
            .into_inner(),
    );
    assert_eq!(all, names[..100], "limit capped at 100");
    let desc = page(
        c.list_users(list("", 3, false))
            .await
            .expect("list")
            .into_inner(),
    );
    assert_eq!(desc, vec!["u104", "u103", "u102"]);
    let desc_after = page(
        c.list_users(list("u102", 2, false))
            .await
            .expect("list")
            .into_inner(),
    );
    assert_eq!(desc_after, vec!["u101", "u100"]);
    let tail = page(
        c.list_users(list("u103", 25, true))
            .await
            .expect("list")
            .into_inner(),
    );
    assert_eq!(tail, vec!["u104"]);
    inst.stop().await;
}
