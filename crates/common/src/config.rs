//! Configuration shared by the services, and the layered loader of the `agola` config file.
//!
//! One YAML file configures the whole binary (spec 00 §3): top-level `id`, `dataDir`, `kv`,
//! `objectStorage`, `internalAuth`, `telemetry`, and a section per component. Unknown keys are
//! errors. Values are layered: defaults < file < `AGOLA_*` environment variables, where
//! `AGOLA_SECTION__FIELD=value` sets `section.field` (matched case-insensitively, `_` ignored),
//! and the value is parsed as YAML (`3`, `true`, `[a, b]`). `AGOLA_<KEY>` sets a top-level
//! key; other `AGOLA_*` variables without `__` are not configuration and are ignored.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;

/// KV store selection (`kv`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum KvConfig {
    /// Single-process on-disk store; `path` defaults to `<dataDir>/kv`.
    Embedded {
        #[serde(default)]
        path: Option<PathBuf>,
    },
    /// An etcd cluster.
    Etcd {
        endpoints: Vec<String>,
        /// Key prefix under which every service stores its keys.
        #[serde(default)]
        prefix: String,
    },
}

impl Default for KvConfig {
    fn default() -> Self {
        KvConfig::Embedded { path: None }
    }
}

/// Object storage selection (`objectStorage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ObjectStorageConfig {
    /// Files under `path` (default `<dataDir>/ost`).
    Posix {
        #[serde(default)]
        path: Option<PathBuf>,
    },
    /// An S3-compatible server.
    #[serde(rename_all = "camelCase")]
    S3 {
        endpoint: String,
        bucket: String,
        #[serde(default)]
        location: String,
        access_key: String,
        secret_access_key: String,
        #[serde(default, rename = "disableTLS")]
        disable_tls: bool,
        /// Path-style addressing; on by default for custom endpoints (MinIO-like servers).
        #[serde(default = "default_true")]
        path_style: bool,
    },
}

fn default_true() -> bool {
    true
}

impl Default for ObjectStorageConfig {
    fn default() -> Self {
        ObjectStorageConfig::Posix { path: None }
    }
}

