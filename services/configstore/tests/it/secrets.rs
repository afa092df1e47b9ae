//! Secrets and variables: CRUD on groups and projects, tree listings with parent paths.

use agola_proto::common::v1 as pbc;
use agola_proto::configstore::v1 as pb;
use tonic::Code;

use crate::common::*;

#[tokio::test]
async fn secrets_crud_and_tree_listing() {
    let storage = Storage::embedded();
    let inst = Instance::start(&storage).await;
    let mut c = inst.client.clone();
    create_user(&mut c, "hank").await;
    create_org(&mut c, "horg", "hank").await;
    create_group(&mut c, "g", "org/horg").await;
    let p = create_project(&mut c, "p", "org/horg/g").await;
    let group = pbc::ParentType::Projectgroup;
    let project = pbc::ParentType::Project;

    for (kind, parent, name) in [
        (group, "org/horg", "rootsecret"),
        (group, "org/horg/g", "groupsecret"),
        (project, "org/horg/g/p", "projsecret"),
        (project, p.id.as_str(), "another"),
    ] {
        let s = c
            .create_secret(secret_req(kind, parent, name))
            .await
            .expect("create secret")
            .into_inner()
            .secret
            .expect("secret");
        assert_eq!(s.name, name);
        assert_eq!(s.data.get("password"), Some(&format!("{name}-value")));
    }
    assert_code(
        c.create_secret(secret_req(project, &p.id, "projsecret"))
            .await,
        Code::AlreadyExists,
        "secret \"projsecret\" already exists in \"org/horg/g/p\"",
    );
    assert_code(
        c.create_secret(pb::CreateSecretRequest {
            secret: Some(pb::Secret {
                name: "empty".to_owned(),
                ..Default::default()
            }),
            ..secret_req(project, &p.id, "empty")
        })
        .await,
        Code::InvalidArgument,
        "secret.data",
    );
    assert_code(
        c.create_secret(secret_req(pbc::ParentType::Unspecified, &p.id, "x"))
            .await,
        Code::InvalidArgument,
        "parent_type",
    );
    assert_code(
        c.create_secret(secret_req(project, "org/horg/g/nope", "x"))
            .await,
        Code::NotFound,
        "project",
    );

    // Own secrets only, by name.
    let own: Vec<(String, String)> = list_secrets(&mut c, project, &p.id, false)
        .await
        .into_iter()
        .map(|s| (s.name, s.parent_path))
        .collect();
    assert_eq!(
        own,
        vec![
            ("another".to_owned(), "org/horg/g/p".to_owned()),
            ("projsecret".to_owned(), "org/horg/g/p".to_owned())
        ]
    );
    // The tree: the project's, then each ancestor group's up to the root, tagged.
    let tree: Vec<(String, String)> = list_secrets(&mut c, project, "org/horg/g/p", true)
        .await
        .into_iter()
        .map(|s| (s.name, s.parent_path))
        .collect();
    assert_eq!(
        tree,
        vec![
            ("another".to_owned(), "org/horg/g/p".to_owned()),
            ("projsecret".to_owned(), "org/horg/g/p".to_owned()),
            ("groupsecret".to_owned(), "org/horg/g".to_owned()),
            ("rootsecret".to_owned(), "org/horg".to_owned()),
        ]
    );
    let group_tree: Vec<String> = list_secrets(&mut c, group, "org/horg/g", true)
        .await
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(group_tree, vec!["groupsecret", "rootsecret"]);

    // Update: rename and new data; delete.
    let up = c
        .update_secret(pb::UpdateSecretRequest {
            parent_type: project.into(),
            parent_ref: p.id.clone(),
            secret_name: "another".to_owned(),
            secret: Some(pb::Secret {
                name: "renamed".to_owned(),
                data: [("k".to_owned(), "v".to_owned())].into(),
                ..Default::default()
            }),
        })
        .await
        .expect("update secret")
        .into_inner()
        .secret
        .expect("secret");
    assert_eq!(up.name, "renamed");
    assert_eq!(up.data.get("k").map(String::as_str), Some("v"));
    assert_eq!(up.r#type, i32::from(pbc::SecretType::Internal));
    assert_code(
        c.update_secret(pb::UpdateSecretRequest {
            parent_type: project.into(),
            parent_ref: p.id.clone(),
            secret_name: "renamed".to_owned(),
            secret: Some(pb::Secret {
                name: "projsecret".to_owned(),
                data: [("k".to_owned(), "v".to_owned())].into(),
                ..Default::default()
            }),
        })
        .await,
        Code::AlreadyExists,
        "projsecret",
    );
    c.delete_secret(pb::DeleteSecretRequest {
        parent_type: project.into(),
        parent_ref: p.id.clone(),
        secret_name: "renamed".to_owned(),
    })
    .await
    .expect("delete secret");
    assert_code(
        c.delete_secret(pb::DeleteSecretRequest {
            parent_type: project.into(),
            parent_ref: p.id.clone(),
            secret_name: "renamed".to_owned(),
        })
        .await,
        Code::NotFound,
        "secret \"renamed\"",
    );
    let names: Vec<String> = list_secrets(&mut c, project, &p.id, false)
        .await
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, vec!["projsecret"]);

    // Deleting the project deletes its secrets: a new project of the same name starts empty.
    c.delete_project(pb::DeleteProjectRequest {
        project_ref: p.id.clone(),
    })
    .await
    .expect("delete project");
    let p2 = create_project(&mut c, "p", "org/horg/g").await;
    assert!(
        list_secrets(&mut c, project, &p2.id, false)
            .await
            .is_empty()
    );
    inst.stop().await;
}

