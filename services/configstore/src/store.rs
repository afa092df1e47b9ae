//! Validated writes: plan on the read model, guard with change groups, commit one WAL, wait
//! until the read model applied it.
//!
//! A write is a *plan*: a pure function of the read model state returning the actions of one
//! WAL, the change groups guarding the facts it validated, and the answer. [`Store::update`]
//! runs it so that validation and token agree (spec 40 §5, §7):
//!
//! 1. plan on the current state (revision `R`), which names the groups;
//! 2. take the token for those groups from the datamanager (whose in-memory view tracks group
//!    creation *and* compaction, so a token never carries a revision of a deleted group key);
//! 3. the plan is valid for the token if `R` ≥ every group revision in it: the state then holds
//!    every write that ever touched those groups up to the token, and a later one moves a
//!    group and fails the commit. Otherwise wait until the model reaches them and plan again;
//! 4. commit; a Concurrency failure re-runs everything (up to 5 retries with backoff), so of
//!    concurrent same-name creations one wins and the others see its record: AlreadyExists;
//! 5. wait until this instance's read model applied the commit (read-your-writes, ≤ 5 s).
//!
//! Guards come in three strengths (a [`Guard`]): *exclusive* groups are compared and bumped
//! (the datamanager's own change groups), *shared* groups are only compared (extra compares:
//! "this parent still exists where I saw it", without serializing its children), and *touched*
//! groups are only bumped (extra puts: "the contents below this group changed", which makes a
//! concurrent cascade delete of an ancestor re-read its subtree). Extra compares and puts use
//! the datamanager's change-group keys `datamanager/changegroups/<name>` (spec 40 §6.2), so
//! the datamanager's watcher, compaction and tokens cover them like any other group.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use agola_datamanager::{Action, ChangeGroupsUpdateToken, DataManager, group_name};
use agola_kv::{Compare, CompareOp, Kv, Op};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::readmodel::{Model, State};

/// Concurrency failures re-validated and retried (spec 40 §7).
const MAX_RETRIES: u32 = 5;
/// How long a write waits for its WAL to reach the read model before answering anyway.
const READ_YOUR_WRITES_WAIT: Duration = Duration::from_secs(5);
/// How long a validation waits for the read model to reach the token's groups.
const VALIDATION_WAIT: Duration = Duration::from_secs(5);
/// Plans re-run when the groups they name keep changing between plan and token.
const MAX_REPLANS: usize = 5;

/// KV key of a change group (the datamanager's layout, spec 40 §6.2).
fn group_key(name: &str) -> String {
    format!("datamanager/changegroups/{name}")
}

/// The change groups guarding one write, as `<kind>-<value>` pairs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Guard {
    exclusive: BTreeSet<String>,
    shared: BTreeSet<String>,
    touched: BTreeSet<String>,
}

impl Guard {
    pub fn new() -> Self {
        Self::default()
    }

    /// Compared and bumped: the write changes the fact this group stands for.
    pub fn exclusive(&mut self, kind: &str, value: &str) -> &mut Self {
        self.exclusive.insert(group_name(kind, value));
        self
    }

    /// Only compared: the write relies on the fact but does not change it.
    pub fn shared(&mut self, kind: &str, value: &str) -> &mut Self {
        self.shared.insert(group_name(kind, value));
        self
    }

    /// Only bumped: the write changes the fact, but concurrent writers doing the same do not
    /// conflict (children added under one group); whoever validated the fact compares it.
    pub fn touch(&mut self, kind: &str, value: &str) -> &mut Self {
        self.touched.insert(group_name(kind, value));
        self
    }

    /// Resolves overlaps: compared and bumped is exclusive.
    fn normalized(&self) -> Guard {
        let mut exclusive = self.exclusive.clone();
        exclusive.extend(self.shared.intersection(&self.touched).cloned());
        Guard {
            shared: self.shared.difference(&exclusive).cloned().collect(),
            touched: self.touched.difference(&exclusive).cloned().collect(),
            exclusive,
        }
    }

    /// The groups a token is needed for (compared ones).
    fn compared(&self) -> Vec<String> {
        self.exclusive.union(&self.shared).cloned().collect()
    }
}

/// One planned write.
#[derive(Debug)]
pub struct Plan<T> {
    pub guard: Guard,
    pub actions: Vec<Action>,
    pub output: T,
}

/// A put action of a record.
pub fn put<T: Serialize>(data_type: &str, id: &str, record: &T) -> Result<Action> {
    let data = serde_json::to_vec(record)
        .map_err(|e| Error::Internal(format!("cannot encode {data_type} {id}: {e}")))?;
    Ok(Action::put(data_type, id, data))
}

pub fn delete(data_type: &str, id: &str) -> Action {
    Action::delete(data_type, id)
}

/// A new random id.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A random secret value: 256 bits from the OS, hex.
pub fn random_hex() -> Result<String> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf)
        .map_err(|e| Error::Unavailable(format!("no randomness from the os: {e}")))?;
    Ok(hex::encode(buf))
}

/// The configstore's data: the datamanager for writes, the read model for reads.
#[derive(Debug, Clone)]
pub struct Store {
    dm: DataManager,
    model: Model,
    kv: Arc<dyn Kv>,
}

