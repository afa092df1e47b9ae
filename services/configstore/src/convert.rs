//! Conversions between the wire types (`Pb*`) and the domain types. Wire data is never
//! trusted: unknown enum values and out-of-range times are InvalidArgument naming the field.

use agola_proto::common::v1 as pbc;
use agola_proto::configstore::v1 as pb;
use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::orgs::OrgMemberUser;
use crate::projects::ProjectInput;
use crate::refs::{GroupView, ParentRef, ProjectView, SecretView, VariableView};
use crate::remotesources::RemoteSourceInput;
use crate::secrets::{SecretInput, VariableInput};
use crate::types::*;
use crate::users::{LinkedAccountInput, UserOrg};

fn bad_enum(field: &str, v: i32) -> Error {
    Error::InvalidArgument(format!("invalid {field}: unknown value {v}"))
}

pub fn timestamp(t: &DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

pub fn from_timestamp(t: &prost_types::Timestamp, field: &str) -> Result<DateTime<Utc>> {
    u32::try_from(t.nanos)
        .ok()
        .and_then(|n| DateTime::from_timestamp(t.seconds, n))
        .ok_or_else(|| Error::InvalidArgument(format!("invalid {field}: out of range")))
}

// --- enums -----------------------------------------------------------------------------------

/// `None` for UNSPECIFIED.
pub fn visibility_from_pb(v: i32, field: &str) -> Result<Option<Visibility>> {
    match pbc::Visibility::try_from(v) {
        Ok(pbc::Visibility::Unspecified) => Ok(None),
        Ok(pbc::Visibility::Public) => Ok(Some(Visibility::Public)),
        Ok(pbc::Visibility::Private) => Ok(Some(Visibility::Private)),
        Err(_) => Err(bad_enum(field, v)),
    }
}

pub fn visibility_to_pb(v: Visibility) -> i32 {
    match v {
        Visibility::Public => pbc::Visibility::Public,
        Visibility::Private => pbc::Visibility::Private,
    }
    .into()
}

pub fn parent_type_from_pb(v: i32, field: &str) -> Result<Option<ParentType>> {
    match pbc::ParentType::try_from(v) {
        Ok(pbc::ParentType::Unspecified) => Ok(None),
        Ok(pbc::ParentType::User) => Ok(Some(ParentType::User)),
        Ok(pbc::ParentType::Org) => Ok(Some(ParentType::Org)),
        Ok(pbc::ParentType::Projectgroup) => Ok(Some(ParentType::ProjectGroup)),
        Ok(pbc::ParentType::Project) => Ok(Some(ParentType::Project)),
        Err(_) => Err(bad_enum(field, v)),
    }
}

/// The parent type of a secret/variable request: required.
pub fn owner_type_from_pb(v: i32) -> Result<ParentType> {
    parent_type_from_pb(v, "parent_type")?
        .ok_or_else(|| Error::InvalidArgument("parent_type is required".to_owned()))
}

pub fn parent_type_to_pb(v: ParentType) -> i32 {
    match v {
        ParentType::User => pbc::ParentType::User,
        ParentType::Org => pbc::ParentType::Org,
        ParentType::ProjectGroup => pbc::ParentType::Projectgroup,
        ParentType::Project => pbc::ParentType::Project,
    }
    .into()
}

pub fn member_role_from_pb(v: i32, field: &str) -> Result<MemberRole> {
    match pbc::MemberRole::try_from(v) {
        Ok(pbc::MemberRole::Owner) => Ok(MemberRole::Owner),
        Ok(pbc::MemberRole::Member) => Ok(MemberRole::Member),
        Ok(pbc::MemberRole::Unspecified) => {
            Err(Error::InvalidArgument(format!("{field} is required")))
        }
        Err(_) => Err(bad_enum(field, v)),
    }
}

pub fn member_role_to_pb(v: MemberRole) -> i32 {
    match v {
        MemberRole::Owner => pbc::MemberRole::Owner,
        MemberRole::Member => pbc::MemberRole::Member,
    }
    .into()
}

fn config_type_from_pb(v: i32, field: &str) -> Result<Option<RemoteRepositoryConfigType>> {
    match pbc::RemoteRepositoryConfigType::try_from(v) {
        Ok(pbc::RemoteRepositoryConfigType::Unspecified) => Ok(None),
        Ok(pbc::RemoteRepositoryConfigType::Manual) => Ok(Some(RemoteRepositoryConfigType::Manual)),
        Ok(pbc::RemoteRepositoryConfigType::Remotesource) => {
            Ok(Some(RemoteRepositoryConfigType::RemoteSource))
        }
        Err(_) => Err(bad_enum(field, v)),
    }
}

fn config_type_to_pb(v: RemoteRepositoryConfigType) -> i32 {
    match v {
        RemoteRepositoryConfigType::Manual => pbc::RemoteRepositoryConfigType::Manual,
        RemoteRepositoryConfigType::RemoteSource => pbc::RemoteRepositoryConfigType::Remotesource,
    }
    .into()
}

fn rs_type_from_pb(v: i32, field: &str) -> Result<Option<RemoteSourceType>> {
    match pbc::RemoteSourceType::try_from(v) {
        Ok(pbc::RemoteSourceType::Unspecified) => Ok(None),
        Ok(pbc::RemoteSourceType::Gitea) => Ok(Some(RemoteSourceType::Gitea)),
        Ok(pbc::RemoteSourceType::Github) => Ok(Some(RemoteSourceType::Github)),
        Ok(pbc::RemoteSourceType::Gitlab) => Ok(Some(RemoteSourceType::Gitlab)),
        Err(_) => Err(bad_enum(field, v)),
    }
}

fn rs_type_to_pb(v: RemoteSourceType) -> i32 {
    match v {
        RemoteSourceType::Gitea => pbc::RemoteSourceType::Gitea,
        RemoteSourceType::Github => pbc::RemoteSourceType::Github,
        RemoteSourceType::Gitlab => pbc::RemoteSourceType::Gitlab,
    }
    .into()
}

fn rs_auth_from_pb(v: i32, field: &str) -> Result<Option<RemoteSourceAuthType>> {
    match pbc::RemoteSourceAuthType::try_from(v) {
        Ok(pbc::RemoteSourceAuthType::Unspecified) => Ok(None),
        Ok(pbc::RemoteSourceAuthType::Password) => Ok(Some(RemoteSourceAuthType::Password)),
        Ok(pbc::RemoteSourceAuthType::Oauth2) => Ok(Some(RemoteSourceAuthType::Oauth2)),
        Err(_) => Err(bad_enum(field, v)),
    }
}

fn rs_auth_to_pb(v: RemoteSourceAuthType) -> i32 {
    match v {
        RemoteSourceAuthType::Password => pbc::RemoteSourceAuthType::Password,
        RemoteSourceAuthType::Oauth2 => pbc::RemoteSourceAuthType::Oauth2,
    }
    .into()
}

fn secret_type_from_pb(v: i32, field: &str) -> Result<Option<SecretType>> {
    match pbc::SecretType::try_from(v) {
        Ok(pbc::SecretType::Unspecified) => Ok(None),
        Ok(pbc::SecretType::Internal) => Ok(Some(SecretType::Internal)),
        Err(_) => Err(bad_enum(field, v)),
    }
}

fn secret_type_to_pb(v: SecretType) -> i32 {
    match v {
        SecretType::Internal => pbc::SecretType::Internal,
    }
    .into()
}

// --- requests → domain -----------------------------------------------------------------------

/// A request's parent; `None` when absent or without a ref.
pub fn parent_ref(p: Option<&pb::Parent>, field: &str) -> Result<Option<ParentRef>> {
    let Some(p) = p else { return Ok(None) };
    let kind = parent_type_from_pb(p.r#type, &format!("{field}.type"))?;
    if p.id.is_empty() {
        return Ok(None);
    }
    Ok(Some(ParentRef {
        kind,
        reference: p.id.clone(),
    }))
}

/// A required message field.
pub fn required<'a, T>(v: Option<&'a T>, field: &str) -> Result<&'a T> {
    v.ok_or_else(|| Error::InvalidArgument(format!("{field} is required")))
}

