//! The task DAG of a run config: checks (parents exist, no cycles, no redundant edges) and
//! levels (roots 0, else 1 + the highest parent level). Failures become setup errors.

use std::collections::{BTreeMap, BTreeSet};

use crate::types::RunConfigTask;

fn name_of<'a>(tasks: &'a BTreeMap<String, RunConfigTask>, id: &'a str) -> &'a str {
    tasks.get(id).map_or(id, |t| t.name.as_str())
}

/// Every ancestor of `id` (parents, their parents, ...). Assumes no cycle.
pub fn ancestors(tasks: &BTreeMap<String, RunConfigTask>, id: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack: Vec<&str> = vec![id];
    while let Some(cur) = stack.pop() {
        if let Some(t) = tasks.get(cur) {
            for parent in t.depends.keys() {
                if out.insert(parent.clone()) {
                    stack.push(parent);
                }
            }
        }
    }
    out
}

/// Checks the DAG; returns the setup errors found (empty = valid).
pub fn check(tasks: &BTreeMap<String, RunConfigTask>) -> Vec<String> {
    let mut errors = Vec::new();
    // Parents exist and ids are consistent.
    for (id, t) in tasks {
        if *id != t.id {
            errors.push(format!(
                "task {:?}: id {:?} does not match its key {id:?}",
                t.name, t.id
            ));
        }
        for (parent, dep) in &t.depends {
            if !tasks.contains_key(parent) {
                errors.push(format!(
                    "task {:?} depends on unknown task {parent:?}",
                    t.name
                ));
            }
            if dep.task_id != *parent {
                errors.push(format!(
                    "task {:?}: dependency {parent:?} names task {:?}",
                    t.name, dep.task_id
                ));
            }
        }
    }
    if !errors.is_empty() {
        return errors;
    }
    // Cycles: depth-first search with colours, reporting each cycle once by its lowest task.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = tasks.keys().map(|k| (k.as_str(), Mark::New)).collect();
    let mut cyclic = BTreeSet::new();
    fn visit<'a>(
        id: &'a str,
        tasks: &'a BTreeMap<String, RunConfigTask>,
        marks: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
        cyclic: &mut BTreeSet<String>,
    ) {
        marks.insert(id, Mark::Active);
        path.push(id);
        if let Some(t) = tasks.get(id) {
            for parent in t.depends.keys() {
                match marks.get(parent.as_str()).copied() {
                    Some(Mark::Active) => {
                        if let Some(pos) = path.iter().position(|p| *p == parent.as_str()) {
                            for p in &path[pos..] {
                                cyclic.insert((*p).to_owned());
                            }
                        }
                    }
                    Some(Mark::New) => visit(parent, tasks, marks, path, cyclic),
                    _ => {}
                }
            }
        }
        path.pop();
        marks.insert(id, Mark::Done);
    }
    for id in tasks.keys() {
        if marks.get(id.as_str()) == Some(&Mark::New) {
            visit(id, tasks, &mut marks, &mut Vec::new(), &mut cyclic);
        }
    }
    if !cyclic.is_empty() {
        let names: Vec<&str> = cyclic.iter().map(|id| name_of(tasks, id)).collect();
        errors.push(format!(
            "dependency cycle between tasks {}",
            names.join(", ")
        ));
        return errors;
    }
    // Redundant edges: a parent that is also an ancestor through another parent.
    for t in tasks.values() {
        for parent in t.depends.keys() {
            for other in t.depends.keys().filter(|o| *o != parent) {
                if ancestors(tasks, other).contains(parent) {
                    errors.push(format!(
                        "task {:?}: dependency on {:?} is redundant: {:?} already depends on it",
                        t.name,
                        name_of(tasks, parent),
                        name_of(tasks, other)
                    ));
                    break;
                }
            }
        }
    }
    errors
}

/// Sets every task's level. Call only on a checked (acyclic) DAG.
pub fn set_levels(tasks: &mut BTreeMap<String, RunConfigTask>) {
    fn level(
        id: &str,
        tasks: &BTreeMap<String, RunConfigTask>,
        memo: &mut BTreeMap<String, u32>,
    ) -> u32 {
        if let Some(l) = memo.get(id) {
            return *l;
        }
        let l = tasks.get(id).map_or(0, |t| {
            t.depends
                .keys()
                .map(|p| level(p, tasks, memo) + 1)
                .max()
                .unwrap_or(0)
        });
        memo.insert(id.to_owned(), l);
        l
    }
    let mut memo = BTreeMap::new();
    let ids: Vec<String> = tasks.keys().cloned().collect();
    for id in &ids {
        level(id, tasks, &mut memo);
    }
    for (id, t) in tasks.iter_mut() {
        t.level = memo.get(id).copied().unwrap_or(0);
    }
}

/// Task ids in (level, id) order: parents always come before their children.
pub fn level_order(tasks: &BTreeMap<String, RunConfigTask>) -> Vec<String> {
    let mut ids: Vec<(u32, &String)> = tasks.iter().map(|(id, t)| (t.level, id)).collect();
    ids.sort();
    ids.into_iter().map(|(_, id)| id.clone()).collect()
}
