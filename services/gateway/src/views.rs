//! Configstore entities → public views. No view carries a secret value (secret data, token
//! values, ssh private keys, webhook secrets).

use agola_proto::configstore::v1 as cs;
use agola_proto::gateway::v1 as pb;

pub fn user(u: &cs::User) -> pb::User {
    let mut token_names: Vec<String> = u.tokens.keys().cloned().collect();
    token_names.sort();
    let mut linked_accounts: Vec<pb::LinkedAccount> = u
        .linked_accounts
        .values()
        .map(|la| pb::LinkedAccount {
            id: la.id.clone(),
            remote_source_id: la.remote_source_id.clone(),
            remote_user_name: la.remote_user_name.clone(),
            remote_user_avatar_url: la.remote_user_avatar_url.clone(),
        })
        .collect();
    linked_accounts.sort_by(|a, b| a.id.cmp(&b.id));
    pb::User {
        id: u.id.clone(),
        name: u.name.clone(),
        admin: u.admin,
        token_names,
        linked_accounts,
    }
}

pub fn org(o: &cs::Org) -> pb::Org {
    pb::Org {
        id: o.id.clone(),
        name: o.name.clone(),
        visibility: o.visibility,
    }
}

pub fn project_group(g: &cs::ProjectGroup) -> pb::ProjectGroup {
    pb::ProjectGroup {
        id: g.id.clone(),
        name: g.name.clone(),
        path: g.path.clone(),
        parent_path: g.parent_path.clone(),
        visibility: g.visibility,
    }
}

pub fn project(p: &cs::Project) -> pb::Project {
    pb::Project {
        id: p.id.clone(),
        name: p.name.clone(),
        path: p.path.clone(),
        parent_path: p.parent_path.clone(),
        visibility: p.visibility,
        remote_repository_config_type: p.remote_repository_config_type,
        remote_source_id: p.remote_source_id.clone(),
        linked_account_id: p.linked_account_id.clone(),
        repository_path: p.repository_path.clone(),
        repository_url: p.repository_url.clone(),
        ssh_host_key: p.ssh_host_key.clone(),
        skip_ssh_host_key_check: p.skip_ssh_host_key_check,
        pass_vars_to_forked_pr: p.pass_vars_to_forked_pr,
    }
}

pub fn secret(s: &cs::Secret) -> pb::Secret {
    pb::Secret {
        id: s.id.clone(),
        name: s.name.clone(),
        parent_path: s.parent_path.clone(),
        r#type: s.r#type,
    }
}

pub fn variable(v: &cs::Variable) -> pb::Variable {
    pb::Variable {
        id: v.id.clone(),
        name: v.name.clone(),
        parent_path: v.parent_path.clone(),
        values: v.values.clone(),
    }
}
