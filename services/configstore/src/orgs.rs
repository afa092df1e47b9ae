//! Orgs and their members. Creating an org also creates its root project group and makes the
//! creator an owner; deleting it removes its root group tree and memberships in one write.

use crate::error::{Error, Result};
use crate::guards::{self, pair};
use crate::names::validate_entity_name;
use crate::projects::subtree_deletes;
use crate::refs::page;
use crate::store::{Guard, Plan, Store, delete, new_id, put};
use crate::types::*;
use crate::users::page_limit;

/// An org to create.
#[derive(Debug, Clone)]
pub struct NewOrg {
    pub name: String,
    pub visibility: Visibility,
    /// Ref of the first owner; empty creates an org without members (admin use).
    pub creator: String,
}

/// A member with its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgMemberUser {
    pub user: User,
    pub role: MemberRole,
}

impl Store {
    pub fn get_org(&self, r: &str) -> Result<Org> {
        self.read(|s| s.org_by_ref(r).cloned())
    }

    /// Orgs ordered by name, after `start` (exclusive).
    pub fn list_orgs(&self, start: &str, limit: u32, asc: bool) -> Result<Vec<Org>> {
        self.read(|s| {
            Ok(page(&s.org_names, start, page_limit(limit), asc)
                .into_iter()
                .filter_map(|id| s.orgs.get(id).cloned())
                .collect())
        })
    }

    pub async fn create_org(&self, req: NewOrg) -> Result<Org> {
        validate_entity_name("name", &req.name)?;
        self.update(|s| {
            if s.org_names.contains_key(&req.name) {
                return Err(Error::AlreadyExists(format!(
                    "org {:?} already exists",
                    req.name
                )));
            }
            let mut guard = Guard::new();
            guard.exclusive(guards::ORG_NAME, &req.name);
            let creator = if req.creator.is_empty() {
                None
            } else {
                Some(s.user_by_ref(&req.creator)?)
            };
            let org = Org {
                id: new_id(),
                name: req.name.clone(),
                visibility: req.visibility,
                creator_user_id: creator.map(|u| u.id.clone()).unwrap_or_default(),
                created_at: chrono::Utc::now(),
            };
            let root = ProjectGroup {
                id: new_id(),
                name: String::new(),
                parent: Parent {
                    kind: ParentType::Org,
                    id: org.id.clone(),
                },
                visibility: org.visibility,
            };
            let mut actions = vec![
                put(data_type::ORG, &org.id, &org)?,
                put(data_type::PROJECT_GROUP, &root.id, &root)?,
            ];
            if let Some(u) = creator {
                let member = OrgMember {
                    id: new_id(),
                    org_id: org.id.clone(),
                    user_id: u.id.clone(),
                    member_role: MemberRole::Owner,
                };
                guard
                    .shared(guards::USER_ID, &u.id)
                    .touch(guards::USER_CONTENT, &u.id);
                actions.push(put(data_type::ORG_MEMBER, &member.id, &member)?);
            }
            Ok(Plan {
                guard,
                actions,
                output: org,
            })
        })
        .await
    }

    /// Deletes the org with its root group tree and memberships in one write.
    pub async fn delete_org(&self, r: &str) -> Result<()> {
        self.update(|s| {
            let o = s.org_by_ref(r)?;
            let root = s.root_group_of(&o.id)?;
            let mut guard = Guard::new();
            guard
                .exclusive(guards::ORG_ID, &o.id)
                .exclusive(guards::ORG_NAME, &o.name)
                .exclusive(guards::ORG_CONTENT, &o.id)
                .exclusive(guards::GROUP_ID, &root.id)
                .exclusive(guards::GROUP_CONTENT, &root.id);
            let mut actions = subtree_deletes(s, &root.id);
            actions.extend(
                s.org_members
                    .get(&o.id)
                    .into_iter()
                    .flat_map(|m| m.values())
                    .map(|mid| delete(data_type::ORG_MEMBER, mid)),
            );
            actions.push(delete(data_type::ORG, &o.id));
            Ok(Plan {
                guard,
                actions,
                output: (),
            })
        })
        .await
    }

    /// Members with their roles, by user name.
    pub fn list_org_members(&self, r: &str) -> Result<Vec<OrgMemberUser>> {
        self.read(|s| {
            let o = s.org_by_ref(r)?;
            let mut out: Vec<OrgMemberUser> = s
                .org_members
                .get(&o.id)
                .into_iter()
                .flat_map(|m| m.values())
                .filter_map(|mid| s.members.get(mid))
                .filter_map(|m| {
                    s.users.get(&m.user_id).map(|u| OrgMemberUser {
                        user: u.clone(),
                        role: m.member_role,
                    })
                })
                .collect();
            out.sort_by(|a, b| a.user.name.cmp(&b.user.name));
            Ok(out)
        })
    }

    /// Adds a member or sets an existing member's role; true when added.
    pub async fn add_org_member(
        &self,
        org: &str,
        user: &str,
        role: MemberRole,
    ) -> Result<(OrgMember, bool)> {
        self.update(|s| {
            let o = s.org_by_ref(org)?;
            let u = s.user_by_ref(user)?;
            let existing = s
                .org_members
                .get(&o.id)
                .and_then(|m| m.get(&u.id))
                .and_then(|mid| s.members.get(mid));
            let (member, created) = match existing {
                Some(m) => (
                    OrgMember {
                        member_role: role,
                        ..m.clone()
                    },
                    false,
                ),
                None => (
                    OrgMember {
                        id: new_id(),
                        org_id: o.id.clone(),
                        user_id: u.id.clone(),
                        member_role: role,
                    },
                    true,
                ),
            };
            let mut guard = Guard::new();
            guard
                .exclusive(guards::ORG_MEMBER, &pair(&o.id, &u.id))
                .shared(guards::ORG_ID, &o.id)
                .shared(guards::USER_ID, &u.id)
                .touch(guards::ORG_CONTENT, &o.id)
                .touch(guards::USER_CONTENT, &u.id);
            Ok(Plan {
                guard,
                actions: vec![put(data_type::ORG_MEMBER, &member.id, &member)?],
                output: (member, created),
            })
        })
        .await
    }

    pub async fn remove_org_member(&self, org: &str, user: &str) -> Result<()> {
        self.update(|s| {
            let o = s.org_by_ref(org)?;
            let u = s.user_by_ref(user)?;
            let mid = s
                .org_members
                .get(&o.id)
                .and_then(|m| m.get(&u.id))
                .ok_or_else(|| {
                    Error::NotFound(format!(
                        "user {:?} is not a member of org {:?}",
                        u.name, o.name
                    ))
                })?;
            let mut guard = Guard::new();
            guard.exclusive(guards::ORG_MEMBER, &pair(&o.id, &u.id));
            Ok(Plan {
                guard,
                actions: vec![delete(data_type::ORG_MEMBER, mid)],
                output: (),
            })
        })
        .await
    }
}
