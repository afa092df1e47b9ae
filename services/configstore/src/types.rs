//! The stored records (spec 50 §1): one datamanager data type each, JSON values keyed by id.
//! Enums are the lowercase strings of spec 10 so stored data reads the same as Agola's.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Datamanager data type names.
pub mod data_type {
    pub const USER: &str = "user";
    pub const ORG: &str = "org";
    pub const ORG_MEMBER: &str = "orgmember";
    pub const PROJECT_GROUP: &str = "projectgroup";
    pub const PROJECT: &str = "project";
    pub const REMOTE_SOURCE: &str = "remotesource";
    pub const SECRET: &str = "secret";
    pub const VARIABLE: &str = "variable";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Public,
    Private,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    Owner,
    Member,
}

/// Kind of the object owning a group, project, secret or variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParentType {
    User,
    Org,
    ProjectGroup,
    Project,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Parent {
    #[serde(rename = "type")]
    pub kind: ParentType,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub name: String,
    /// Internal secret of the user (e.g. for signing), generated at creation.
    #[serde(default)]
    pub secret: String,
    /// Linked account id → linked account.
    #[serde(default)]
    pub linked_accounts: BTreeMap<String, LinkedAccount>,
    #[serde(default)]
    pub password_hash: String,
    /// Token name → token value.
    #[serde(default)]
    pub tokens: BTreeMap<String, String>,
    #[serde(default)]
    pub admin: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LinkedAccount {
    pub id: String,
    pub remote_source_id: String,
    pub remote_user_id: String,
    pub remote_user_name: String,
    pub remote_user_avatar_url: String,
    pub user_access_token: String,
    pub oauth2_access_token: String,
    pub oauth2_refresh_token: String,
    pub oauth2_access_token_expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Org {
    pub id: String,
    pub name: String,
    pub visibility: Visibility,
    /// Empty when an admin created the org without an owner.
    #[serde(default)]
    pub creator_user_id: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgMember {
    pub id: String,
    pub org_id: String,
    pub user_id: String,
    pub member_role: MemberRole,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectGroup {
    pub id: String,
    /// Empty for root groups (their path is the owner's).
    #[serde(default)]
    pub name: String,
    /// `user`/`org` for root groups, else `projectgroup`.
    pub parent: Parent,
    pub visibility: Visibility,
}

impl ProjectGroup {
    pub fn is_root(&self) -> bool {
        matches!(self.parent.kind, ParentType::User | ParentType::Org)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RemoteRepositoryConfigType {
    Manual,
    RemoteSource,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    pub id: String,
    pub name: String,
    /// Always a `projectgroup`.
    pub parent: Parent,
    pub visibility: Visibility,
    pub remote_repository_config_type: RemoteRepositoryConfigType,
    #[serde(default)]
    pub remote_source_id: String,
    #[serde(default)]
    pub linked_account_id: String,
    #[serde(default)]
    pub repository_id: String,
    #[serde(default)]
    pub repository_path: String,
    #[serde(default)]
    pub ssh_private_key: String,
    #[serde(default)]
    pub webhook_secret: String,
    #[serde(default)]
    pub skip_ssh_host_key_check: bool,
    #[serde(default)]
    pub pass_vars_to_forked_pr: bool,
    /// `manual` projects: any git URL the system can read.
    #[serde(default)]
    pub repository_url: String,
    /// `manual` projects: known_hosts line(s) of the repository host.
    #[serde(default)]
    pub ssh_host_key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RemoteSourceType {
    Gitea,
    Github,
    Gitlab,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RemoteSourceAuthType {
    Password,
    Oauth2,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteSource {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: RemoteSourceType,
    pub auth_type: RemoteSourceAuthType,
    pub api_url: String,
    #[serde(default)]
    pub skip_verify: bool,
    #[serde(default)]
    pub ssh_host_key: String,
    #[serde(default)]
    pub skip_ssh_host_key_check: bool,
    #[serde(default)]
    pub oauth2_client_id: String,
    #[serde(default)]
    pub oauth2_client_secret: String,
    #[serde(default)]
    pub registration_enabled: bool,
    #[serde(default)]
    pub login_enabled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretType {
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    pub id: String,
    pub name: String,
    /// A `projectgroup` or a `project`.
    pub parent: Parent,
    #[serde(rename = "type")]
    pub kind: SecretType,
    pub data: BTreeMap<String, String>,
}

/// Patterns of one ref kind (spec 60 §8.4).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WhenConditions {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

/// A `when` filter; absent parts match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct When {
    pub branch: Option<WhenConditions>,
    pub tag: Option<WhenConditions>,
    #[serde(rename = "ref")]
    pub reference: Option<WhenConditions>,
}

/// One candidate value of a variable: `data[secret_var]` of the secret `secret_name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariableValue {
    pub secret_name: String,
    pub secret_var: String,
    #[serde(default)]
    pub when: Option<When>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variable {
    pub id: String,
    pub name: String,
    /// A `projectgroup` or a `project`.
    pub parent: Parent,
    pub values: Vec<VariableValue>,
}
