//! The local read model (spec 50 §5, 40 §7): every record in memory with the indexes lookups
//! and listings need (by id, name, parent, token value, linked account), fed by the
//! datamanager's follower with every WAL in commit order.
//!
//! It is disposable: it starts empty at each start, the follower loads the latest checkpoint
//! and the WALs after it, then applies each WAL as soon as it is committed. The KV revision it
//! reached is published so writers can wait for their own write (read-your-writes) and
//! validators for the change groups they are about to guard with (see `store`).
//!
//! A full resync (first load, KV reset, epoch change) is built aside and swapped in whole, so
//! readers never see a half-loaded model.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use agola_datamanager::follower::{Batch, ReadModel};
use agola_datamanager::{Action, ActionType};
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::types::*;

/// Inserts `id` under `outer` → `name` in a two-level index.
fn index_insert(
    index: &mut HashMap<String, BTreeMap<String, String>>,
    outer: &str,
    name: &str,
    id: &str,
) {
    index
        .entry(outer.to_owned())
        .or_default()
        .insert(name.to_owned(), id.to_owned());
}

/// Removes `outer` → `name` only if it still points at `id` (a corrupted store with two
/// records under one name must not lose the other one's entry).
fn index_remove(
    index: &mut HashMap<String, BTreeMap<String, String>>,
    outer: &str,
    name: &str,
    id: &str,
) {
    if let Some(inner) = index.get_mut(outer) {
        if inner.get(name).is_some_and(|v| v == id) {
            inner.remove(name);
        }
        if inner.is_empty() {
            index.remove(outer);
        }
    }
}

fn name_remove(index: &mut BTreeMap<String, String>, name: &str, id: &str) {
    if index.get(name).is_some_and(|v| v == id) {
        index.remove(name);
    }
}

/// Every record with its indexes, at one point of the WAL sequence.
#[derive(Debug, Default)]
pub struct State {
    /// KV revision reached (0 while only object storage was applied).
    pub(crate) revision: i64,
    /// Last WAL sequence applied; `None` before anything was loaded.
    wal_sequence: Option<String>,

    pub(crate) users: HashMap<String, User>,
    pub(crate) user_names: BTreeMap<String, String>,
    /// Token value → user id.
    pub(crate) token_users: HashMap<String, String>,
    /// Linked account id → user id.
    pub(crate) linked_account_users: HashMap<String, String>,
    /// (remote source id, remote user id) → user id.
    pub(crate) remote_users: HashMap<(String, String), String>,

    pub(crate) orgs: HashMap<String, Org>,
    pub(crate) org_names: BTreeMap<String, String>,
    pub(crate) members: HashMap<String, OrgMember>,
    /// Org id → user id → member id.
    pub(crate) org_members: HashMap<String, BTreeMap<String, String>>,
    /// User id → org id → member id.
    pub(crate) user_orgs: HashMap<String, BTreeMap<String, String>>,

    pub(crate) groups: HashMap<String, ProjectGroup>,
    /// Owner (user or org) id → root group id.
    pub(crate) root_groups: HashMap<String, String>,
    /// Group id → name → subgroup id.
    pub(crate) subgroups: HashMap<String, BTreeMap<String, String>>,
    pub(crate) projects: HashMap<String, Project>,
    /// Group id → name → project id.
    pub(crate) group_projects: HashMap<String, BTreeMap<String, String>>,

    pub(crate) remote_sources: HashMap<String, RemoteSource>,
    pub(crate) remote_source_names: BTreeMap<String, String>,

    pub(crate) secrets: HashMap<String, Secret>,
    /// Parent (group or project) id → name → secret id.
    pub(crate) parent_secrets: HashMap<String, BTreeMap<String, String>>,
    pub(crate) variables: HashMap<String, Variable>,
    /// Parent (group or project) id → name → variable id.
    pub(crate) parent_variables: HashMap<String, BTreeMap<String, String>>,
}

fn decode<T: DeserializeOwned>(data_type: &str, id: &str, data: &[u8]) -> Option<T> {
    match serde_json::from_slice(data) {
        Ok(v) => Some(v),
        Err(e) => {
            // The follower must not stop on one bad record: everything else stays served.
            tracing::error!(data_type, id, error = %e, "undecodable record skipped");
            None
        }
    }
}