impl Store {
    /// `kv` is the namespace `dm` runs in.
    pub fn new(dm: DataManager, model: Model, kv: Arc<dyn Kv>) -> Self {
        Store { dm, model, kv }
    }

    pub fn kv(&self) -> &Arc<dyn Kv> {
        &self.kv
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn datamanager(&self) -> &DataManager {
        &self.dm
    }

    /// A read on the read model.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> Result<T>) -> Result<T> {
        if self.dm.in_maintenance() {
            return Err(Error::Unavailable(
                "the configstore is in maintenance mode".to_owned(),
            ));
        }
        self.model.read(f)?
    }

    /// Runs a planned write (see the module docs).
    pub async fn update<T>(&self, mut plan: impl FnMut(&State) -> Result<Plan<T>>) -> Result<T> {
        let mut backoff = Duration::from_millis(10);
        let mut attempt = 0;
        loop {
            match self.try_update(&mut plan).await {
                Err(Error::Concurrency(m)) if attempt < MAX_RETRIES => {
                    attempt += 1;
                    tracing::debug!(attempt, reason = %m, "write conflicted, re-validating");
                    tokio::time::sleep(jitter(backoff)).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                other => return other,
            }
        }
    }

    async fn try_update<T>(&self, plan: &mut impl FnMut(&State) -> Result<Plan<T>>) -> Result<T> {
        let (planned, token) = self.plan_with_token(plan).await?;
        let guard = planned.guard.normalized();
        let exclusive: BTreeSet<&String> = guard.exclusive.iter().collect();
        let mut write_token = ChangeGroupsUpdateToken {
            cur_revision: token.cur_revision,
            ..Default::default()
        };
        let mut compares = Vec::new();
        for (name, rev) in &token.change_groups_revisions {
            if exclusive.contains(name) {
                write_token
                    .change_groups_revisions
                    .insert(name.clone(), *rev);
            } else {
                compares.push(Compare::mod_revision(
                    group_key(name),
                    CompareOp::Equal,
                    *rev,
                ));
            }
        }
        if write_token.change_groups_revisions.is_empty() {
            // Without an exclusive group the datamanager would not check the token window,
            // and a shared compare against a compacted group could pass on a stale token.
            return Err(Error::Internal(
                "a write needs at least one exclusive change group".to_owned(),
            ));
        }
        let ops = guard
            .touched
            .iter()
            .map(|n| Op::put(group_key(n), Vec::new()))
            .collect();
        let written = self
            .dm
            .write_wal_with(planned.actions, Some(&write_token), compares, ops)
            .await?;
        if !self
            .model
            .wait_revision(written.cur_revision, READ_YOUR_WRITES_WAIT)
            .await
        {
            tracing::warn!(
                revision = written.cur_revision,
                "write not applied to the read model in time: reads may lag it"
            );
        }
        Ok(planned.output)
    }

    /// A plan and a token it is valid for (module docs, steps 1-3).
    async fn plan_with_token<T>(
        &self,
        plan: &mut impl FnMut(&State) -> Result<Plan<T>>,
    ) -> Result<(Plan<T>, ChangeGroupsUpdateToken)> {
        let (mut planned, mut revision) = self.plan_once(plan)?;
        for _ in 0..MAX_REPLANS {
            let names = planned.guard.normalized().compared();
            let token = self.dm.token(&names).await;
            let needed = token
                .change_groups_revisions
                .values()
                .copied()
                .max()
                .unwrap_or(0);
            if revision >= needed {
                return Ok((planned, token));
            }
            if !self.model.wait_revision(needed, VALIDATION_WAIT).await {
                return Err(Error::Unavailable(format!(
                    "the read model did not reach revision {needed} in time"
                )));
            }
            (planned, revision) = self.plan_once(plan)?;
            if planned.guard.normalized().compared() == names && revision >= needed {
                return Ok((planned, token));
            }
        }
        Err(Error::Concurrency(
            "the data kept changing while validating".to_owned(),
        ))
    }

    fn plan_once<T>(
        &self,
        plan: &mut impl FnMut(&State) -> Result<Plan<T>>,
    ) -> Result<(Plan<T>, i64)> {
        self.read(|s| Ok((plan(s)?, s.revision)))
    }
}

/// `d` plus up to 50 % random jitter, so retrying writers spread out.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let max = u32::try_from(d.as_millis() / 2).unwrap_or(u32::MAX).max(1);
    d + Duration::from_millis(u64::from(nanos % max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_overlaps_resolve_to_exclusive() {
        let mut g = Guard::new();
        g.exclusive("a", "1")
            .shared("a", "1")
            .shared("b", "2")
            .touch("b", "2")
            .touch("c", "3")
            .shared("d", "4");
        let n = g.normalized();
        assert_eq!(n.exclusive.len(), 2);
        assert!(n.exclusive.contains(&group_name("b", "2")));
        assert_eq!(n.shared, BTreeSet::from([group_name("d", "4")]));
        assert_eq!(n.touched, BTreeSet::from([group_name("c", "3")]));
        assert_eq!(n.compared().len(), 3);
    }

    #[test]
    fn random_values_are_long_and_distinct() {
        let a = random_hex().expect("random");
        let b = random_hex().expect("random");
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