pub fn project_input(p: &pb::Project) -> Result<ProjectInput> {
    Ok(ProjectInput {
        name: p.name.clone(),
        parent: parent_ref(p.parent.as_ref(), "project.parent")?,
        visibility: visibility_from_pb(p.visibility, "project.visibility")?,
        config_type: config_type_from_pb(
            p.remote_repository_config_type,
            "project.remote_repository_config_type",
        )?,
        remote_source: p.remote_source_id.clone(),
        linked_account_id: p.linked_account_id.clone(),
        repository_id: p.repository_id.clone(),
        repository_path: p.repository_path.clone(),
        ssh_private_key: p.ssh_private_key.clone(),
        webhook_secret: p.webhook_secret.clone(),
        skip_ssh_host_key_check: p.skip_ssh_host_key_check,
        pass_vars_to_forked_pr: p.pass_vars_to_forked_pr,
        repository_url: p.repository_url.clone(),
        ssh_host_key: p.ssh_host_key.clone(),
    })
}

pub fn linked_account_from_pb(la: &pb::LinkedAccount, field: &str) -> Result<LinkedAccount> {
    Ok(LinkedAccount {
        id: String::new(),
        remote_source_id: String::new(),
        remote_user_id: la.remote_user_id.clone(),
        remote_user_name: la.remote_user_name.clone(),
        remote_user_avatar_url: la.remote_user_avatar_url.clone(),
        user_access_token: la.user_access_token.clone(),
        oauth2_access_token: la.oauth2_access_token.clone(),
        oauth2_refresh_token: la.oauth2_refresh_token.clone(),
        oauth2_access_token_expires_at: la
            .oauth2_access_token_expires_at
            .as_ref()
            .map(|t| from_timestamp(t, &format!("{field}.oauth2_access_token_expires_at")))
            .transpose()?,
    })
}