impl State {
    fn apply_batch(&mut self, batch: &Batch) {
        for a in &batch.actions {
            self.apply(a);
        }
        self.wal_sequence = Some(batch.wal_sequence.clone());
        if batch.revision > 0 {
            self.revision = batch.revision;
        }
    }

    /// Applies one action: updates are delete-then-insert so every index follows.
    pub(crate) fn apply(&mut self, a: &Action) {
        let id = a.id.as_str();
        match a.data_type.as_str() {
            data_type::USER => {
                self.remove_user(id);
                if a.action_type == ActionType::Put
                    && let Some(mut v) = decode::<User>(&a.data_type, id, &a.data)
                {
                    v.id = id.to_owned();
                    self.insert_user(v);
                }
            }
            data_type::ORG => {
                self.remove_org(id);
                if a.action_type == ActionType::Put
                    && let Some(mut v) = decode::<Org>(&a.data_type, id, &a.data)
                {
                    v.id = id.to_owned();
                    self.org_names.insert(v.name.clone(), v.id.clone());
                    self.orgs.insert(v.id.clone(), v);
                }
            }
            data_type::ORG_MEMBER => {
                self.remove_member(id);
                if a.action_type == ActionType::Put
                    && let Some(mut v) = decode::<OrgMember>(&a.data_type, id, &a.data)
                {
                    v.id = id.to_owned();
                    index_insert(&mut self.org_members, &v.org_id, &v.user_id, &v.id);
                    index_insert(&mut self.user_orgs, &v.user_id, &v.org_id, &v.id);
                    self.members.insert(v.id.clone(), v);
                }
            }
            data_type::PROJECT_GROUP => {
                self.remove_group(id);
                if a.action_type == ActionType::Put
                    && let Some(mut v) = decode::<ProjectGroup>(&a.data_type, id, &a.data)
                {
                    v.id = id.to_owned();
                    if v.is_root() {
                        self.root_groups.insert(v.parent.id.clone(), v.id.clone());
                    } else {
                        index_insert(&mut self.subgroups, &v.parent.id, &v.name, &v.id);
                    }
                    self.groups.insert(v.id.clone(), v);
                }
            }
            data_type::PROJECT => {
                self.remove_project(id);
                if a.action_type == ActionType::Put
                    && let Some(mut v) = decode::<Project>(&a.data_type, id, &a.data)
                {
                    v.id = id.to_owned();
                    index_insert(&mut self.group_projects, &v.parent.id, &v.name, &v.id);
                    self.projects.insert(v.id.clone(), v);
                }
            }
            data_type::REMOTE_SOURCE => {
                if let Some(old) = self.remote_sources.remove(id) {
                    name_remove(&mut self.remote_source_names, &old.name, id);
                }
                if a.action_type == ActionType::Put
                    && let Some(mut v) = decode::<RemoteSource>(&a.data_type, id, &a.data)
                {
                    v.id = id.to_owned();
                    self.remote_source_names
                        .insert(v.name.clone(), v.id.clone());
                    self.remote_sources.insert(v.id.clone(), v);
                }
            }
            data_type::SECRET => {
                if let Some(old) = self.secrets.remove(id) {
                    index_remove(&mut self.parent_secrets, &old.parent.id, &old.name, id);
                }
                if a.action_type == ActionType::Put
                    && let Some(mut v) = decode::<Secret>(&a.data_type, id, &a.data)
                {
                    v.id = id.to_owned();
                    index_insert(&mut self.parent_secrets, &v.parent.id, &v.name, &v.id);
                    self.secrets.insert(v.id.clone(), v);
                }
            }
            data_type::VARIABLE => {
                if let Some(old) = self.variables.remove(id) {
                    index_remove(&mut self.parent_variables, &old.parent.id, &old.name, id);
                }
                if a.action_type == ActionType::Put
                    && let Some(mut v) = decode::<Variable>(&a.data_type, id, &a.data)
                {
                    v.id = id.to_owned();
                    index_insert(&mut self.parent_variables, &v.parent.id, &v.name, &v.id);
                    self.variables.insert(v.id.clone(), v);
                }
            }
            other => tracing::warn!(data_type = other, id, "unknown data type ignored"),
        }
    }

