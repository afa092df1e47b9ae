//! Users: their root group (created with them), linked accounts and API tokens (data of the
//! user record), lookups by token, linked account and remote user, and the cascade delete.

use crate::error::{Error, Result};
use crate::guards::{self, pair};
use crate::names::{require, validate_entity_name, validate_token_name};
use crate::projects::subtree_deletes;
use crate::readmodel::State;
use crate::refs::page;
use crate::store::{Guard, Plan, Store, delete, new_id, put, random_hex};
use crate::types::*;

/// Default and maximum page sizes of the name-ordered listings (spec 50 §4).
pub const DEFAULT_LIMIT: usize = 25;
pub const MAX_LIMIT: usize = 100;

/// The page size a request asks for: 0 is the default, above the maximum is the maximum.
pub fn page_limit(limit: u32) -> usize {
    match usize::try_from(limit) {
        Ok(0) => DEFAULT_LIMIT,
        Ok(n) => n.min(MAX_LIMIT),
        Err(_) => MAX_LIMIT,
    }
}

/// A linked account as a request gives it (`remote_source` is a ref).
#[derive(Debug, Clone, Default)]
pub struct LinkedAccountInput {
    pub remote_source: String,
    pub account: LinkedAccount,
}

/// A user to create.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub name: String,
    pub admin: bool,
    pub linked_account: Option<LinkedAccountInput>,
}

/// An org with the user's role in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserOrg {
    pub org: Org,
    pub role: MemberRole,
}

fn remote_user_taken(s: &State, rs: &RemoteSource, remote_user_id: &str) -> Result<()> {
    if let Some(uid) = s
        .remote_users
        .get(&(rs.id.clone(), remote_user_id.to_owned()))
    {
        let holder = s.users.get(uid).map_or(uid.as_str(), |u| u.name.as_str());
        return Err(Error::AlreadyExists(format!(
            "remote user {remote_user_id:?} of remote source {:?} is already linked to user {holder:?}",
            rs.name
        )));
    }
    Ok(())
}

impl Store {
    pub fn get_user(&self, r: &str) -> Result<User> {
        self.read(|s| s.user_by_ref(r).cloned())
    }

    /// Users ordered by name, after `start` (exclusive).
    pub fn list_users(&self, start: &str, limit: u32, asc: bool) -> Result<Vec<User>> {
        self.read(|s| {
            Ok(page(&s.user_names, start, page_limit(limit), asc)
                .into_iter()
                .filter_map(|id| s.users.get(id).cloned())
                .collect())
        })
    }

    pub fn get_user_by_token(&self, token: &str) -> Result<User> {
        self.read(|s| {
            s.token_users
                .get(token)
                .filter(|_| !token.is_empty())
                .and_then(|id| s.users.get(id))
                .cloned()
                // The token itself is a credential: never echoed.
                .ok_or_else(|| Error::NotFound("no user holds this token".to_owned()))
        })
    }

    pub fn get_user_by_linked_account(&self, linked_account_id: &str) -> Result<User> {
        self.read(|s| {
            s.linked_account_users
                .get(linked_account_id)
                .and_then(|id| s.users.get(id))
                .cloned()
                .ok_or_else(|| Error::not_found("linked account", linked_account_id))
        })
    }

    pub fn get_user_by_remote_user(
        &self,
        remote_user_id: &str,
        remote_source: &str,
    ) -> Result<User> {
        self.read(|s| {
            let rs = s.remote_source_by_ref(remote_source)?;
            s.remote_users
                .get(&(rs.id.clone(), remote_user_id.to_owned()))
                .and_then(|id| s.users.get(id))
                .cloned()
                .ok_or_else(|| {
                    Error::NotFound(format!(
                        "no user is linked to remote user {remote_user_id:?} of remote source {:?}",
                        rs.name
                    ))
                })
        })
    }

