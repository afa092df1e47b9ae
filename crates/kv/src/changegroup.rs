//! Change groups (spec 40 §5): named optimistic-concurrency tokens spanning "validate in a
//! local read model" and "commit in the shared store".
//!
//! A group is a key `<base>changegroups/<name>` whose mod revision moves whenever a guarded
//! write touches the group. A token records the revisions a reader saw; a guarded write
//! commits only if no group moved since and the token is within the compaction window
//! (`<base>changegroupsminrev`), otherwise it fails with Concurrency.

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Compare, CompareOp, Error, Kv, KvExt, Op, RangeRequest, Result, Txn, TxnResponse};

/// The name of the group `<kind>-<value>`: lowercase hex sha256, so it never contains `/`.
pub fn group_name(kind: &str, value: &str) -> String {
    let digest = Sha256::digest(format!("{kind}-{value}").as_bytes());
    hex::encode(digest)
}

/// Validates a group name given by a caller.
pub fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 256 || name.contains('/') {
        return Err(Error::InvalidArgument(format!(
            "invalid change group name {:?}: must be 1 to 256 characters without '/'",
            name.chars().take(64).collect::<String>()
        )));
    }
    Ok(())
}

/// What a reader saw: the store revision and each group's mod revision (0 = never written).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeGroupsUpdateToken {
    pub cur_revision: i64,
    pub change_groups_revisions: BTreeMap<String, i64>,
}

impl ChangeGroupsUpdateToken {
    /// The wire form: base64 of the JSON.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::STANDARD.encode(json)
    }

    /// Parses the wire form; a malformed token is a bad request.
    pub fn decode(s: &str) -> Result<Self> {
        let bad =
            |why: String| Error::InvalidArgument(format!("invalid change groups token: {why}"));
        let json = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|e| bad(e.to_string()))?;
        let token: Self = serde_json::from_slice(&json).map_err(|e| bad(e.to_string()))?;
        for name in token.change_groups_revisions.keys() {
            validate_name(name)?;
        }
        Ok(token)
    }
}

/// The change groups of one namespace (`datamanager/` with window 1000, `scheduler/` with
/// window 100).
#[derive(Debug, Clone)]
pub struct ChangeGroups {
    base: String,
    window: i64,
}

impl ChangeGroups {
    pub fn new(base: impl Into<String>, window: i64) -> Self {
        ChangeGroups {
            base: base.into(),
            window,
        }
    }

    fn group_key(&self, name: &str) -> String {
        format!("{}changegroups/{name}", self.base)
    }

    fn minrev_key(&self) -> String {
        format!("{}changegroupsminrev", self.base)
    }

    /// Creates the min-revision key if missing (idempotent).
    pub async fn init(&self, kv: &dyn Kv) -> Result<()> {
        let key = self.minrev_key();
        kv.txn(
            Txn::new()
                .when([Compare::absent(key.as_str())])
                .and_then([Op::put(key.as_str(), Vec::new())]),
        )
        .await?;
        Ok(())
    }

    /// A token for `names`, read straight from the store at one revision.
    pub async fn token(&self, kv: &dyn Kv, names: &[String]) -> Result<ChangeGroupsUpdateToken> {
        for n in names {
            validate_name(n)?;
        }
        let resp = kv
            .txn(Txn::new().and_then(names.iter().map(|n| Op::get(self.group_key(n)))))
            .await?;
        let mut token = ChangeGroupsUpdateToken {
            cur_revision: resp.revision,
            change_groups_revisions: BTreeMap::new(),
        };
        for (i, n) in names.iter().enumerate() {
            let rev = resp
                .range(i)
                .and_then(|r| r.kvs.first())
                .map_or(0, |kv| kv.mod_revision);
            token.change_groups_revisions.insert(n.clone(), rev);
        }
        Ok(token)
    }

