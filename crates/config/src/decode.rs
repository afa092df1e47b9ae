//! Decoding of the positioned document tree into a [`Config`], normalising every accepted form
//! and checking every per-field rule of spec 60 §8.2. Errors are collected, not returned at the
//! first one: a user fixing a config sees all its problems at once.

use std::collections::{BTreeMap, HashSet};

use crate::config::{
    Approval, CloneStep, Config, ConfigContainer, ConfigDepend, ConfigRun, ConfigRunStep,
    ConfigRuntime, ConfigSaveCacheStep, ConfigStep, ConfigTask, RegistryAuth, Value,
};
use crate::error::{ConfigError, Ident};
use crate::node::{Key, Kind, Node, Position};
use crate::runconfig::{
    Arch, DependCondition, DockerRegistryAuthType, RestoreCacheStep, RestoreWorkspaceStep,
    RuntimeType, SaveContent, SaveToWorkspaceStep, TmpfsVolume, Volume,
};
use crate::when::{When, WhenConditions, validate_pattern};

/// Longest run, task and step name.
pub const MAX_NAME_LEN: usize = 100;

const STEP_TYPES: [&str; 6] = [
    "clone",
    "run",
    "save_to_workspace",
    "restore_workspace",
    "save_cache",
    "restore_cache",
];

/// Where an error is: which run, task and step.
#[derive(Debug, Clone, Default)]
pub(crate) struct Loc {
    pub run: Option<Ident>,
    pub task: Option<Ident>,
    pub step: Option<usize>,
}

/// The entries of a map, with absent and null fields read alike.
struct Fields<'n> {
    entries: &'n [(Key, Node)],
    pos: Option<Position>,
}

impl<'n> Fields<'n> {
    fn get(&self, name: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, v)| k.name == name && !matches!(v.kind, Kind::Null))
            .map(|(_, v)| v)
    }
}

#[derive(Default)]
pub(crate) struct Decoder {
    pub errors: Vec<ConfigError>,
}

