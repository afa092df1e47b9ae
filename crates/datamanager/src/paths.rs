//! KV keys and object storage paths (spec 40 §6.2).

/// Every datamanager key lives under this prefix of the service's KV namespace.
pub const KV_PREFIX: &str = "datamanager/";
pub const WALS: &str = "datamanager/wals/";
pub const WALS_DATA: &str = "datamanager/walsdata";
pub const WAL_SEQ: &str = "datamanager/walseq";
pub const CHECKPOINT_SEQ: &str = "datamanager/checkpointseq";
pub const LAST_COMMITTED_STORAGE_WAL_SEQ: &str = "datamanager/lastcommittedstoragewalseq";
pub const LAST_DATA_STATUS: &str = "datamanager/lastdatastatus";
pub const CHANGE_GROUPS: &str = "datamanager/changegroups/";
pub const PING: &str = "datamanager/ping";
pub const LOCKS: &str = "datamanager/locks/";
pub const MAINTENANCE: &str = "maintenance";

pub fn wal_key(seq: &str) -> String {
    format!("{WALS}{seq}")
}

/// Object storage paths under the datamanager's base path.
#[derive(Debug, Clone)]
pub struct Paths {
    base: String,
}

impl Paths {
    pub fn new(base: &str) -> Self {
        Paths {
            base: base.trim_matches('/').to_owned(),
        }
    }
    pub fn wal_data_dir(&self) -> String {
        format!("{}/wals/data/", self.base)
    }
    pub fn wal_data(&self, id: &str) -> String {
        format!("{}/wals/data/{id}", self.base)
    }
    pub fn wal_status_dir(&self) -> String {
        format!("{}/wals/status/", self.base)
    }
    pub fn wal_status(&self, seq: &str) -> String {
        format!("{}/wals/status/{seq}.committed", self.base)
    }
    pub fn data_dir(&self) -> String {
        format!("{}/data/", self.base)
    }
    pub fn data_status(&self, data_seq: &str) -> String {
        format!("{}/data/{data_seq}.status", self.base)
    }
    pub fn data_file(&self, data_type: &str, id: &str) -> String {
        format!("{}/data/{data_type}/{id}.data", self.base)
    }
    pub fn data_index(&self, data_type: &str, id: &str) -> String {
        format!("{}/data/{data_type}/{id}.index", self.base)
    }
}

/// The sequence a WAL status path names (`.../wals/status/<seq>.committed`).
pub fn seq_of_wal_status(path: &str) -> Option<&str> {
    path.rsplit('/').next()?.strip_suffix(".committed")
}

/// The data sequence a status path names (`.../data/<seq>.status`).
pub fn seq_of_data_status(path: &str) -> Option<&str> {
    path.rsplit('/').next()?.strip_suffix(".status")
}