/// Internal service-to-service authentication (`internalAuth`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct InternalAuthConfig {
    /// Bearer token every internal call carries; empty disables the check, which is accepted
    /// only when all components run in one process.
    pub token: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("invalid config file {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("invalid value of environment variable {var}: {reason}")]
    Env { var: String, reason: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

fn normalize(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

fn snake_to_camel(s: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in s.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Deep-merges `overlay` into `base` (maps merge key by key, anything else replaces). A map
/// whose `type` changes (a tagged variant such as `objectStorage: {type: s3}`) replaces the
/// base map whole, so fields of the default variant do not leak into the chosen one.
fn merge(base: &mut Value, overlay: Value) {
    let type_key = Value::String("type".to_owned());
    match (base, overlay) {
        (Value::Mapping(b), Value::Mapping(o))
            if o.get(&type_key).is_none_or(|t| b.get(&type_key) == Some(t)) =>
        {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// Sets `path` (normalized segments) in `root`, matching existing keys case-insensitively and
/// creating camelCase keys where none exists (unknown ones are then rejected by the type).
fn set_path(root: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    let Some((first, rest)) = path.split_first() else {
        *root = value;
        return Ok(());
    };
    if root.is_null() {
        *root = Value::Mapping(Default::default());
    }
    let Value::Mapping(map) = root else {
        return Err("it points inside a value that is not a section".to_owned());
    };
    let existing = map
        .keys()
        .find(|k| k.as_str().is_some_and(|s| normalize(s) == normalize(first)))
        .cloned();
    let key = existing.unwrap_or_else(|| Value::String(snake_to_camel(first)));
    let slot = map.entry(key).or_insert(Value::Null);
    set_path(slot, rest, value)
}

/// Loads a config of type `T`: defaults, then the YAML file (if any), then environment
/// variables starting with `prefix` (`AGOLA_`). Variables listed in `ignored_env` (handled by
/// the binary itself, e.g. `AGOLA_ADMIN_TOKEN`) are skipped.
pub fn load<T>(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    prefix: &str,
    ignored_env: &[&str],
) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned + Default,
{
    let mut value = serde_yaml_ng::to_value(T::default())
        .map_err(|e| ConfigError::Invalid(format!("defaults do not serialize: {e}")))?;
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let overlay: Value = serde_yaml_ng::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        // The file must be valid on its own so its errors name the file, not the env.
        serde_yaml_ng::from_value::<T>({
            let mut v = value.clone();
            merge(&mut v, overlay.clone());
            v
        })
        .map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        merge(&mut value, overlay);
    }
    // Only `PREFIX<SECTION>__<FIELD>` variables and ones naming a top-level key are config
    // overrides; other `AGOLA_*` variables (test and tool settings) are not ours to reject.
    let top_level: Vec<String> = match &value {
        Value::Mapping(m) => m.keys().filter_map(|k| k.as_str().map(normalize)).collect(),
        _ => Vec::new(),
    };
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(prefix) && !ignored_env.contains(&k.as_str()))
        .filter(|(k, _)| {
            let rest = &k[prefix.len()..];
            rest.contains("__") || top_level.contains(&normalize(rest))
        })
        .collect();
    vars.sort();
    for (var, raw) in vars {
        let path: Vec<String> = var[prefix.len()..].split("__").map(str::to_owned).collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::Env {
                var,
                reason: "empty section or field name".to_owned(),
            });
        }
        let parsed: Value =
            serde_yaml_ng::from_str(&raw).unwrap_or_else(|_| Value::String(raw.clone()));
        let parsed = if parsed.is_null() {
            Value::String(raw)
        } else {
            parsed
        };
        let mut candidate = value.clone();
        set_path(&mut candidate, &path, parsed).map_err(|reason| ConfigError::Env {
            var: var.clone(),
            reason,
        })?;
        serde_yaml_ng::from_value::<T>(candidate.clone()).map_err(|e| ConfigError::Env {
            var: var.clone(),
            reason: e.to_string(),
        })?;
        value = candidate;
    }
    serde_yaml_ng::from_value(value).map_err(|e| ConfigError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields, rename_all = "camelCase")]
    struct Sample {
        id: String,
        kv: KvConfig,
        object_storage: ObjectStorageConfig,
        executor: Exec,
    }
    impl Default for Sample {
        fn default() -> Self {
            Sample {
                id: "agola".into(),
                kv: KvConfig::default(),
                object_storage: ObjectStorageConfig::default(),
                executor: Exec::default(),
            }
        }
    }
    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields, rename_all = "camelCase")]
    struct Exec {
        active_tasks_limit: u32,
        labels: Vec<String>,
    }
    impl Default for Exec {
        fn default() -> Self {
            Exec {
                active_tasks_limit: 2,
                labels: vec![],
            }
        }
    }

    fn write(text: &str) -> tempfile_path::TempPath {
        tempfile_path::write(text)
    }

    mod tempfile_path {
        use std::path::PathBuf;
        pub struct TempPath(pub PathBuf);
        impl Drop for TempPath {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
        pub fn write(text: &str) -> TempPath {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "agola-config-test-{}-{}.yml",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::write(&p, text).expect("write temp config");
            TempPath(p)
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_without_file_or_env() {
        let c: Sample = load(None, env(&[]), "AGOLA_", &[]).expect("load");
        assert_eq!(c, Sample::default());
    }

    #[test]
    fn file_then_env_layering() {
        let f = write(
            "id: ci1\nobjectStorage:\n  type: s3\n  endpoint: http://127.0.0.1:9000\n  bucket: b\n  accessKey: a\n  secretAccessKey: s\nexecutor:\n  activeTasksLimit: 4\n",
        );
        let c: Sample = load(
            Some(&f.0),
            env(&[
                ("AGOLA_EXECUTOR__ACTIVE_TASKS_LIMIT", "7"),
                ("AGOLA_OBJECTSTORAGE__BUCKET", "other"),
                ("AGOLA_EXECUTOR__LABELS", "[a, b]"),
                ("AGOLA_ADMIN_TOKEN", "ignored"),
                ("AGOLA_TEST_ETCD_ENDPOINTS", "not a config key: ignored"),
                ("AGOLA_ID", "fromenv"),
                ("HOME", "/root"),
            ]),
            "AGOLA_",
            &["AGOLA_ADMIN_TOKEN"],
        )
        .expect("load");
        assert_eq!(c.id, "fromenv");
        assert_eq!(c.executor.active_tasks_limit, 7);
        assert_eq!(c.executor.labels, vec!["a", "b"]);
        match c.object_storage {
            ObjectStorageConfig::S3 {
                bucket, path_style, ..
            } => {
                assert_eq!(bucket, "other");
                assert!(path_style);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unknown_key_in_file_is_an_error_naming_it() {
        let f = write("executor:\n  activeTaskLimit: 3\n");
        let err = load::<Sample>(Some(&f.0), env(&[]), "AGOLA_", &[]).expect_err("must fail");
        let text = err.to_string();
        assert!(text.contains("activeTaskLimit"), "{text}");
        assert!(text.contains(&f.0.display().to_string()), "{text}");
    }

    #[test]
    fn unknown_env_field_is_an_error_naming_the_variable() {
        let err = load::<Sample>(None, env(&[("AGOLA_EXECUTOR__NOPE", "1")]), "AGOLA_", &[])
            .expect_err("must fail");
        assert!(err.to_string().contains("AGOLA_EXECUTOR__NOPE"), "{err}");
    }

    #[test]
    fn wrong_type_in_env_is_an_error() {
        let err = load::<Sample>(
            None,
            env(&[("AGOLA_EXECUTOR__ACTIVE_TASKS_LIMIT", "many")]),
            "AGOLA_",
            &[],
        )
        .expect_err("must fail");
        assert!(err.to_string().contains("ACTIVE_TASKS_LIMIT"), "{err}");
    }

    #[test]
    fn bad_yaml_names_the_file() {
        let f = write("id: [unclosed\n");
        let err = load::<Sample>(Some(&f.0), env(&[]), "AGOLA_", &[]).expect_err("must fail");
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let err = load::<Sample>(
            Some(Path::new("/nonexistent/agola.yml")),
            env(&[]),
            "AGOLA_",
            &[],
        )
        .expect_err("must fail");
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    }
}