impl Decoder {
    pub fn error(&mut self, loc: &Loc, pos: Option<Position>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            run: loc.run.clone(),
            task: loc.task.clone(),
            step: loc.step,
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
            message: message.into(),
        });
    }

    /// A map with only the `allowed` keys; unknown keys are reported (and skipped).
    fn fields<'n>(
        &mut self,
        loc: &Loc,
        node: &'n Node,
        what: &str,
        allowed: &[&str],
    ) -> Option<Fields<'n>> {
        let Kind::Map(entries) = &node.kind else {
            self.error(
                loc,
                node.pos,
                format!("{what} must be a map, not {}", node.type_name()),
            );
            return None;
        };
        for (k, _) in entries {
            if !allowed.contains(&k.name.as_str()) {
                self.error(
                    loc,
                    k.pos.or(node.pos),
                    format!(
                        "unknown field {:?} in {what} (expected one of: {})",
                        k.name,
                        allowed.join(", ")
                    ),
                );
            }
        }
        Some(Fields {
            entries,
            pos: node.pos,
        })
    }

    fn string(&mut self, loc: &Loc, node: &Node, what: &str) -> Option<String> {
        match &node.kind {
            Kind::Str(s) | Kind::Number(s) => Some(s.clone()),
            Kind::Bool(b) => Some(b.to_string()),
            _ => {
                self.error(
                    loc,
                    node.pos,
                    format!("{what} must be a string, not {}", node.type_name()),
                );
                None
            }
        }
    }

    fn opt_string(&mut self, loc: &Loc, f: &Fields<'_>, key: &str, what: &str) -> Option<String> {
        f.get(key).and_then(|n| self.string(loc, n, what))
    }

    fn boolean(&mut self, loc: &Loc, node: &Node, what: &str) -> Option<bool> {
        match node.kind {
            Kind::Bool(b) => Some(b),
            _ => {
                self.error(
                    loc,
                    node.pos,
                    format!("{what} must be true or false, not {}", node.type_name()),
                );
                None
            }
        }
    }

    /// A non-negative integer; integral floats (Jsonnet numbers) are accepted.
    fn integer(&mut self, loc: &Loc, node: &Node, what: &str) -> Option<u64> {
        if let Kind::Number(t) = &node.kind {
            if let Ok(v) = t.parse::<u64>() {
                return Some(v);
            }
            if let Ok(f) = t.parse::<f64>()
                && f.fract() == 0.0
                && (0.0..9.0e15).contains(&f)
            {
                return Some(f as u64);
            }
        }
        self.error(
            loc,
            node.pos,
            format!("{what} must be a non-negative integer"),
        );
        None
    }

    /// A string or a list of strings.
    fn string_list(&mut self, loc: &Loc, node: &Node, what: &str) -> Option<Vec<String>> {
        match &node.kind {
            Kind::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    if let Some(s) = self.string(loc, i, what) {
                        out.push(s);
                    }
                }
                Some(out)
            }
            _ => self.string(loc, node, what).map(|s| vec![s]),
        }
    }

    fn seq<'n>(&mut self, loc: &Loc, node: &'n Node, what: &str) -> &'n [Node] {
        match &node.kind {
            Kind::Seq(items) => items,
            _ => {
                self.error(
                    loc,
                    node.pos,
                    format!("{what} must be a list, not {}", node.type_name()),
                );
                &[]
            }
        }
    }

    /// A value: a string, or `{from_variable: name}`. `what` is built only for an error.
    fn value(&mut self, loc: &Loc, node: &Node, what: impl FnOnce() -> String) -> Option<Value> {
        match &node.kind {
            Kind::Str(s) | Kind::Number(s) => Some(Value::Literal(s.clone())),
            Kind::Bool(b) => Some(Value::Literal(b.to_string())),
            Kind::Map(entries) if entries.len() == 1 && entries[0].0.name == "from_variable" => {
                let var = self.string(loc, &entries[0].1, "from_variable")?;
                if var.is_empty() {
                    self.error(loc, node.pos, format!("{}: empty from_variable", what()));
                    return None;
                }
                Some(Value::FromVariable(var))
            }
            _ => {
                self.error(
                    loc,
                    node.pos,
                    format!("{} must be a string or {{from_variable: name}}", what()),
                );
                None
            }
        }
    }

    fn environment(&mut self, loc: &Loc, node: &Node, what: &str) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        let Kind::Map(entries) = &node.kind else {
            self.error(
                loc,
                node.pos,
                format!("{what} must be a map, not {}", node.type_name()),
            );
            return out;
        };
        for (k, v) in entries {
            if k.name.is_empty() {
                self.error(loc, k.pos, format!("{what}: empty variable name"));
                continue;
            }
            if let Some(val) = self.value(loc, v, || format!("{what} {:?}", k.name)) {
                out.insert(k.name.clone(), val);
            }
        }
        out
    }

    fn registries_auth(&mut self, loc: &Loc, node: &Node) -> BTreeMap<String, RegistryAuth> {
        let mut out = BTreeMap::new();
        let Kind::Map(entries) = &node.kind else {
            self.error(
                loc,
                node.pos,
                format!(
                    "docker_registries_auth must be a map of registry to credentials, not {}",
                    node.type_name()
                ),
            );
            return out;
        };
        for (k, v) in entries {
            if k.name.is_empty() {
                self.error(loc, k.pos, "docker_registries_auth: empty registry name");
                continue;
            }
            let what = format!("docker registry auth {:?}", k.name);
            let Some(f) = self.fields(loc, v, &what, &["type", "username", "password", "auth"])
            else {
                continue;
            };
            let mut auth = RegistryAuth::default();
            if let Some(t) = self.opt_string(loc, &f, "type", "auth type") {
                match DockerRegistryAuthType::parse(&t) {
                    Some(t) => auth.auth_type = t,
                    None => self.error(
                        loc,
                        f.get("type").and_then(|n| n.pos),
                        format!("{what}: unknown auth type {t:?} (basic or encodedauth)"),
                    ),
                }
            }
            for (field, slot) in [
                ("username", &mut auth.username),
                ("password", &mut auth.password),
                ("auth", &mut auth.auth),
            ] {
                if let Some(n) = f.get(field)
                    && let Some(val) = self.value(loc, n, || format!("{what} {field}"))
                {
                    *slot = val;
                }
            }
            out.insert(k.name.clone(), auth);
        }
        out
    }

    fn when(&mut self, loc: &Loc, node: &Node) -> Option<When> {
        let f = self.fields(loc, node, "when", &["branch", "tag", "ref"])?;
        let mut when = When::default();
        for (kind, slot) in [
            ("branch", &mut when.branch),
            ("tag", &mut when.tag),
            ("ref", &mut when.git_ref),
        ] {
            if let Some(n) = f.get(kind) {
                *slot = self.when_conditions(loc, n, kind);
            }
        }
        Some(when)
    }

    fn when_conditions(&mut self, loc: &Loc, node: &Node, kind: &str) -> Option<WhenConditions> {
        let what = format!("when {kind}");
        let mut c = WhenConditions::default();
        match &node.kind {
            Kind::Map(_) => {
                let f = self.fields(loc, node, &what, &["include", "exclude"])?;
                if let Some(n) = f.get("include") {
                    c.include = self.patterns(loc, n, &what);
                }
                if let Some(n) = f.get("exclude") {
                    c.exclude = self.patterns(loc, n, &what);
                }
            }
            _ => c.include = self.patterns(loc, node, &what),
        }
        Some(c)
    }

    fn patterns(&mut self, loc: &Loc, node: &Node, what: &str) -> Vec<String> {
        let list = self.string_list(loc, node, what).unwrap_or_default();
        for p in &list {
            if let Err(e) = validate_pattern(p) {
                self.error(loc, node.pos, format!("{what}: {e}"));
            }
        }
        list
    }
}