    /// Creates the user, its root project group and, if given, its first linked account, in
    /// one write.
    pub async fn create_user(&self, req: NewUser) -> Result<User> {
        validate_entity_name("name", &req.name)?;
        if let Some(la) = &req.linked_account {
            require("linked_account.remote_source_id", &la.remote_source)?;
            require("linked_account.remote_user_id", &la.account.remote_user_id)?;
        }
        self.update(|s| {
            if s.user_names.contains_key(&req.name) {
                return Err(Error::AlreadyExists(format!(
                    "user {:?} already exists",
                    req.name
                )));
            }
            let mut guard = Guard::new();
            guard.exclusive(guards::USER_NAME, &req.name);
            let mut user = User {
                id: new_id(),
                name: req.name.clone(),
                secret: random_hex()?,
                linked_accounts: Default::default(),
                password_hash: String::new(),
                tokens: Default::default(),
                admin: req.admin,
            };
            if let Some(input) = &req.linked_account {
                let rs = s.remote_source_by_ref(&input.remote_source)?;
                remote_user_taken(s, rs, &input.account.remote_user_id)?;
                let mut la = input.account.clone();
                la.id = new_id();
                la.remote_source_id.clone_from(&rs.id);
                guard
                    .exclusive(guards::LINKED_ACCOUNT, &pair(&rs.id, &la.remote_user_id))
                    .shared(guards::REMOTE_SOURCE_ID, &rs.id)
                    .touch(guards::REMOTE_SOURCE_CONTENT, &rs.id);
                user.linked_accounts.insert(la.id.clone(), la);
            }
            // Users are public: their root group is readable by anyone, like Agola's.
            let root = ProjectGroup {
                id: new_id(),
                name: String::new(),
                parent: Parent {
                    kind: ParentType::User,
                    id: user.id.clone(),
                },
                visibility: Visibility::Public,
            };
            Ok(Plan {
                guard,
                actions: vec![
                    put(data_type::USER, &user.id, &user)?,
                    put(data_type::PROJECT_GROUP, &root.id, &root)?,
                ],
                output: user,
            })
        })
        .await
    }

    /// Renames (empty `name` keeps it) and sets the admin flag.
    pub async fn update_user(&self, r: &str, name: &str, admin: bool) -> Result<User> {
        if !name.is_empty() {
            validate_entity_name("name", name)?;
        }
        self.update(|s| {
            let cur = s.user_by_ref(r)?;
            let mut user = cur.clone();
            user.admin = admin;
            let mut guard = Guard::new();
            guard.exclusive(guards::USER_ID, &cur.id);
            if !name.is_empty() && name != cur.name {
                if s.user_names.contains_key(name) {
                    return Err(Error::AlreadyExists(format!(
                        "user {name:?} already exists"
                    )));
                }
                user.name = name.to_owned();
                guard
                    .exclusive(guards::USER_NAME, &cur.name)
                    .exclusive(guards::USER_NAME, name);
            }
            Ok(Plan {
                guard,
                actions: vec![put(data_type::USER, &user.id, &user)?],
                output: user,
            })
        })
        .await
    }

    /// Deletes the user with its root group tree and memberships in one write.
    pub async fn delete_user(&self, r: &str) -> Result<()> {
        self.update(|s| {
            let u = s.user_by_ref(r)?;
            let root = s.root_group_of(&u.id)?;
            let mut guard = Guard::new();
            guard
                .exclusive(guards::USER_ID, &u.id)
                .exclusive(guards::USER_NAME, &u.name)
                .exclusive(guards::USER_CONTENT, &u.id)
                .exclusive(guards::GROUP_ID, &root.id)
                .exclusive(guards::GROUP_CONTENT, &root.id);
            let mut actions = subtree_deletes(s, &root.id);
            actions.extend(
                s.user_orgs
                    .get(&u.id)
                    .into_iter()
                    .flat_map(|m| m.values())
                    .map(|mid| delete(data_type::ORG_MEMBER, mid)),
            );
            actions.push(delete(data_type::USER, &u.id));
            Ok(Plan {
                guard,
                actions,
                output: (),
            })
        })
        .await
    }

    /// The orgs the user is a member of, by org name.
    pub fn list_user_orgs(&self, r: &str) -> Result<Vec<UserOrg>> {
        self.read(|s| {
            let u = s.user_by_ref(r)?;
            let mut out: Vec<UserOrg> = s
                .user_orgs
                .get(&u.id)
                .into_iter()
                .flat_map(|m| m.values())
                .filter_map(|mid| s.members.get(mid))
                .filter_map(|m| {
                    s.orgs.get(&m.org_id).map(|o| UserOrg {
                        org: o.clone(),
                        role: m.member_role,
                    })
                })
                .collect();
            out.sort_by(|a, b| a.org.name.cmp(&b.org.name));
            Ok(out)
        })
    }

    pub async fn create_user_linked_account(
        &self,
        r: &str,
        input: LinkedAccountInput,
    ) -> Result<LinkedAccount> {
        require("linked_account.remote_source_id", &input.remote_source)?;
        require(
            "linked_account.remote_user_id",
            &input.account.remote_user_id,
        )?;
        self.update(|s| {
            let cur = s.user_by_ref(r)?;
            let rs = s.remote_source_by_ref(&input.remote_source)?;
            remote_user_taken(s, rs, &input.account.remote_user_id)?;
            let mut la = input.account.clone();
            la.id = new_id();
            la.remote_source_id.clone_from(&rs.id);
            let mut user = cur.clone();
            user.linked_accounts.insert(la.id.clone(), la.clone());
            let mut guard = Guard::new();
            guard
                .exclusive(guards::USER_ID, &cur.id)
                .exclusive(guards::LINKED_ACCOUNT, &pair(&rs.id, &la.remote_user_id))
                .shared(guards::REMOTE_SOURCE_ID, &rs.id)
                .touch(guards::REMOTE_SOURCE_CONTENT, &rs.id);
            Ok(Plan {
                guard,
                actions: vec![put(data_type::USER, &user.id, &user)?],
                output: la,
            })
        })
        .await
    }

