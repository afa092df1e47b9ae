//! Project groups and projects: refs by id and path, moves and renames, root group rules,
//! cascade deletes, read-your-writes.

use agola_proto::common::v1 as pbc;
use agola_proto::configstore::v1 as pb;
use tonic::Code;

use crate::common::*;

async fn get_group(c: &mut Client, r: &str) -> Result<pb::ProjectGroup, tonic::Status> {
    c.get_project_group(pb::GetProjectGroupRequest {
        project_group_ref: r.to_owned(),
    })
    .await
    .map(|r| r.into_inner().project_group.unwrap_or_default())
}

async fn get_project(c: &mut Client, r: &str) -> Result<pb::Project, tonic::Status> {
    c.get_project(pb::GetProjectRequest {
        project_ref: r.to_owned(),
    })
    .await
    .map(|r| r.into_inner().project.unwrap_or_default())
}

async fn subgroups(c: &mut Client, r: &str) -> Vec<String> {
    c.get_project_group_subgroups(pb::GetProjectGroupSubgroupsRequest {
        project_group_ref: r.to_owned(),
    })
    .await
    .expect("subgroups")
    .into_inner()
    .project_groups
    .into_iter()
    .map(|g| g.path)
    .collect()
}

async fn projects(c: &mut Client, r: &str) -> Vec<String> {
    c.get_project_group_projects(pb::GetProjectGroupProjectsRequest {
        project_group_ref: r.to_owned(),
    })
    .await
    .expect("projects")
    .into_inner()
    .projects
    .into_iter()
    .map(|p| p.path)
    .collect()
}

