//! Stored formats: actions, WAL records, data entries, data statuses (spec 40 §6.2).

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

mod b64 {
    use super::*;
    pub fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(data))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionType {
    Put,
    Delete,
}

/// One change of a WAL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub action_type: ActionType,
    pub data_type: String,
    pub id: String,
    #[serde(with = "b64", default)]
    pub data: Vec<u8>,
}

impl Action {
    pub fn put(data_type: impl Into<String>, id: impl Into<String>, data: Vec<u8>) -> Self {
        Action {
            action_type: ActionType::Put,
            data_type: data_type.into(),
            id: id.into(),
            data,
        }
    }
    pub fn delete(data_type: impl Into<String>, id: impl Into<String>) -> Self {
        Action {
            action_type: ActionType::Delete,
            data_type: data_type.into(),
            id: id.into(),
            data: Vec::new(),
        }
    }
}

/// Validates names used in paths and keys: data types and ids.
pub fn validate_action(a: &Action) -> Result<()> {
    let ok_type = !a.data_type.is_empty()
        && a.data_type.len() <= 64
        && a.data_type
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !ok_type {
        return Err(Error::BadRequest(format!(
            "invalid data type {:?}: use 1 to 64 of a-z, 0-9, '_' and '-'",
            a.data_type
        )));
    }
    if a.id.is_empty() || a.id.len() > 1024 || a.id.contains('\n') || a.id.contains('\0') {
        return Err(Error::BadRequest(format!(
            "invalid {} id {:?}: must be 1 to 1024 bytes without newline or NUL",
            a.data_type,
            a.id.chars().take(64).collect::<String>()
        )));
    }
    Ok(())
}

/// Serializes actions as the WAL payload: one JSON action per line.
pub fn encode_payload(actions: &[Action]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for a in actions {
        serde_json::to_writer(&mut out, a)
            .map_err(|e| Error::BadRequest(format!("cannot encode action: {e}")))?;
        out.push(b'\n');
    }
    Ok(out)
}

pub fn decode_payload(bytes: &[u8]) -> Result<Vec<Action>> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice(l)
                .map_err(|e| Error::Corrupted(format!("undecodable wal action: {e}")))
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WalStatus {
    Committed,
    CommittedStorage,
    Checkpointed,
}

/// KV record `datamanager/wals/<walSeq>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalHeader {
    pub wal_data_file_id: String,
    pub wal_status: WalStatus,
    pub wal_sequence: String,
    pub previous_wal_sequence: String,
}

/// KV record `datamanager/walsdata`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalsData {
    pub last_committed_wal_sequence: String,
}

/// Object `wals/status/<walSeq>.committed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalStatusFile {
    pub wal_data_file_id: String,
    pub previous_wal_sequence: String,
}

/// A data file reference of a status: entries up to `last_entry_id` (inclusive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataStatusFile {
    pub id: String,
    pub last_entry_id: String,
}

/// Object `data/<dataSeq>.status`: the files making up one checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataStatus {
    pub data_sequence: String,
    /// Last WAL included (empty when none, e.g. after an import).
    pub wal_sequence: String,
    pub files: BTreeMap<String, Vec<DataStatusFile>>,
}

/// One line of a data file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataEntry {
    pub id: String,
    pub data_type: String,
    #[serde(with = "b64")]
    pub data: Vec<u8>,
}

/// Object `data/<type>/<file>.index`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFileIndex {
    pub index: BTreeMap<String, u64>,
}

pub fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Corrupted(format!("cannot encode: {e}")))
}

pub fn from_json<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupted(format!("undecodable {what}: {e}")))
}