/// Decodes a whole config. Errors are left in `d.errors`; the returned config holds whatever
/// could be decoded, for the cross-reference checks of the validation pass.
pub(crate) fn decode_config(d: &mut Decoder, root: &Node) -> Config {
    let loc = Loc::default();
    let mut config = Config::default();
    if matches!(root.kind, Kind::Null) {
        d.error(&loc, root.pos, "config is empty");
        return config;
    }
    let Some(f) = d.fields(
        &loc,
        root,
        "config",
        &["version", "docker_registries_auth", "runs"],
    ) else {
        return config;
    };
    if let Some(v) = d.opt_string(&loc, &f, "version", "version") {
        if v != "v0" {
            d.error(
                &loc,
                f.get("version").and_then(|n| n.pos),
                format!("unsupported config version {v:?} (only v0)"),
            );
        }
        config.version = Some(v);
    }
    if let Some(n) = f.get("docker_registries_auth") {
        config.docker_registries_auth = d.registries_auth(&loc, n);
    }
    match f.get("runs") {
        None => d.error(&loc, f.pos, "config has no runs"),
        Some(n) => {
            let runs = d.seq(&loc, n, "runs");
            if runs.is_empty() && matches!(n.kind, Kind::Seq(_)) {
                d.error(&loc, n.pos, "config has no runs");
            }
            for (i, r) in runs.iter().enumerate() {
                if let Some(run) = decode_run(d, i, r) {
                    config.runs.push(run);
                }
            }
        }
    }
    config
}

/// The name of a run or task if it is a usable string, for naming it in errors.
fn ident_of(node: &Node, index: usize) -> Ident {
    if let Kind::Map(entries) = &node.kind
        && let Some((_, n)) = entries.iter().find(|(k, _)| k.name == "name")
        && let Kind::Str(s) | Kind::Number(s) = &n.kind
        && !s.is_empty()
    {
        return Ident::Name(s.clone());
    }
    Ident::Index(index + 1)
}

/// Checks a run, task or step name: non-empty, at most 100 characters.
fn check_name(d: &mut Decoder, loc: &Loc, pos: Option<Position>, name: &str, what: &str) {
    if name.is_empty() {
        d.error(loc, pos, format!("{what} name is empty"));
    } else if name.chars().count() > MAX_NAME_LEN {
        d.error(
            loc,
            pos,
            format!("{what} name is longer than {MAX_NAME_LEN} characters"),
        );
    }
}

fn decode_run(d: &mut Decoder, index: usize, node: &Node) -> Option<ConfigRun> {
    let loc = Loc {
        run: Some(ident_of(node, index)),
        ..Loc::default()
    };
    let f = d.fields(
        &loc,
        node,
        "run",
        &["name", "when", "docker_registries_auth", "tasks"],
    )?;
    let mut run = ConfigRun {
        position: node.pos,
        ..ConfigRun::default()
    };
    match f.get("name") {
        None => d.error(&loc, node.pos, "run has no name"),
        Some(n) => {
            if let Some(name) = d.string(&loc, n, "run name") {
                check_name(d, &loc, n.pos, &name, "run");
                run.name = name;
            }
        }
    }
    if let Some(n) = f.get("when") {
        run.when = d.when(&loc, n);
    }
    if let Some(n) = f.get("docker_registries_auth") {
        run.docker_registries_auth = d.registries_auth(&loc, n);
    }
    let tasks = match f.get("tasks") {
        None => &[][..],
        Some(n) => d.seq(&loc, n, "tasks"),
    };
    if tasks.is_empty() {
        d.error(&loc, node.pos, "run has no tasks");
    }
    for (i, t) in tasks.iter().enumerate() {
        if let Some(task) = decode_task(d, &loc, i, t) {
            run.tasks.push(task);
        }
    }
    Some(run)
}

