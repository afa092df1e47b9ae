//! Remote sources (git providers) as data. Deleting one still used by a linked account or a
//! project is refused, naming the users and projects.

use crate::error::{Error, Result};
use crate::guards;
use crate::names::{require, validate_entity_name};
use crate::refs::page;
use crate::store::{Guard, Plan, Store, new_id, put};
use crate::types::*;
use crate::users::page_limit;

/// A remote source as a request gives it: every field but the id; the enums are required.
#[derive(Debug, Clone)]
pub struct RemoteSourceInput {
    pub name: String,
    pub kind: Option<RemoteSourceType>,
    pub auth_type: Option<RemoteSourceAuthType>,
    pub api_url: String,
    pub skip_verify: bool,
    pub ssh_host_key: String,
    pub skip_ssh_host_key_check: bool,
    pub oauth2_client_id: String,
    pub oauth2_client_secret: String,
    pub registration_enabled: bool,
    pub login_enabled: bool,
}

impl RemoteSourceInput {
    /// Validates the input and builds the record with `id`.
    fn record(&self, id: String) -> Result<RemoteSource> {
        validate_entity_name("remote_source.name", &self.name)?;
        let kind = self
            .kind
            .ok_or_else(|| Error::InvalidArgument("remote_source.type is required".to_owned()))?;
        let auth_type = self.auth_type.ok_or_else(|| {
            Error::InvalidArgument("remote_source.auth_type is required".to_owned())
        })?;
        require("remote_source.api_url", &self.api_url)?;
        if auth_type == RemoteSourceAuthType::Oauth2 {
            require("remote_source.oauth2_client_id", &self.oauth2_client_id)?;
            require(
                "remote_source.oauth2_client_secret",
                &self.oauth2_client_secret,
            )?;
        }
        Ok(RemoteSource {
            id,
            name: self.name.clone(),
            kind,
            auth_type,
            api_url: self.api_url.clone(),
            skip_verify: self.skip_verify,
            ssh_host_key: self.ssh_host_key.clone(),
            skip_ssh_host_key_check: self.skip_ssh_host_key_check,
            oauth2_client_id: self.oauth2_client_id.clone(),
            oauth2_client_secret: self.oauth2_client_secret.clone(),
            registration_enabled: self.registration_enabled,
            login_enabled: self.login_enabled,
        })
    }
}

impl Store {
    pub fn get_remote_source(&self, r: &str) -> Result<RemoteSource> {
        self.read(|s| s.remote_source_by_ref(r).cloned())
    }

    /// Remote sources ordered by name, after `start` (exclusive).
    pub fn list_remote_sources(
        &self,
        start: &str,
        limit: u32,
        asc: bool,
    ) -> Result<Vec<RemoteSource>> {
        self.read(|s| {
            Ok(page(&s.remote_source_names, start, page_limit(limit), asc)
                .into_iter()
                .filter_map(|id| s.remote_sources.get(id).cloned())
                .collect())
        })
    }

    pub async fn create_remote_source(&self, input: RemoteSourceInput) -> Result<RemoteSource> {
        // Validate once before planning, so a bad request costs no KV round trip.
        input.record(String::new())?;
        self.update(|s| {
            if s.remote_source_names.contains_key(&input.name) {
                return Err(Error::AlreadyExists(format!(
                    "remote source {:?} already exists",
                    input.name
                )));
            }
            let rs = input.record(new_id())?;
            let mut guard = Guard::new();
            guard.exclusive(guards::REMOTE_SOURCE_NAME, &rs.name);
            Ok(Plan {
                guard,
                actions: vec![put(data_type::REMOTE_SOURCE, &rs.id, &rs)?],
                output: rs,
            })
        })
        .await
    }

    /// Replaces every field but the id.
    pub async fn update_remote_source(
        &self,
        r: &str,
        input: RemoteSourceInput,
    ) -> Result<RemoteSource> {
        input.record(String::new())?;
        self.update(|s| {
            let cur = s.remote_source_by_ref(r)?;
            let rs = input.record(cur.id.clone())?;
            let mut guard = Guard::new();
            guard.exclusive(guards::REMOTE_SOURCE_ID, &cur.id);
            if rs.name != cur.name {
                if s.remote_source_names.contains_key(&rs.name) {
                    return Err(Error::AlreadyExists(format!(
                        "remote source {:?} already exists",
                        rs.name
                    )));
                }
                guard
                    .exclusive(guards::REMOTE_SOURCE_NAME, &cur.name)
                    .exclusive(guards::REMOTE_SOURCE_NAME, &rs.name);
            }
            Ok(Plan {
                guard,
                actions: vec![put(data_type::REMOTE_SOURCE, &rs.id, &rs)?],
                output: rs,
            })
        })
        .await
    }

    pub async fn delete_remote_source(&self, r: &str) -> Result<()> {
        self.update(|s| {
            let rs = s.remote_source_by_ref(r)?;
            let mut users: Vec<&str> = s
                .users
                .values()
                .filter(|u| {
                    u.linked_accounts
                        .values()
                        .any(|la| la.remote_source_id == rs.id)
                })
                .map(|u| u.name.as_str())
                .collect();
            users.sort_unstable();
            let mut projects: Vec<String> = s
                .projects
                .values()
                .filter(|p| p.remote_source_id == rs.id)
                .map(|p| s.project_view(p).map(|v| v.path))
                .collect::<Result<_>>()?;
            projects.sort_unstable();
            if !users.is_empty() || !projects.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "remote source {:?} is still used by linked accounts of users {users:?} and by projects {projects:?}",
                    rs.name
                )));
            }
            let mut guard = Guard::new();
            guard
                .exclusive(guards::REMOTE_SOURCE_ID, &rs.id)
                .exclusive(guards::REMOTE_SOURCE_NAME, &rs.name)
                .exclusive(guards::REMOTE_SOURCE_CONTENT, &rs.id);
            Ok(Plan {
                guard,
                actions: vec![crate::store::delete(data_type::REMOTE_SOURCE, &rs.id)],
                output: (),
            })
        })
        .await
    }
}