    /// The compares and ops a guarded write adds to its txn.
    pub fn guard(&self, token: &ChangeGroupsUpdateToken) -> (Vec<Compare>, Vec<Op>) {
        let mut compares = Vec::with_capacity(token.change_groups_revisions.len() + 1);
        let mut ops = Vec::with_capacity(token.change_groups_revisions.len());
        for (name, rev) in &token.change_groups_revisions {
            let key = self.group_key(name);
            // A never-written group has mod revision 0 in both backends.
            compares.push(Compare::mod_revision(key.as_str(), CompareOp::Equal, *rev));
            ops.push(Op::put(key, Vec::new()));
        }
        if !token.change_groups_revisions.is_empty() {
            // A token older than the window could see a compacted group as 0: reject it.
            compares.push(Compare::mod_revision(
                self.minrev_key(),
                CompareOp::Less,
                token.cur_revision + self.window,
            ));
        }
        (compares, ops)
    }

    /// The token after a guarded write that committed at `resp.revision`.
    pub fn next_token(
        &self,
        token: &ChangeGroupsUpdateToken,
        resp: &TxnResponse,
    ) -> ChangeGroupsUpdateToken {
        ChangeGroupsUpdateToken {
            cur_revision: resp.revision,
            change_groups_revisions: token
                .change_groups_revisions
                .keys()
                .map(|k| (k.clone(), resp.revision))
                .collect(),
        }
    }

    /// Writes `ops` guarded by `token`: Concurrency if any group moved or the token is stale.
    pub async fn guarded_write(
        &self,
        kv: &dyn Kv,
        token: &ChangeGroupsUpdateToken,
        ops: Vec<Op>,
    ) -> Result<ChangeGroupsUpdateToken> {
        let (compares, mut group_ops) = self.guard(token);
        group_ops.extend(ops);
        let resp = kv
            .txn(Txn::new().when(compares).and_then(group_ops))
            .await?;
        if !resp.succeeded {
            return Err(Error::Concurrency(
                "a change group was updated since it was read".to_owned(),
            ));
        }
        Ok(self.next_token(token, &resp))
    }

    /// Moves the window forward and deletes groups older than it (run periodically under a
    /// lock): CAS-touch the min-revision key, then delete group keys with mod revision below
    /// the new revision minus the window.
    pub async fn compact(&self, kv: &dyn Kv) -> Result<()> {
        let key = self.minrev_key();
        let cur = kv.get(&key).await?;
        let compare = match &cur {
            Some(c) => Compare::mod_revision(key.as_str(), CompareOp::Equal, c.mod_revision),
            None => Compare::absent(key.as_str()),
        };
        let resp = kv
            .txn(
                Txn::new()
                    .when([compare])
                    .and_then([Op::put(key.as_str(), Vec::new())]),
            )
            .await?;
        if !resp.succeeded {
            // Another instance compacted concurrently.
            return Ok(());
        }
        let threshold = resp.revision - self.window;
        let groups = kv
            .get_prefix(&format!("{}changegroups/", self.base), 1000)
            .await?;
        for g in groups.kvs {
            if g.mod_revision < threshold {
                kv.txn(
                    Txn::new()
                        .when([Compare::mod_revision(
                            g.key.as_str(),
                            CompareOp::Equal,
                            g.mod_revision,
                        )])
                        .and_then([Op::delete(g.key.as_str())]),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Reads the current revision of one group (0 = never written or compacted away).
    pub async fn revision(&self, kv: &dyn Kv, name: &str) -> Result<i64> {
        validate_name(name)?;
        Ok(kv
            .range(RangeRequest::key(self.group_key(name)))
            .await?
            .kvs
            .first()
            .map_or(0, |kv| kv.mod_revision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sha256_hex() {
        let n = group_name("projectpath", "org/a/b");
        assert_eq!(n.len(), 64);
        assert!(
            n.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(n, group_name("projectpath", "org/a/c"));
    }

    #[test]
    fn token_wire_form_round_trips_and_rejects_garbage() {
        let mut t = ChangeGroupsUpdateToken {
            cur_revision: 42,
            ..Default::default()
        };
        t.change_groups_revisions.insert(group_name("k", "v"), 7);
        assert_eq!(
            ChangeGroupsUpdateToken::decode(&t.encode()).expect("decode"),
            t
        );
        assert!(ChangeGroupsUpdateToken::decode("not base64!").is_err());
        let bad = base64::engine::general_purpose::STANDARD
            .encode(br#"{"cur_revision":1,"change_groups_revisions":{"a/b":1}}"#);
        assert!(ChangeGroupsUpdateToken::decode(&bad).is_err());
    }
}