const TASK_FIELDS: [&str; 12] = [
    "name",
    "runtime",
    "environment",
    "working_dir",
    "shell",
    "user",
    "steps",
    "depends",
    "ignore_failure",
    "approval",
    "when",
    "docker_registries_auth",
];

fn decode_task(d: &mut Decoder, run_loc: &Loc, index: usize, node: &Node) -> Option<ConfigTask> {
    let loc = Loc {
        task: Some(ident_of(node, index)),
        ..run_loc.clone()
    };
    let f = d.fields(&loc, node, "task", &TASK_FIELDS)?;
    let mut task = ConfigTask {
        position: node.pos,
        ..ConfigTask::default()
    };
    match f.get("name") {
        None => d.error(&loc, node.pos, "task has no name"),
        Some(n) => {
            if let Some(name) = d.string(&loc, n, "task name") {
                check_name(d, &loc, n.pos, &name, "task");
                task.name = name;
            }
        }
    }
    match f.get("runtime") {
        None => d.error(&loc, node.pos, "task has no runtime"),
        Some(n) => {
            if let Some(rt) = decode_runtime(d, &loc, n) {
                task.runtime = rt;
            }
        }
    }
    if let Some(n) = f.get("environment") {
        task.environment = d.environment(&loc, n, "environment");
    }
    task.working_dir = d.opt_string(&loc, &f, "working_dir", "working_dir");
    task.shell = d.opt_string(&loc, &f, "shell", "shell");
    task.user = d.opt_string(&loc, &f, "user", "user");
    if let Some(n) = f.get("steps") {
        let steps = d.seq(&loc, n, "steps");
        for (i, s) in steps.iter().enumerate() {
            let step_loc = Loc {
                step: Some(i + 1),
                ..loc.clone()
            };
            if let Some(step) = decode_step(d, &step_loc, s) {
                task.steps.push(step);
            }
        }
    }
    if let Some(n) = f.get("depends") {
        task.depends = decode_depends(d, &loc, n);
    }
    if let Some(n) = f.get("ignore_failure") {
        task.ignore_failure = d.boolean(&loc, n, "ignore_failure").unwrap_or(false);
    }
    if let Some(n) = f.get("approval") {
        task.approval = decode_approval(d, &loc, n);
    }
    if let Some(n) = f.get("when") {
        task.when = d.when(&loc, n);
    }
    if let Some(n) = f.get("docker_registries_auth") {
        task.docker_registries_auth = d.registries_auth(&loc, n);
    }
    Some(task)
}

fn decode_runtime(d: &mut Decoder, loc: &Loc, node: &Node) -> Option<ConfigRuntime> {
    let f = d.fields(loc, node, "runtime", &["type", "arch", "containers"])?;
    let mut rt = ConfigRuntime::default();
    if let Some(t) = d.opt_string(loc, &f, "type", "runtime type")
        && t != "pod"
    {
        d.error(
            loc,
            f.get("type").and_then(|n| n.pos),
            format!("unsupported runtime type {t:?} (only pod)"),
        );
    }
    rt.runtime_type = RuntimeType::Pod;
    if let Some(a) = d.opt_string(loc, &f, "arch", "arch") {
        match Arch::parse(&a) {
            Some(a) => rt.arch = Some(a),
            None => d.error(
                loc,
                f.get("arch").and_then(|n| n.pos),
                format!("invalid arch {a:?} (386, amd64, arm or arm64)"),
            ),
        }
    }
    let containers = match f.get("containers") {
        None => &[][..],
        Some(n) => d.seq(loc, n, "containers"),
    };
    if containers.is_empty() {
        d.error(loc, node.pos, "runtime has no containers");
    }
    for (i, c) in containers.iter().enumerate() {
        if let Some(c) = decode_container(d, loc, i, c) {
            rt.containers.push(c);
        }
    }
    Some(rt)
}

