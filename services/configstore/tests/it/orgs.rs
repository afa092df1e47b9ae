//! Orgs and members: creation with owner and root group, roles, listings, cascade delete.

use agola_proto::common::v1 as pbc;
use agola_proto::configstore::v1 as pb;
use tonic::Code;

use crate::common::*;

#[tokio::test]
async fn org_lifecycle_with_members() {
    let storage = Storage::embedded();
    let inst = Instance::start(&storage).await;
    let mut c = inst.client.clone();
    let owner = create_user(&mut c, "owner").await;
    let dev = create_user(&mut c, "dev").await;

    let org = create_org(&mut c, "acme", "owner").await;
    assert_eq!(org.creator_user_id, owner.id);
    assert!(org.created_at.is_some());
    for r in [org.id.as_str(), "acme"] {
        let got = c
            .get_org(pb::GetOrgRequest {
                org_ref: r.to_owned(),
            })
            .await
            .expect("get org")
            .into_inner()
            .org
            .expect("org");
        assert_eq!(got, org);
    }
    assert_code(
        c.create_org(pb::CreateOrgRequest {
            name: "acme".to_owned(),
            visibility: pbc::Visibility::Private.into(),
            creator_user_id: String::new(),
        })
        .await,
        Code::AlreadyExists,
        "org \"acme\" already exists",
    );
    assert_code(
        c.create_org(pb::CreateOrgRequest {
            name: "novis".to_owned(),
            visibility: 0,
            creator_user_id: String::new(),
        })
        .await,
        Code::InvalidArgument,
        "visibility",
    );
    let root = c
        .get_project_group(pb::GetProjectGroupRequest {
            project_group_ref: "org/acme".to_owned(),
        })
        .await
        .expect("org root")
        .into_inner()
        .project_group
        .expect("group");
    assert_eq!(root.visibility, i32::from(pbc::Visibility::Public));
    assert_eq!(
        root.parent.as_ref().map(|p| (p.r#type, p.id.clone())),
        Some((i32::from(pbc::ParentType::Org), org.id.clone()))
    );

    // The creator is the first owner.
    let members = |c: &mut Client| {
        let mut c = c.clone();
        async move {
            c.list_org_members(pb::ListOrgMembersRequest {
                org_ref: "acme".to_owned(),
            })
            .await
            .expect("members")
            .into_inner()
            .members
            .into_iter()
            .map(|m| (m.user.map(|u| u.name).unwrap_or_default(), m.role))
            .collect::<Vec<_>>()
        }
    };
    let owner_role = i32::from(pbc::MemberRole::Owner);
    let member_role = i32::from(pbc::MemberRole::Member);
    assert_eq!(
        members(&mut c).await,
        vec![("owner".to_owned(), owner_role)]
    );

    let add = |user: &str, role: pbc::MemberRole| pb::AddOrgMemberRequest {
        org_ref: org.id.clone(),
        user_ref: user.to_owned(),
        role: role.into(),
    };
    let added = c
        .add_org_member(add("dev", pbc::MemberRole::Member))
        .await
        .expect("add")
        .into_inner();
    assert!(added.created);
    let m = added.org_member.expect("member");
    assert_eq!(
        (m.org_id.as_str(), m.user_id.as_str()),
        (org.id.as_str(), dev.id.as_str())
    );
    let changed = c
        .add_org_member(add(&dev.id, pbc::MemberRole::Owner))
        .await
        .expect("change role")
        .into_inner();
    assert!(!changed.created, "an existing member's role is set");
    assert_eq!(changed.org_member.map(|m| m.id), Some(m.id.clone()));
    assert_eq!(
        members(&mut c).await,
        vec![
            ("dev".to_owned(), owner_role),
            ("owner".to_owned(), owner_role)
        ]
    );
    c.add_org_member(add("dev", pbc::MemberRole::Member))
        .await
        .expect("back to member");
    assert_code(
        c.add_org_member(add("dev", pbc::MemberRole::Unspecified))
            .await,
        Code::InvalidArgument,
        "role",
    );
    assert_code(
        c.add_org_member(add("ghost", pbc::MemberRole::Member))
            .await,
        Code::NotFound,
        "user \"ghost\"",
    );

    // The user's orgs, by org name, with the role.
    create_org(&mut c, "beta", "dev").await;
    let orgs = c
        .list_user_orgs(pb::ListUserOrgsRequest {
            user_ref: "dev".to_owned(),
        })
        .await
        .expect("user orgs")
        .into_inner()
        .orgs;
    let orgs: Vec<_> = orgs
        .into_iter()
        .map(|o| (o.org.map(|o| o.name).unwrap_or_default(), o.role))
        .collect();
    assert_eq!(
        orgs,
        vec![
            ("acme".to_owned(), member_role),
            ("beta".to_owned(), owner_role)
        ]
    );

    c.remove_org_member(pb::RemoveOrgMemberRequest {
        org_ref: "acme".to_owned(),
        user_ref: "dev".to_owned(),
    })
    .await
    .expect("remove");
    assert_eq!(
        members(&mut c).await,
        vec![("owner".to_owned(), owner_role)]
    );
    assert_code(
        c.remove_org_member(pb::RemoveOrgMemberRequest {
            org_ref: "acme".to_owned(),
            user_ref: "dev".to_owned(),
        })
        .await,
        Code::NotFound,
        "is not a member",
    );

    // Org listing pages by name.
    for n in ["gamma", "delta"] {
        create_org(&mut c, n, "").await;
    }
    let names: Vec<String> = c
        .list_orgs(pb::ListOrgsRequest {
            start: "acme".to_owned(),
            limit: 2,
            asc: true,
        })
        .await
        .expect("list orgs")
        .into_inner()
        .orgs
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(names, vec!["beta", "delta"]);

    // Deleting the org removes its tree and memberships in one write.
    let g = create_group(&mut c, "team", "org/acme").await;
    let p = create_project(&mut c, "app", "org/acme/team").await;
    c.create_secret(secret_req(pbc::ParentType::Project, &p.id, "s"))
        .await
        .expect("secret");
    c.delete_org(pb::DeleteOrgRequest {
        org_ref: "acme".to_owned(),
    })
    .await
    .expect("delete org");
    assert_code(
        c.get_org(pb::GetOrgRequest {
            org_ref: org.id.clone(),
        })
        .await,
        Code::NotFound,
        "org",
    );
    for gr in [root.id.clone(), g.id.clone(), "org/acme".to_owned()] {
        assert_code(
            c.get_project_group(pb::GetProjectGroupRequest {
                project_group_ref: gr,
            })
            .await,
            Code::NotFound,
            "",
        );
    }
    assert_code(
        c.get_project(pb::GetProjectRequest {
            project_ref: p.id.clone(),
        })
        .await,
        Code::NotFound,
        "project",
    );
    let owner_orgs = c
        .list_user_orgs(pb::ListUserOrgsRequest {
            user_ref: "owner".to_owned(),
        })
        .await
        .expect("user orgs")
        .into_inner()
        .orgs;
    assert!(owner_orgs.is_empty(), "memberships deleted: {owner_orgs:?}");
    // The name is free again.
    create_org(&mut c, "acme", "").await;

    // Deleting a user removes its memberships too.
    c.delete_user(pb::DeleteUserRequest {
        user_ref: "dev".to_owned(),
    })
    .await
    .expect("delete user");
    let beta_members = c
        .list_org_members(pb::ListOrgMembersRequest {
            org_ref: "beta".to_owned(),
        })
        .await
        .expect("members")
        .into_inner()
        .members;
    assert!(beta_members.is_empty(), "{beta_members:?}");
    inst.stop().await;
}