    /// Replaces every field of a linked account but its id and remote source.
    pub async fn update_user_linked_account(
        &self,
        r: &str,
        linked_account_id: &str,
        input: LinkedAccount,
    ) -> Result<LinkedAccount> {
        require("linked_account.remote_user_id", &input.remote_user_id)?;
        self.update(|s| {
            let cur = s.user_by_ref(r)?;
            let old = cur.linked_accounts.get(linked_account_id).ok_or_else(|| {
                Error::NotFound(format!(
                    "linked account {linked_account_id:?} of user {:?} does not exist",
                    cur.name
                ))
            })?;
            let mut la = input.clone();
            la.id.clone_from(&old.id);
            la.remote_source_id.clone_from(&old.remote_source_id);
            let mut guard = Guard::new();
            guard.exclusive(guards::USER_ID, &cur.id);
            if la.remote_user_id != old.remote_user_id {
                let rs = s.remote_source_by_ref(&old.remote_source_id)?;
                remote_user_taken(s, rs, &la.remote_user_id)?;
                guard
                    .exclusive(
                        guards::LINKED_ACCOUNT,
                        &pair(&old.remote_source_id, &old.remote_user_id),
                    )
                    .exclusive(
                        guards::LINKED_ACCOUNT,
                        &pair(&old.remote_source_id, &la.remote_user_id),
                    )
                    .shared(guards::REMOTE_SOURCE_ID, &rs.id);
            }
            let mut user = cur.clone();
            user.linked_accounts.insert(la.id.clone(), la.clone());
            Ok(Plan {
                guard,
                actions: vec![put(data_type::USER, &user.id, &user)?],
                output: la,
            })
        })
        .await
    }

    pub async fn delete_user_linked_account(&self, r: &str, linked_account_id: &str) -> Result<()> {
        self.update(|s| {
            let cur = s.user_by_ref(r)?;
            let la = cur.linked_accounts.get(linked_account_id).ok_or_else(|| {
                Error::NotFound(format!(
                    "linked account {linked_account_id:?} of user {:?} does not exist",
                    cur.name
                ))
            })?;
            let mut guard = Guard::new();
            guard.exclusive(guards::USER_ID, &cur.id).exclusive(
                guards::LINKED_ACCOUNT,
                &pair(&la.remote_source_id, &la.remote_user_id),
            );
            let mut user = cur.clone();
            user.linked_accounts.remove(linked_account_id);
            Ok(Plan {
                guard,
                actions: vec![put(data_type::USER, &user.id, &user)?],
                output: (),
            })
        })
        .await
    }

    /// Creates a token and returns its value, the only time it is handed out.
    pub async fn create_user_token(&self, r: &str, token_name: &str) -> Result<String> {
        validate_token_name("token_name", token_name)?;
        self.update(|s| {
            let cur = s.user_by_ref(r)?;
            if cur.tokens.contains_key(token_name) {
                return Err(Error::AlreadyExists(format!(
                    "token {token_name:?} of user {:?} already exists",
                    cur.name
                )));
            }
            let value = random_hex()?;
            let mut user = cur.clone();
            user.tokens.insert(token_name.to_owned(), value.clone());
            let mut guard = Guard::new();
            guard.exclusive(guards::USER_ID, &cur.id);
            Ok(Plan {
                guard,
                actions: vec![put(data_type::USER, &user.id, &user)?],
                output: value,
            })
        })
        .await
    }

    pub async fn delete_user_token(&self, r: &str, token_name: &str) -> Result<()> {
        self.update(|s| {
            let cur = s.user_by_ref(r)?;
            if !cur.tokens.contains_key(token_name) {
                return Err(Error::NotFound(format!(
                    "token {token_name:?} of user {:?} does not exist",
                    cur.name
                )));
            }
            let mut user = cur.clone();
            user.tokens.remove(token_name);
            let mut guard = Guard::new();
            guard.exclusive(guards::USER_ID, &cur.id);
            Ok(Plan {
                guard,
                actions: vec![put(data_type::USER, &user.id, &user)?],
                output: (),
            })
        })
        .await
    }
}