fn decode_container(
    d: &mut Decoder,
    loc: &Loc,
    index: usize,
    node: &Node,
) -> Option<ConfigContainer> {
    let what = format!("container {}", index + 1);
    let f = d.fields(
        loc,
        node,
        &what,
        &[
            "image",
            "environment",
            "user",
            "privileged",
            "entrypoint",
            "volumes",
        ],
    )?;
    let mut c = ConfigContainer::default();
    match d.opt_string(loc, &f, "image", "image") {
        Some(i) if !i.is_empty() => c.image = i,
        _ => d.error(loc, node.pos, format!("{what} has no image")),
    }
    if let Some(n) = f.get("environment") {
        c.environment = d.environment(loc, n, &format!("{what} environment"));
    }
    c.user = d.opt_string(loc, &f, "user", "user");
    if let Some(n) = f.get("privileged") {
        c.privileged = d.boolean(loc, n, "privileged").unwrap_or(false);
    }
    c.entrypoint = d.opt_string(loc, &f, "entrypoint", "entrypoint");
    if let Some(n) = f.get("volumes") {
        let volumes = d.seq(loc, n, "volumes");
        for v in volumes {
            if let Some(v) = decode_volume(d, loc, &what, v) {
                c.volumes.push(v);
            }
        }
    }
    Some(c)
}

fn decode_volume(d: &mut Decoder, loc: &Loc, container: &str, node: &Node) -> Option<Volume> {
    let what = format!("{container} volume");
    let f = d.fields(loc, node, &what, &["path", "tmpfs"])?;
    let path = match d.opt_string(loc, &f, "path", "volume path") {
        Some(p) if !p.is_empty() => p,
        _ => {
            d.error(loc, node.pos, format!("{what} has no path"));
            String::new()
        }
    };
    let Some(t) = f.get("tmpfs") else {
        d.error(
            loc,
            node.pos,
            format!("{what} {path:?} is not a tmpfs volume (only tmpfs volumes are supported)"),
        );
        return None;
    };
    let mut tmpfs = TmpfsVolume::default();
    // `tmpfs: {}` is an unlimited tmpfs
    if let Some(tf) = d.fields(loc, t, "tmpfs", &["size"])
        && let Some(s) = tf.get("size")
    {
        tmpfs.size = match &s.kind {
            Kind::Number(_) => d.integer(loc, s, "tmpfs size"),
            Kind::Str(q) => match parse_quantity(q) {
                Some(v) => Some(v),
                None => {
                    d.error(
                        loc,
                        s.pos,
                        format!("invalid tmpfs size {q:?} (bytes or a quantity like 512Mi)"),
                    );
                    None
                }
            },
            _ => {
                d.error(
                    loc,
                    s.pos,
                    "tmpfs size must be bytes or a quantity like 512Mi",
                );
                None
            }
        };
    }
    Some(Volume { path, tmpfs })
}

/// Parses a byte quantity: a decimal number with an optional binary (`Ki` … `Ei`) or decimal
/// (`k`, `M` … `E`) suffix, as Kubernetes writes them. Fractions round up to whole bytes.
pub fn parse_quantity(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let multiplier: u64 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        _ => return None,
    };
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let int_value: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut total = int_value.checked_mul(multiplier)?;
    if !frac.is_empty() {
        // exact integer arithmetic: frac / 10^len * multiplier, rounded up
        let digits = frac.len().min(18);
        let frac_value: u128 = frac[..digits].parse().ok()?;
        let scale = 10u128.pow(u32::try_from(digits).ok()?);
        let part = (frac_value * u128::from(multiplier)).div_ceil(scale);
        total = total.checked_add(u64::try_from(part).ok()?)?;
    }
    Some(total)
}