#[tokio::test]
async fn groups_and_projects_by_id_and_path() {
    let storage = Storage::embedded();
    let inst = Instance::start(&storage).await;
    let mut c = inst.client.clone();
    create_user(&mut c, "carol").await;
    create_org(&mut c, "org1", "carol").await;

    let g = create_group(&mut c, "backend", "org/org1").await;
    assert_eq!(
        (g.path.as_str(), g.parent_path.as_str()),
        ("org/org1/backend", "org/org1")
    );
    // A parent given by id works as well as by path; a user/org parent means its root.
    let sub = create_group(&mut c, "services", &g.id).await;
    assert_eq!(sub.path, "org/org1/backend/services");
    let via_org = c
        .create_project_group(pb::CreateProjectGroupRequest {
            project_group: Some(pb::ProjectGroup {
                name: "frontend".to_owned(),
                parent: Some(pb::Parent {
                    r#type: pbc::ParentType::Org.into(),
                    id: "org1".to_owned(),
                }),
                visibility: pbc::Visibility::Public.into(),
                ..Default::default()
            }),
        })
        .await
        .expect("group under org root")
        .into_inner()
        .project_group
        .expect("group");
    assert_eq!(via_org.path, "org/org1/frontend");
    assert_eq!(
        via_org.parent.map(|p| (p.r#type, p.id)),
        Some((
            i32::from(pbc::ParentType::Projectgroup),
            g.parent.clone().expect("p").id
        ))
    );

    for r in [sub.id.as_str(), "org/org1/backend/services"] {
        assert_eq!(get_group(&mut c, r).await.expect("get"), sub);
    }
    assert_code(
        get_group(&mut c, "org/org1/backend/nope").await,
        Code::NotFound,
        "project group \"org/org1/backend/nope\" does not exist",
    );
    assert_code(
        get_group(&mut c, "team/org1").await,
        Code::InvalidArgument,
        "user/<user> or org/<org>",
    );
    assert_code(
        get_group(&mut c, "org/ghost").await,
        Code::NotFound,
        "org \"ghost\"",
    );

    let p = create_project(&mut c, "api", "org/org1/backend/services").await;
    assert_eq!(p.path, "org/org1/backend/services/api");
    assert_eq!(p.parent_path, "org/org1/backend/services");
    assert_eq!(p.repository_url, "https://git.example.com/api.git");
    assert!(p.skip_ssh_host_key_check && p.pass_vars_to_forked_pr);
    assert_eq!(p.ssh_host_key, "git.example.com ssh-ed25519 AAAA");
    for r in [p.id.as_str(), "org/org1/backend/services/api"] {
        assert_eq!(get_project(&mut c, r).await.expect("get"), p);
    }
    assert_code(
        get_project(&mut c, "org/org1/backend/services/none").await,
        Code::NotFound,
        "project",
    );

    // One path is one object: a group and a project cannot share a name in a parent.
    assert_code(
        c.create_project_group(new_group("api", "org/org1/backend/services"))
            .await,
        Code::AlreadyExists,
        "project \"org/org1/backend/services/api\" already exists",
    );
    assert_code(
        c.create_project(pb::CreateProjectRequest {
            project: Some(manual_project("services", "org/org1/backend")),
        })
        .await,
        Code::AlreadyExists,
        "project group \"org/org1/backend/services\" already exists",
    );
    // The same name under another parent is fine.
    create_project(&mut c, "api", "org/org1/frontend").await;

    // Required fields.
    assert_code(
        c.create_project(pb::CreateProjectRequest {
            project: Some(pb::Project {
                repository_url: String::new(),
                ..manual_project("norepo", "org/org1")
            }),
        })
        .await,
        Code::InvalidArgument,
        "project.repository_url",
    );
    assert_code(
        c.create_project(pb::CreateProjectRequest {
            project: Some(pb::Project {
                remote_repository_config_type: 0,
                ..manual_project("notype", "org/org1")
            }),
        })
        .await,
        Code::InvalidArgument,
        "project.remote_repository_config_type",
    );
    assert_code(
        c.create_project(pb::CreateProjectRequest {
            project: Some(manual_project("orphan", "org/org1/missing")),
        })
        .await,
        Code::NotFound,
        "org/org1/missing",
    );

    assert_eq!(
        subgroups(&mut c, "org/org1").await,
        vec!["org/org1/backend", "org/org1/frontend"]
    );
    assert_eq!(
        projects(&mut c, &sub.id).await,
        vec!["org/org1/backend/services/api"]
    );

    // Update a project: rename, move, replace fields.
    let moved = c
        .update_project(pb::UpdateProjectRequest {
            project_ref: p.id.clone(),
            project: Some(pb::Project {
                name: "api2".to_owned(),
                parent: group_parent("org/org1/backend"),
                visibility: pbc::Visibility::Private.into(),
                repository_url: "git@example.com:api2.git".to_owned(),
                ..manual_project("api2", "org/org1/backend")
            }),
        })
        .await
        .expect("update project")
        .into_inner()
        .project
        .expect("project");
    assert_eq!(
        (moved.id.as_str(), moved.path.as_str()),
        (p.id.as_str(), "org/org1/backend/api2")
    );
    assert_eq!(moved.visibility, i32::from(pbc::Visibility::Private));
    assert_eq!(moved.repository_url, "git@example.com:api2.git");
    assert!(projects(&mut c, &sub.id).await.is_empty());
    assert_eq!(
        projects(&mut c, "org/org1/backend").await,
        vec!["org/org1/backend/api2"]
    );
    assert_code(
        c.update_project(pb::UpdateProjectRequest {
            project_ref: "org/org1/backend/api2".to_owned(),
            project: Some(manual_project("services", "org/org1/backend")),
        })
        .await,
        Code::AlreadyExists,
        "project group \"org/org1/backend/services\"",
    );

    // Update a group: visibility, rename, move; the subtree's paths follow.
    let renamed = c
        .update_project_group(pb::UpdateProjectGroupRequest {
            project_group_ref: "org/org1/backend".to_owned(),
            project_group: Some(pb::ProjectGroup {
                name: "server".to_owned(),
                visibility: pbc::Visibility::Public.into(),
                ..Default::default()
            }),
        })
        .await
        .expect("rename group")
        .into_inner()
        .project_group
        .expect("group");
    assert_eq!(renamed.path, "org/org1/server");
    assert_eq!(
        get_project(&mut c, &p.id).await.expect("get").path,
        "org/org1/server/api2"
    );
    let moved = c
        .update_project_group(pb::UpdateProjectGroupRequest {
            project_group_ref: "org/org1/server".to_owned(),
            project_group: Some(pb::ProjectGroup {
                parent: group_parent("user/carol"),
                ..Default::default()
            }),
        })
        .await
        .expect("move group")
        .into_inner()
        .project_group
        .expect("group");
    assert_eq!(moved.path, "user/carol/server");
    assert_eq!(
        get_group(&mut c, &sub.id).await.expect("sub").path,
        "user/carol/server/services"
    );
    assert_eq!(
        subgroups(&mut c, "org/org1").await,
        vec!["org/org1/frontend"]
    );

    c.delete_project(pb::DeleteProjectRequest {
        project_ref: "user/carol/server/api2".to_owned(),
    })
    .await
    .expect("delete project");
    assert_code(get_project(&mut c, &p.id).await, Code::NotFound, "project");
    assert_code(
        c.delete_project(pb::DeleteProjectRequest {
            project_ref: p.id.clone(),
        })
        .await,
        Code::NotFound,
        "project",
    );
    inst.stop().await;
}

#[tokio::test]
async fn root_groups_cannot_be_deleted_renamed_or_moved() {
    let storage = Storage::embedded();
    let inst = Instance::start(&storage).await;
    let mut c = inst.client.clone();
    create_user(&mut c, "dave").await;
    create_org(&mut c, "dorg", "dave").await;
    let root = get_group(&mut c, "user/dave").await.expect("root");
    assert_code(
        c.delete_project_group(pb::DeleteProjectGroupRequest {
            project_group_ref: root.id.clone(),
        })
        .await,
        Code::InvalidArgument,
        "root project group \"user/dave\" cannot be deleted",
    );
    assert_code(
        c.update_project_group(pb::UpdateProjectGroupRequest {
            project_group_ref: "user/dave".to_owned(),
            project_group: Some(pb::ProjectGroup {
                name: "renamed".to_owned(),
                ..Default::default()
            }),
        })
        .await,
        Code::InvalidArgument,
        "cannot be renamed",
    );
    assert_code(
        c.update_project_group(pb::UpdateProjectGroupRequest {
            project_group_ref: "user/dave".to_owned(),
            project_group: Some(pb::ProjectGroup {
                parent: group_parent("org/dorg"),
                ..Default::default()
            }),
        })
        .await,
        Code::InvalidArgument,
        "cannot be moved",
    );
    // Visibility may change, and naming its own owner as parent is not a move.
    let up = c
        .update_project_group(pb::UpdateProjectGroupRequest {
            project_group_ref: "user/dave".to_owned(),
            project_group: Some(pb::ProjectGroup {
                parent: Some(pb::Parent {
                    r#type: pbc::ParentType::User.into(),
                    id: "dave".to_owned(),
                }),
                visibility: pbc::Visibility::Private.into(),
                ..Default::default()
            }),
        })
        .await
        .expect("root visibility")
        .into_inner()
        .project_group
        .expect("group");
    assert_eq!(up.visibility, i32::from(pbc::Visibility::Private));
    assert_eq!(up.path, "user/dave");
    inst.stop().await;
}

#[tokio::test]
async fn moving_a_group_under_itself_or_a_descendant_is_refused() {
    let storage = Storage::embedded();
    let inst = Instance::start(&storage).await;
    let mut c = inst.client.clone();
    create_user(&mut c, "erin").await;
    let a = create_group(&mut c, "a", "user/erin").await;
    let b = create_group(&mut c, "b", "user/erin/a").await;
    create_group(&mut c, "c", "user/erin/a/b").await;
    for target in [a.id.as_str(), b.id.as_str(), "user/erin/a/b/c"] {
        assert_code(
            c.update_project_group(pb::UpdateProjectGroupRequest {
                project_group_ref: a.id.clone(),
                project_group: Some(pb::ProjectGroup {
                    parent: group_parent(target),
                    ..Default::default()
                }),
            })
            .await,
            Code::InvalidArgument,
            "cannot move project group \"user/erin/a\" under itself or one of its descendants",
        );
    }
    // Moving a descendant up is fine.
    let c_up = c
        .update_project_group(pb::UpdateProjectGroupRequest {
            project_group_ref: "user/erin/a/b/c".to_owned(),
            project_group: Some(pb::ProjectGroup {
                parent: group_parent("user/erin"),
                ..Default::default()
            }),
        })
        .await
        .expect("move up")
        .into_inner()
        .project_group
        .expect("group");
    assert_eq!(c_up.path, "user/erin/c");
    inst.stop().await;
}

#[tokio::test]
async fn deleting_a_group_cascades_to_its_whole_subtree() {
    let storage = Storage::embedded();
    let inst = Instance::start(&storage).await;
    let mut c = inst.client.clone();
    create_user(&mut c, "frank").await;
    let top = create_group(&mut c, "top", "user/frank").await;
    let mid = create_group(&mut c, "mid", "user/frank/top").await;
    let leaf = create_group(&mut c, "leaf", "user/frank/top/mid").await;
    let p1 = create_project(&mut c, "p1", "user/frank/top").await;
    let p2 = create_project(&mut c, "p2", "user/frank/top/mid/leaf").await;
    let keep = create_project(&mut c, "keep", "user/frank").await;
    for (kind, parent) in [
        (pbc::ParentType::Projectgroup, mid.id.as_str()),
        (pbc::ParentType::Project, p2.id.as_str()),
        (pbc::ParentType::Project, keep.id.as_str()),
    ] {
        c.create_secret(secret_req(kind, parent, "s"))
            .await
            .expect("secret");
        c.create_variable(variable_req(kind, parent, "v"))
            .await
            .expect("variable");
    }

    c.delete_project_group(pb::DeleteProjectGroupRequest {
        project_group_ref: "user/frank/top".to_owned(),
    })
    .await
    .expect("delete subtree");

    // Nothing of the subtree is reachable, by id or path; the listings are clean at once.
    for g in [&top.id, &mid.id, &leaf.id] {
        assert_code(get_group(&mut c, g).await, Code::NotFound, "project group");
    }
    for p in [&p1.id, &p2.id] {
        assert_code(get_project(&mut c, p).await, Code::NotFound, "project");
    }
    assert_code(
        get_project(&mut c, "user/frank/top/mid/leaf/p2").await,
        Code::NotFound,
        "project",
    );
    assert!(subgroups(&mut c, "user/frank").await.is_empty());
    assert_eq!(
        projects(&mut c, "user/frank").await,
        vec!["user/frank/keep"]
    );
    assert_code(
        c.list_secrets(pb::ListSecretsRequest {
            parent_type: pbc::ParentType::Project.into(),
            parent_ref: p2.id.clone(),
            tree: true,
        })
        .await,
        Code::NotFound,
        "project",
    );
    // The untouched project keeps its secret and variable; names in the deleted tree are free.
    assert_eq!(
        list_secrets(&mut c, pbc::ParentType::Project, &keep.id, false)
            .await
            .len(),
        1
    );
    let again = create_group(&mut c, "top", "user/frank").await;
    assert_ne!(again.id, top.id);
    assert!(subgroups(&mut c, "user/frank/top").await.is_empty());
    assert!(projects(&mut c, "user/frank/top").await.is_empty());

    // Deleting the user removes the rest of its tree.
    c.delete_user(pb::DeleteUserRequest {
        user_ref: "frank".to_owned(),
    })
    .await
    .expect("delete user");
    assert_code(
        get_project(&mut c, &keep.id).await,
        Code::NotFound,
        "project",
    );
    assert_code(
        get_group(&mut c, &again.id).await,
        Code::NotFound,
        "project group",
    );
    inst.stop().await;
}

#[tokio::test]
async fn a_write_is_visible_to_the_next_read_on_the_same_instance() {
    let storage = Storage::embedded();
    let inst = Instance::start(&storage).await;
    let mut c = inst.client.clone();
    create_user(&mut c, "gina").await;
    for i in 0..30 {
        let name = format!("p{i}");
        let p = create_project(&mut c, &name, "user/gina").await;
        // No wait, no retry: the creator always reads its own write.
        assert_eq!(get_project(&mut c, &p.id).await.expect("get").id, p.id);
        let listed = projects(&mut c, "user/gina").await;
        assert!(listed.contains(&format!("user/gina/{name}")), "{listed:?}");
        c.delete_project(pb::DeleteProjectRequest {
            project_ref: p.id.clone(),
        })
        .await
        .expect("delete");
        assert_code(get_project(&mut c, &p.id).await, Code::NotFound, "project");
        assert!(projects(&mut c, "user/gina").await.is_empty());
    }
    inst.stop().await;
}