pub fn linked_account_input(la: &pb::LinkedAccount, field: &str) -> Result<LinkedAccountInput> {
    Ok(LinkedAccountInput {
        remote_source: la.remote_source_id.clone(),
        account: linked_account_from_pb(la, field)?,
    })
}

pub fn remote_source_input(rs: &pb::RemoteSource) -> Result<RemoteSourceInput> {
    Ok(RemoteSourceInput {
        name: rs.name.clone(),
        kind: rs_type_from_pb(rs.r#type, "remote_source.type")?,
        auth_type: rs_auth_from_pb(rs.auth_type, "remote_source.auth_type")?,
        api_url: rs.api_url.clone(),
        skip_verify: rs.skip_verify,
        ssh_host_key: rs.ssh_host_key.clone(),
        skip_ssh_host_key_check: rs.skip_ssh_host_key_check,
        oauth2_client_id: rs.oauth2_client_id.clone(),
        oauth2_client_secret: rs.oauth2_client_secret.clone(),
        registration_enabled: rs.registration_enabled,
        login_enabled: rs.login_enabled,
    })
}

pub fn secret_input(s: &pb::Secret) -> Result<SecretInput> {
    Ok(SecretInput {
        name: s.name.clone(),
        kind: secret_type_from_pb(s.r#type, "secret.type")?,
        data: s.data.clone().into_iter().collect(),
    })
}

fn conditions_from_pb(c: &pbc::WhenConditions) -> WhenConditions {
    WhenConditions {
        include: c.include.clone(),
        exclude: c.exclude.clone(),
    }
}

fn conditions_to_pb(c: &WhenConditions) -> pbc::WhenConditions {
    pbc::WhenConditions {
        include: c.include.clone(),
        exclude: c.exclude.clone(),
    }
}

pub fn variable_input(v: &pb::Variable) -> Result<VariableInput> {
    Ok(VariableInput {
        name: v.name.clone(),
        values: v
            .values
            .iter()
            .map(|x| VariableValue {
                secret_name: x.secret_name.clone(),
                secret_var: x.secret_var.clone(),
                when: x.when.as_ref().map(|w| When {
                    branch: w.branch.as_ref().map(conditions_from_pb),
                    tag: w.tag.as_ref().map(conditions_from_pb),
                    reference: w.r#ref.as_ref().map(conditions_from_pb),
                }),
            })
            .collect(),
    })
}

// --- domain → responses ----------------------------------------------------------------------

fn parent_to_pb(p: &Parent) -> pb::Parent {
    pb::Parent {
        r#type: parent_type_to_pb(p.kind),
        id: p.id.clone(),
    }
}

pub fn linked_account_to_pb(la: &LinkedAccount) -> pb::LinkedAccount {
    pb::LinkedAccount {
        id: la.id.clone(),
        remote_source_id: la.remote_source_id.clone(),
        remote_user_id: la.remote_user_id.clone(),
        remote_user_name: la.remote_user_name.clone(),
        remote_user_avatar_url: la.remote_user_avatar_url.clone(),
        user_access_token: la.user_access_token.clone(),
        oauth2_access_token: la.oauth2_access_token.clone(),
        oauth2_refresh_token: la.oauth2_refresh_token.clone(),
        oauth2_access_token_expires_at: la.oauth2_access_token_expires_at.as_ref().map(timestamp),
    }
}

pub fn user_to_pb(u: &User) -> pb::User {
    pb::User {
        id: u.id.clone(),
        name: u.name.clone(),
        secret: u.secret.clone(),
        linked_accounts: u
            .linked_accounts
            .iter()
            .map(|(k, v)| (k.clone(), linked_account_to_pb(v)))
            .collect(),
        password_hash: u.password_hash.clone(),
        tokens: u.tokens.clone().into_iter().collect(),
        admin: u.admin,
    }
}

pub fn org_to_pb(o: &Org) -> pb::Org {
    pb::Org {
        id: o.id.clone(),
        name: o.name.clone(),
        visibility: visibility_to_pb(o.visibility),
        creator_user_id: o.creator_user_id.clone(),
        created_at: Some(timestamp(&o.created_at)),
    }
}

pub fn org_member_to_pb(m: &OrgMember) -> pb::OrgMember {
    pb::OrgMember {
        id: m.id.clone(),
        org_id: m.org_id.clone(),
        user_id: m.user_id.clone(),
        member_role: member_role_to_pb(m.member_role),
    }
}

pub fn user_org_to_pb(o: &UserOrg) -> pb::UserOrg {
    pb::UserOrg {
        org: Some(org_to_pb(&o.org)),
        role: member_role_to_pb(o.role),
    }
}

pub fn org_member_user_to_pb(m: &OrgMemberUser) -> pb::OrgMemberUser {
    pb::OrgMemberUser {
        user: Some(user_to_pb(&m.user)),
        role: member_role_to_pb(m.role),
    }
}

pub fn group_to_pb(v: &GroupView) -> pb::ProjectGroup {
    pb::ProjectGroup {
        id: v.group.id.clone(),
        name: v.group.name.clone(),
        parent: Some(parent_to_pb(&v.group.parent)),
        visibility: visibility_to_pb(v.group.visibility),
        path: v.path.clone(),
        parent_path: v.parent_path.clone(),
    }
}

pub fn project_to_pb(v: &ProjectView) -> pb::Project {
    let p = &v.project;
    pb::Project {
        id: p.id.clone(),
        name: p.name.clone(),
        parent: Some(parent_to_pb(&p.parent)),
        visibility: visibility_to_pb(p.visibility),
        remote_repository_config_type: config_type_to_pb(p.remote_repository_config_type),
        remote_source_id: p.remote_source_id.clone(),
        linked_account_id: p.linked_account_id.clone(),
        repository_id: p.repository_id.clone(),
        repository_path: p.repository_path.clone(),
        ssh_private_key: p.ssh_private_key.clone(),
        webhook_secret: p.webhook_secret.clone(),
        skip_ssh_host_key_check: p.skip_ssh_host_key_check,
        pass_vars_to_forked_pr: p.pass_vars_to_forked_pr,
        repository_url: p.repository_url.clone(),
        ssh_host_key: p.ssh_host_key.clone(),
        path: v.path.clone(),
        parent_path: v.parent_path.clone(),
    }
}

pub fn remote_source_to_pb(rs: &RemoteSource) -> pb::RemoteSource {
    pb::RemoteSource {
        id: rs.id.clone(),
        name: rs.name.clone(),
        r#type: rs_type_to_pb(rs.kind),
        auth_type: rs_auth_to_pb(rs.auth_type),
        api_url: rs.api_url.clone(),
        skip_verify: rs.skip_verify,
        ssh_host_key: rs.ssh_host_key.clone(),
        skip_ssh_host_key_check: rs.skip_ssh_host_key_check,
        oauth2_client_id: rs.oauth2_client_id.clone(),
        oauth2_client_secret: rs.oauth2_client_secret.clone(),
        registration_enabled: rs.registration_enabled,
        login_enabled: rs.login_enabled,
    }
}

pub fn secret_to_pb(v: &SecretView) -> pb::Secret {
    pb::Secret {
        id: v.secret.id.clone(),
        name: v.secret.name.clone(),
        parent: Some(parent_to_pb(&v.secret.parent)),
        r#type: secret_type_to_pb(v.secret.kind),
        data: v.secret.data.clone().into_iter().collect(),
        parent_path: v.parent_path.clone(),
    }
}

pub fn variable_to_pb(v: &VariableView) -> pb::Variable {
    pb::Variable {
        id: v.variable.id.clone(),
        name: v.variable.name.clone(),
        parent: Some(parent_to_pb(&v.variable.parent)),
        values: v
            .variable
            .values
            .iter()
            .map(|x| pbc::VariableValue {
                secret_name: x.secret_name.clone(),
                secret_var: x.secret_var.clone(),
                when: x.when.as_ref().map(|w| pbc::When {
                    branch: w.branch.as_ref().map(conditions_to_pb),
                    tag: w.tag.as_ref().map(conditions_to_pb),
                    r#ref: w.reference.as_ref().map(conditions_to_pb),
                }),
            })
            .collect(),
        parent_path: v.parent_path.clone(),
    }
}