    fn insert_user(&mut self, u: User) {
        self.user_names.insert(u.name.clone(), u.id.clone());
        for value in u.tokens.values() {
            self.token_users.insert(value.clone(), u.id.clone());
        }
        for la in u.linked_accounts.values() {
            self.linked_account_users
                .insert(la.id.clone(), u.id.clone());
            self.remote_users.insert(
                (la.remote_source_id.clone(), la.remote_user_id.clone()),
                u.id.clone(),
            );
        }
        self.users.insert(u.id.clone(), u);
    }

    fn remove_user(&mut self, id: &str) {
        let Some(u) = self.users.remove(id) else {
            return;
        };
        name_remove(&mut self.user_names, &u.name, id);
        for value in u.tokens.values() {
            if self.token_users.get(value).is_some_and(|v| v == id) {
                self.token_users.remove(value);
            }
        }
        for la in u.linked_accounts.values() {
            if self
                .linked_account_users
                .get(&la.id)
                .is_some_and(|v| v == id)
            {
                self.linked_account_users.remove(&la.id);
            }
            let key = (la.remote_source_id.clone(), la.remote_user_id.clone());
            if self.remote_users.get(&key).is_some_and(|v| v == id) {
                self.remote_users.remove(&key);
            }
        }
    }

    fn remove_org(&mut self, id: &str) {
        if let Some(o) = self.orgs.remove(id) {
            name_remove(&mut self.org_names, &o.name, id);
        }
    }

    fn remove_member(&mut self, id: &str) {
        if let Some(m) = self.members.remove(id) {
            index_remove(&mut self.org_members, &m.org_id, &m.user_id, id);
            index_remove(&mut self.user_orgs, &m.user_id, &m.org_id, id);
        }
    }

    fn remove_group(&mut self, id: &str) {
        let Some(g) = self.groups.remove(id) else {
            return;
        };
        if g.is_root() {
            if self.root_groups.get(&g.parent.id).is_some_and(|v| v == id) {
                self.root_groups.remove(&g.parent.id);
            }
        } else {
            index_remove(&mut self.subgroups, &g.parent.id, &g.name, id);
        }
    }

    fn remove_project(&mut self, id: &str) {
        if let Some(p) = self.projects.remove(id) {
            index_remove(&mut self.group_projects, &p.parent.id, &p.name, id);
        }
    }
}

struct Shared {
    state: RwLock<State>,
    /// The revision of `state`, for waiters.
    revision: watch::Sender<i64>,
    /// True once a full load was swapped in.
    ready: watch::Sender<bool>,
    /// Bumped to ask for a full reload (after an import replaced the data).
    resyncs: watch::Sender<u64>,
}

/// Handle on the read model; clones share it.
#[derive(Clone)]
pub struct Model {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("revision", &*self.shared.revision.borrow())
            .finish_non_exhaustive()
    }
}

impl Default for Model {
    fn default() -> Self {
        Self::new()
    }
}

impl Model {
    pub fn new() -> Self {
        Model {
            shared: Arc::new(Shared {
                state: RwLock::new(State::default()),
                revision: watch::channel(0).0,
                ready: watch::channel(false).0,
                resyncs: watch::channel(0).0,
            }),
        }
    }

    /// Runs `f` on the current state under the read lock (never held across an await).
    /// Unavailable until the first full load is in.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> Result<T> {
        if !*self.shared.ready.borrow() {
            return Err(Error::Unavailable(
                "the read model is still loading".to_owned(),
            ));
        }
        let state = self
            .shared
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(f(&state))
    }

    /// Waits until the model reached KV revision `revision`; false after `timeout`.
    pub async fn wait_revision(&self, revision: i64, timeout: Duration) -> bool {
        let mut rx = self.shared.revision.subscribe();
        matches!(
            tokio::time::timeout(timeout, rx.wait_for(|r| *r >= revision)).await,
            Ok(Ok(_))
        )
    }

    /// Waits for the first full load.
    pub async fn wait_ready(&self) {
        let mut rx = self.shared.ready.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|r| *r).await;
    }

    /// The follower side of the model.
    pub fn feeder(&self) -> Feeder {
        Feeder {
            model: self.clone(),
            staging: None,
            resync_seen: *self.shared.resyncs.borrow(),
        }
    }

    /// Asks for a full reload: the follower is restarted and finds no position. Used when
    /// the data was replaced under the WAL sequence (an import), which the follower's
    /// incremental catch-up cannot always tell apart from a resumable position.
    pub fn request_resync(&self) {
        self.shared.resyncs.send_modify(|n| *n += 1);
    }

    /// Notified by [`Self::request_resync`].
    pub fn resync_requests(&self) -> watch::Receiver<u64> {
        self.shared.resyncs.subscribe()
    }

    fn publish(&self, revision: i64) {
        self.shared.revision.send_replace(revision);
    }
}