fn decode_depends(d: &mut Decoder, loc: &Loc, node: &Node) -> Vec<ConfigDepend> {
    let entries: Vec<&Node> = match &node.kind {
        Kind::Seq(items) => items.iter().collect(),
        Kind::Str(_) => vec![node],
        _ => {
            d.error(
                loc,
                node.pos,
                format!("depends must be a list, not {}", node.type_name()),
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for e in entries {
        match &e.kind {
            Kind::Str(_) | Kind::Number(_) => {
                if let Some(task) = d.string(loc, e, "dependency") {
                    out.push(ConfigDepend {
                        task,
                        conditions: vec![DependCondition::OnSuccess],
                        position: e.pos,
                    });
                }
            }
            Kind::Map(m) => {
                // `{task: "t", conditions: [...]}`, unless `task` holds conditions: then it is
                // the short form for a task named "task"
                let long = m
                    .iter()
                    .any(|(k, v)| k.name == "task" && matches!(v.kind, Kind::Str(_)));
                if long {
                    let Some(f) = d.fields(loc, e, "dependency", &["task", "conditions"]) else {
                        continue;
                    };
                    let Some(task) = d.opt_string(loc, &f, "task", "dependency task") else {
                        continue;
                    };
                    let conditions = match f.get("conditions") {
                        Some(c) => conditions(d, loc, c),
                        None => vec![DependCondition::OnSuccess],
                    };
                    out.push(ConfigDepend {
                        task,
                        conditions,
                        position: e.pos,
                    });
                } else if m.len() == 1 {
                    let (k, v) = &m[0];
                    let conditions = match v.kind {
                        Kind::Null => vec![DependCondition::OnSuccess],
                        _ => conditions(d, loc, v),
                    };
                    out.push(ConfigDepend {
                        task: k.name.clone(),
                        conditions,
                        position: k.pos.or(e.pos),
                    });
                } else {
                    d.error(
                        loc,
                        e.pos,
                        "a dependency is a task name, {task: name, conditions: [...]} or {name: [conditions]}",
                    );
                }
            }
            _ => d.error(
                loc,
                e.pos,
                format!(
                    "a dependency must be a task name or a map, not {}",
                    e.type_name()
                ),
            ),
        }
    }
    out
}

fn conditions(d: &mut Decoder, loc: &Loc, node: &Node) -> Vec<DependCondition> {
    let names = d
        .string_list(loc, node, "dependency conditions")
        .unwrap_or_default();
    let mut out = Vec::new();
    for n in names {
        match DependCondition::parse(&n) {
            Some(c) if !out.contains(&c) => out.push(c),
            Some(_) => {}
            None => d.error(
                loc,
                node.pos,
                format!(
                    "invalid dependency condition {n:?} (on_success, on_failure or on_skipped)"
                ),
            ),
        }
    }
    if out.is_empty() {
        out.push(DependCondition::OnSuccess);
    }
    out
}

fn decode_approval(d: &mut Decoder, loc: &Loc, node: &Node) -> Approval {
    let invalid = "approval must be true, false, an integer >= 1 or {min_approvers: N >= 1}";
    let min = |d: &mut Decoder, n: &Node| match d.integer(loc, n, "approvers") {
        Some(v) if v >= 1 => u32::try_from(v).ok(),
        Some(_) => {
            d.error(loc, n.pos, invalid);
            None
        }
        None => None,
    };
    match &node.kind {
        Kind::Bool(b) => Approval {
            required: *b,
            min_approvers: 1,
        },
        Kind::Number(_) => match min(d, node) {
            Some(m) => Approval {
                required: true,
                min_approvers: m,
            },
            None => Approval::default(),
        },
        Kind::Map(_) => {
            let Some(f) = d.fields(loc, node, "approval", &["min_approvers"]) else {
                return Approval::default();
            };
            let Some(n) = f.get("min_approvers") else {
                d.error(loc, node.pos, invalid);
                return Approval::default();
            };
            match min(d, n) {
                Some(m) => Approval {
                    required: true,
                    min_approvers: m,
                },
                None => Approval::default(),
            }
        }
        _ => {
            d.error(loc, node.pos, invalid);
            Approval::default()
        }
    }
}

/// The step type and the map of its fields, from the long form `{type: t, ...}` or the short
/// forms `{t: {...}}`, `{run: "cmd"}`, `{clone: }` and the bare string `clone`.
enum StepBody<'n> {
    Fields(Option<&'n Node>, bool),
    Command(&'n Node),
}

fn decode_step(d: &mut Decoder, loc: &Loc, node: &Node) -> Option<ConfigStep> {
    let (step_type, body) = match &node.kind {
        Kind::Str(s) if s == "clone" => ("clone".to_owned(), StepBody::Fields(None, false)),
        Kind::Map(entries) => {
            if entries.iter().any(|(k, _)| k.name == "type") {
                let t = entries
                    .iter()
                    .find(|(k, _)| k.name == "type")
                    .and_then(|(_, v)| d.string(loc, v, "step type"))?;
                (t, StepBody::Fields(Some(node), true))
            } else if entries.len() == 1 {
                let (k, v) = &entries[0];
                let body = match (&k.name[..], &v.kind) {
                    ("run", Kind::Str(_) | Kind::Number(_)) => StepBody::Command(v),
                    (_, Kind::Null) => StepBody::Fields(None, false),
                    _ => StepBody::Fields(Some(v), false),
                };
                (k.name.clone(), body)
            } else {
                d.error(
                    loc,
                    node.pos,
                    format!(
                        "a step needs a type: {{type: t, ...}} or the short form {{t: ...}} with t one of {}",
                        STEP_TYPES.join(", ")
                    ),
                );
                return None;
            }
        }
        _ => {
            d.error(
                loc,
                node.pos,
                format!("a step must be a map, not {}", node.type_name()),
            );
            return None;
        }
    };
    if !STEP_TYPES.contains(&step_type.as_str()) {
        d.error(
            loc,
            node.pos,
            format!(
                "unknown step type {step_type:?} (one of {})",
                STEP_TYPES.join(", ")
            ),
        );
        return None;
    }
    let pos = node.pos;
    match body {
        StepBody::Command(cmd) => {
            let command = d.string(loc, cmd, "command")?;
            run_step(d, loc, pos, None, command, ConfigRunStep::default())
        }
        StepBody::Fields(fields_node, long) => {
            decode_step_fields(d, loc, pos, &step_type, fields_node, long)
        }
    }
}

fn step_fields(step_type: &str) -> &'static [&'static str] {
    match step_type {
        "clone" => &["name", "depth", "recurse_submodules"],
        "run" => &[
            "name",
            "command",
            "environment",
            "working_dir",
            "shell",
            "tty",
        ],
        "save_to_workspace" => &["name", "contents"],
        "restore_workspace" => &["name", "dest_dir"],
        "save_cache" => &["name", "key", "contents"],
        _ => &["name", "keys", "dest_dir"],
    }
}

fn decode_step_fields(
    d: &mut Decoder,
    loc: &Loc,
    pos: Option<Position>,
    step_type: &str,
    node: Option<&Node>,
    long: bool,
) -> Option<ConfigStep> {
    let mut allowed: Vec<&str> = step_fields(step_type).to_vec();
    if long {
        allowed.push("type");
    }
    let what = format!("{step_type} step");
    let empty = Node::new(Kind::Map(Vec::new()), pos);
    let f = d.fields(loc, node.unwrap_or(&empty), &what, &allowed)?;
    let name = d.opt_string(loc, &f, "name", "step name");
    if let Some(n) = &name {
        check_name(d, loc, f.get("name").and_then(|n| n.pos), n, "step");
    }
    match step_type {
        "clone" => {
            let mut c = CloneStep::default();
            if let Some(n) = f.get("depth") {
                match d.integer(loc, n, "clone depth") {
                    Some(v) if v >= 1 => c.depth = u32::try_from(v).ok(),
                    Some(_) => d.error(loc, n.pos, "clone depth must be >= 1"),
                    None => {}
                }
            }
            if let Some(n) = f.get("recurse_submodules") {
                c.recurse_submodules = d.boolean(loc, n, "recurse_submodules").unwrap_or(false);
            }
            Some(ConfigStep::Clone(c))
        }
        "run" => {
            let mut s = ConfigRunStep::default();
            if let Some(n) = f.get("environment") {
                s.environment = d.environment(loc, n, "step environment");
            }
            s.working_dir = d.opt_string(loc, &f, "working_dir", "working_dir");
            s.shell = d.opt_string(loc, &f, "shell", "shell");
            if let Some(n) = f.get("tty") {
                s.tty = d.boolean(loc, n, "tty");
            }
            let command = d
                .opt_string(loc, &f, "command", "command")
                .unwrap_or_default();
            run_step(d, loc, pos, name, command, s)
        }
        "save_to_workspace" => {
            let contents = save_contents(d, loc, &f, &what, pos, false)?;
            Some(ConfigStep::SaveToWorkspace(SaveToWorkspaceStep {
                contents,
            }))
        }
        "restore_workspace" => Some(ConfigStep::RestoreWorkspace(RestoreWorkspaceStep {
            dest_dir: d
                .opt_string(loc, &f, "dest_dir", "dest_dir")
                .unwrap_or_default(),
        })),
        "save_cache" => {
            let key = d
                .opt_string(loc, &f, "key", "cache key")
                .unwrap_or_default();
            check_cache_key(d, loc, f.get("key").and_then(|n| n.pos).or(pos), &key, true);
            let contents = save_contents(d, loc, &f, &what, pos, true)?;
            Some(ConfigStep::SaveCache(ConfigSaveCacheStep { key, contents }))
        }
        _ => {
            let keys = match f.get("keys") {
                Some(n) => d.string_list(loc, n, "cache keys").unwrap_or_default(),
                None => Vec::new(),
            };
            let keys_pos = f.get("keys").and_then(|n| n.pos).or(pos);
            if keys.is_empty() {
                d.error(loc, keys_pos, "restore_cache step needs at least one key");
            }
            for k in &keys {
                check_cache_key(d, loc, keys_pos, k, false);
            }
            Some(ConfigStep::RestoreCache(RestoreCacheStep {
                keys,
                dest_dir: d
                    .opt_string(loc, &f, "dest_dir", "dest_dir")
                    .unwrap_or_default(),
            }))
        }
    }
}

/// A cache key is a template (`{{ sha256sum "Cargo.lock" }}`, `{{ env "X" }}`...) evaluated by
/// the executor; here it must be non-empty with balanced `{{ }}`.
fn check_cache_key(d: &mut Decoder, loc: &Loc, pos: Option<Position>, key: &str, save: bool) {
    if key.trim().is_empty() {
        let msg = if save {
            "save_cache step needs a key"
        } else {
            "restore_cache step has an empty key"
        };
        d.error(loc, pos, msg);
        return;
    }
    let mut rest = key;
    while let Some(open) = rest.find("{{") {
        match rest[open + 2..].find("}}") {
            Some(close) => rest = &rest[open + 2 + close + 2..],
            None => {
                d.error(
                    loc,
                    pos,
                    format!("cache key {key:?} has an unterminated {{{{ template"),
                );
                return;
            }
        }
    }
}

fn save_contents(
    d: &mut Decoder,
    loc: &Loc,
    f: &Fields<'_>,
    what: &str,
    pos: Option<Position>,
    cache: bool,
) -> Option<Vec<SaveContent>> {
    let Some(n) = f.get("contents") else {
        d.error(loc, pos, format!("{what} has no contents"));
        return None;
    };
    let mut out = Vec::new();
    let items = d.seq(loc, n, "contents");
    if items.is_empty() && matches!(n.kind, Kind::Seq(_)) {
        d.error(loc, n.pos, format!("{what} has no contents"));
    }
    for i in items {
        let Some(cf) = d.fields(loc, i, "content", &["source_dir", "dest_dir", "paths"]) else {
            continue;
        };
        let mut c = SaveContent {
            source_dir: d
                .opt_string(loc, &cf, "source_dir", "source_dir")
                .unwrap_or_default(),
            dest_dir: d
                .opt_string(loc, &cf, "dest_dir", "dest_dir")
                .unwrap_or_default(),
            paths: match cf.get("paths") {
                Some(p) => d.string_list(loc, p, "paths").unwrap_or_default(),
                None => Vec::new(),
            },
        };
        if c.paths.is_empty() {
            if cache {
                c.paths.push("**".to_owned());
            } else {
                d.error(loc, i.pos, "save_to_workspace content needs paths");
            }
        }
        out.push(c);
    }
    Some(out)
}

/// A run step: a command is required; a multi-line command needs a name; otherwise the name is
/// the command cut to 100 characters.
fn run_step(
    d: &mut Decoder,
    loc: &Loc,
    pos: Option<Position>,
    name: Option<String>,
    command: String,
    mut step: ConfigRunStep,
) -> Option<ConfigStep> {
    if command.trim().is_empty() {
        d.error(loc, pos, "run step has no command");
        return None;
    }
    // a YAML literal block ends with a newline: that alone does not make it multi-line
    let multi_line = command.trim_end().contains('\n');
    step.name = match name {
        Some(n) => n,
        None if multi_line => {
            d.error(loc, pos, "run step with a multi-line command needs a name");
            String::new()
        }
        None => command.trim().chars().take(MAX_NAME_LEN).collect(),
    };
    step.command = command;
    Some(ConfigStep::Run(step))
}

/// Set of names, for uniqueness checks.
pub(crate) fn duplicates<'a>(names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    let mut dups = Vec::new();
    for n in names {
        if !n.is_empty() && !seen.insert(n) && !dups.contains(&n) {
            dups.push(n);
        }
    }
    dups
}

#[cfg(test)]
mod tests {
    use super::parse_quantity;

    #[test]
    fn quantities() {
        let cases = [
            ("512Mi", Some(512 << 20)),
            ("1Gi", Some(1 << 30)),
            ("1.5Ki", Some(1536)),
            ("100", Some(100)),
            ("1k", Some(1000)),
            ("2M", Some(2_000_000)),
            ("0.1", Some(1)),
            ("", None),
            ("Mi", None),
            ("12Q", None),
            ("-1Mi", None),
            ("99999999999Ei", None),
            ("1.2.3", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_quantity(s), want, "{s}");
        }
    }
}