#[tokio::test]
async fn variables_crud_and_tree_listing() {
    let storage = Storage::embedded();
    let inst = Instance::start(&storage).await;
    let mut c = inst.client.clone();
    create_user(&mut c, "ivy").await;
    create_group(&mut c, "g", "user/ivy").await;
    create_project(&mut c, "p", "user/ivy/g").await;
    let group = pbc::ParentType::Projectgroup;
    let project = pbc::ParentType::Project;
    for (kind, parent, name) in [
        (group, "user/ivy", "ROOT_VAR"),
        (group, "user/ivy/g", "GROUP_VAR"),
        (project, "user/ivy/g/p", "PROJ_VAR"),
    ] {
        c.create_variable(variable_req(kind, parent, name))
            .await
            .expect("create variable");
    }
    assert_code(
        c.create_variable(variable_req(project, "user/ivy/g/p", "PROJ_VAR"))
            .await,
        Code::AlreadyExists,
        "variable \"PROJ_VAR\" already exists",
    );
    assert_code(
        c.create_variable(pb::CreateVariableRequest {
            variable: Some(pb::Variable {
                name: "NOVALUES".to_owned(),
                ..Default::default()
            }),
            ..variable_req(project, "user/ivy/g/p", "NOVALUES")
        })
        .await,
        Code::InvalidArgument,
        "variable.values",
    );
    let tree = c
        .list_variables(pb::ListVariablesRequest {
            parent_type: project.into(),
            parent_ref: "user/ivy/g/p".to_owned(),
            tree: true,
        })
        .await
        .expect("list")
        .into_inner()
        .variables;
    let got: Vec<(String, String)> = tree
        .iter()
        .map(|v| (v.name.clone(), v.parent_path.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("PROJ_VAR".to_owned(), "user/ivy/g/p".to_owned()),
            ("GROUP_VAR".to_owned(), "user/ivy/g".to_owned()),
            ("ROOT_VAR".to_owned(), "user/ivy".to_owned()),
        ]
    );
    let value = &tree[0].values[0];
    assert_eq!(
        (value.secret_name.as_str(), value.secret_var.as_str()),
        ("s", "password")
    );
    assert_eq!(
        value
            .when
            .as_ref()
            .and_then(|w| w.branch.as_ref())
            .map(|b| b.include.clone()),
        Some(vec!["main".to_owned()])
    );

    let up = c
        .update_variable(pb::UpdateVariableRequest {
            parent_type: group.into(),
            parent_ref: "user/ivy/g".to_owned(),
            variable_name: "GROUP_VAR".to_owned(),
            variable: Some(pb::Variable {
                name: "GROUP_VAR2".to_owned(),
                values: vec![pbc::VariableValue {
                    secret_name: "other".to_owned(),
                    secret_var: "token".to_owned(),
                    when: None,
                }],
                ..Default::default()
            }),
        })
        .await
        .expect("update variable")
        .into_inner()
        .variable
        .expect("variable");
    assert_eq!(up.name, "GROUP_VAR2");
    assert_eq!(up.values[0].secret_name, "other");
    assert_eq!(up.parent_path, "user/ivy/g");
    c.delete_variable(pb::DeleteVariableRequest {
        parent_type: group.into(),
        parent_ref: "user/ivy/g".to_owned(),
        variable_name: "GROUP_VAR2".to_owned(),
    })
    .await
    .expect("delete variable");
    let names: Vec<String> = c
        .list_variables(pb::ListVariablesRequest {
            parent_type: project.into(),
            parent_ref: "user/ivy/g/p".to_owned(),
            tree: true,
        })
        .await
        .expect("list")
        .into_inner()
        .variables
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, vec!["PROJ_VAR", "ROOT_VAR"]);
    assert_code(
        c.delete_variable(pb::DeleteVariableRequest {
            parent_type: group.into(),
            parent_ref: "user/ivy/g".to_owned(),
            variable_name: "GROUP_VAR2".to_owned(),
        })
        .await,
        Code::NotFound,
        "variable \"GROUP_VAR2\"",
    );
    inst.stop().await;
}