/// What the datamanager's follower drives.
pub struct Feeder {
    model: Model,
    /// A full load in progress, swapped in when the follower reaches KV.
    staging: Option<State>,
    /// The resync request already honoured (a newer one hides the position).
    resync_seen: u64,
}

#[async_trait]
impl ReadModel for Feeder {
    async fn position(&mut self) -> agola_datamanager::Result<Option<String>> {
        if *self.model.shared.resyncs.borrow() != self.resync_seen {
            // No position: the follower resets and reloads everything.
            return Ok(None);
        }
        if let Some(staging) = &self.staging {
            return Ok(staging.wal_sequence.clone());
        }
        Ok(self
            .model
            .shared
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .wal_sequence
            .clone())
    }

    async fn reset(&mut self) -> agola_datamanager::Result<()> {
        self.resync_seen = *self.model.shared.resyncs.borrow();
        self.staging = Some(State::default());
        Ok(())
    }

    async fn apply(&mut self, batch: Batch) -> agola_datamanager::Result<()> {
        if let Some(staging) = self.staging.as_mut() {
            staging.apply_batch(&batch);
            // The catch-up ends with the batch read from KV (revision > 0): the load is whole.
            if batch.revision > 0
                && let Some(loaded) = self.staging.take()
            {
                let revision = loaded.revision;
                *self
                    .model
                    .shared
                    .state
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = loaded;
                self.model.publish(revision);
                self.model.shared.ready.send_replace(true);
                tracing::info!(revision, "configstore read model loaded");
            }
            return Ok(());
        }
        let revision = {
            let mut state = self
                .model
                .shared
                .state
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            state.apply_batch(&batch);
            state.revision
        };
        self.model.publish(revision);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, token: &str) -> Action {
        let u = User {
            id: "u1".to_owned(),
            name: name.to_owned(),
            secret: String::new(),
            linked_accounts: Default::default(),
            password_hash: String::new(),
            tokens: [("t".to_owned(), token.to_owned())].into(),
            admin: false,
        };
        Action::put(data_type::USER, "u1", serde_json::to_vec(&u).expect("json"))
    }

    #[test]
    fn updates_move_every_index_and_deletes_clear_them() {
        let mut s = State::default();
        s.apply(&user("a", "tok1"));
        s.apply(&user("b", "tok2"));
        assert_eq!(s.user_names.keys().collect::<Vec<_>>(), vec!["b"]);
        assert_eq!(s.token_users.keys().collect::<Vec<_>>(), vec!["tok2"]);
        s.apply(&Action::delete(data_type::USER, "u1"));
        assert!(s.users.is_empty() && s.user_names.is_empty() && s.token_users.is_empty());
    }

    #[test]
    fn an_undecodable_record_is_skipped_and_drops_the_old_one() {
        let mut s = State::default();
        s.apply(&user("a", "tok1"));
        s.apply(&Action::put(data_type::USER, "u1", b"{not json".to_vec()));
        assert!(s.users.is_empty() && s.user_names.is_empty());
        // Unknown data types are ignored.
        s.apply(&Action::put("other", "x", b"{}".to_vec()));
    }

    #[test]
    fn a_group_move_reindexes_its_parent() {
        let mut s = State::default();
        let g = |parent: &str| {
            let g = ProjectGroup {
                id: "g".to_owned(),
                name: "n".to_owned(),
                parent: Parent {
                    kind: ParentType::ProjectGroup,
                    id: parent.to_owned(),
                },
                visibility: Visibility::Public,
            };
            Action::put(
                data_type::PROJECT_GROUP,
                "g",
                serde_json::to_vec(&g).expect("json"),
            )
        };
        s.apply(&g("p1"));
        s.apply(&g("p2"));
        assert!(!s.subgroups.contains_key("p1"));
        assert_eq!(s.subgroups["p2"]["n"], "g");
    }
}
