//! Remote sources (git providers): readable by anyone, created, updated and deleted by admins.
//! OAuth2 client secrets are write-only. Logging in or linking accounts through them is not
//! built yet.

use agola_common::ApiError;
use agola_proto::configstore::v1 as cs;
use agola_proto::gateway::v1 as pb;

use crate::auth::Caller;
use crate::backends::Backends;

fn view(r: &cs::RemoteSource) -> pb::RemoteSource {
    pb::RemoteSource {
        id: r.id.clone(),
        name: r.name.clone(),
        r#type: r.r#type,
        auth_type: r.auth_type,
        registration_enabled: r.registration_enabled,
        login_enabled: r.login_enabled,
    }
}

fn answered(r: Option<cs::RemoteSource>) -> Result<pb::RemoteSource, ApiError> {
    r.as_ref()
        .map(view)
        .ok_or_else(|| ApiError::internal("configstore answered no remote source"))
}

async fn get_cs(b: &Backends, r: &str) -> Result<cs::RemoteSource, ApiError> {
    b.cs()?
        .get_remote_source(cs::GetRemoteSourceRequest {
            remote_source_ref: r.to_owned(),
        })
        .await?
        .into_inner()
        .remote_source
        .ok_or_else(|| ApiError::internal("configstore answered no remote source"))
}

/// `GET /remotesources`.
pub async fn list(
    b: &Backends,
    start: String,
    limit: u32,
    asc: bool,
) -> Result<Vec<pb::RemoteSource>, ApiError> {
    let list = b
        .cs()?
        .list_remote_sources(cs::ListRemoteSourcesRequest { start, limit, asc })
        .await?
        .into_inner()
        .remote_sources;
    Ok(list.iter().map(view).collect())
}

/// `GET /remotesources/{ref}`.
pub async fn get(b: &Backends, r: &str) -> Result<pb::RemoteSource, ApiError> {
    Ok(view(&get_cs(b, r).await?))
}

/// `POST /remotesources` (admin).
pub async fn create(
    b: &Backends,
    caller: &Caller,
    req: pb::CreateRemoteSourceRequest,
) -> Result<pb::RemoteSource, ApiError> {
    caller.require_admin()?;
    let r = b
        .cs()?
        .create_remote_source(cs::CreateRemoteSourceRequest {
            remote_source: Some(cs::RemoteSource {
                id: String::new(),
                name: req.name,
                r#type: req.r#type,
                auth_type: req.auth_type,
                api_url: req.api_url,
                skip_verify: req.skip_verify,
                ssh_host_key: req.ssh_host_key,
                skip_ssh_host_key_check: req.skip_ssh_host_key_check,
                oauth2_client_id: req.oauth2_client_id,
                oauth2_client_secret: req.oauth2_client_secret,
                registration_enabled: req.registration_enabled,
                login_enabled: req.login_enabled,
            }),
        })
        .await?
        .into_inner()
        .remote_source;
    answered(r)
}

/// `PUT /remotesources/{ref}` (admin): absent fields are left unchanged.
pub async fn update(
    b: &Backends,
    caller: &Caller,
    req: pb::UpdateRemoteSourceRequest,
) -> Result<pb::RemoteSource, ApiError> {
    caller.require_admin()?;
    let mut r = get_cs(b, &req.remote_source_ref).await?;
    if let Some(v) = req.name {
        r.name = v;
    }
    if let Some(v) = req.api_url {
        r.api_url = v;
    }
    if let Some(v) = req.skip_verify {
        r.skip_verify = v;
    }
    if let Some(v) = req.ssh_host_key {
        r.ssh_host_key = v;
    }
    if let Some(v) = req.skip_ssh_host_key_check {
        r.skip_ssh_host_key_check = v;
    }
    if let Some(v) = req.oauth2_client_id {
        r.oauth2_client_id = v;
    }
    if let Some(v) = req.oauth2_client_secret {
        r.oauth2_client_secret = v;
    }
    if let Some(v) = req.registration_enabled {
        r.registration_enabled = v;
    }
    if let Some(v) = req.login_enabled {
        r.login_enabled = v;
    }
    let id = r.id.clone();
    let r = b
        .cs()?
        .update_remote_source(cs::UpdateRemoteSourceRequest {
            remote_source_ref: id,
            remote_source: Some(r),
        })
        .await?
        .into_inner()
        .remote_source;
    answered(r)
}

/// `DELETE /remotesources/{ref}` (admin).
pub async fn delete(b: &Backends, caller: &Caller, r: &str) -> Result<(), ApiError> {
    caller.require_admin()?;
    b.cs()?
        .delete_remote_source(cs::DeleteRemoteSourceRequest {
            remote_source_ref: r.to_owned(),
        })
        .await?;
    Ok(())
}
