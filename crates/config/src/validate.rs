//! Cross-reference checks of spec 60 §8.2 that need the whole config: unique names, existing
//! dependencies, no duplicate dependencies, no cycles, no redundant edges. Graph walks are
//! iterative, so a long dependency chain cannot overflow the stack.

use std::collections::HashMap;

use crate::config::{Config, ConfigRun};
use crate::decode::{Decoder, Loc, duplicates};
use crate::error::Ident;

/// The dependency graph of one run, by task index.
pub(crate) struct RunGraph {
    /// Distinct existing parents of each task, in declaration order.
    pub parents: Vec<Vec<usize>>,
    /// Topological order (parents first); partial when there is a cycle: tasks on or behind a
    /// cycle are missing.
    pub order: Vec<usize>,
}

impl RunGraph {
    pub fn new(run: &ConfigRun) -> Self {
        let mut index: HashMap<&str, usize> = HashMap::with_capacity(run.tasks.len());
        for (i, t) in run.tasks.iter().enumerate() {
            index.entry(t.name.as_str()).or_insert(i);
        }
        let parents: Vec<Vec<usize>> = run
            .tasks
            .iter()
            .map(|t| {
                let mut ps = Vec::new();
                for dep in &t.depends {
                    if let Some(&p) = index.get(dep.task.as_str())
                        && !ps.contains(&p)
                    {
                        ps.push(p);
                    }
                }
                ps
            })
            .collect();
        let order = topological_order(&parents);
        RunGraph { parents, order }
    }

    pub fn is_acyclic(&self) -> bool {
        self.order.len() == self.parents.len()
    }

    /// Roots 0, else 1 + the highest parent level. None when there is a cycle.
    pub fn levels(&self) -> Option<Vec<u32>> {
        if !self.is_acyclic() {
            return None;
        }
        let mut levels = vec![0u32; self.parents.len()];
        for &t in &self.order {
            levels[t] = self.parents[t]
                .iter()
                .map(|&p| levels[p] + 1)
                .max()
                .unwrap_or(0);
        }
        Some(levels)
    }
}

/// Kahn's algorithm; tasks on (or behind) a cycle are left out.
fn topological_order(parents: &[Vec<usize>]) -> Vec<usize> {
    let n = parents.len();
    let mut children = vec![Vec::new(); n];
    let mut pending: Vec<usize> = parents.iter().map(Vec::len).collect();
    for (t, ps) in parents.iter().enumerate() {
        for &p in ps {
            children[p].push(t);
        }
    }
    let mut ready: Vec<usize> = (0..n).filter(|&t| pending[t] == 0).collect();
    ready.reverse();
    let mut order = Vec::with_capacity(n);
    while let Some(t) = ready.pop() {
        order.push(t);
        for &c in &children[t] {
            pending[c] -= 1;
            if pending[c] == 0 {
                ready.push(c);
            }
        }
    }
    order
}

pub(crate) fn validate_config(d: &mut Decoder, config: &Config) {
    for dup in duplicates(config.runs.iter().map(|r| r.name.as_str())) {
        for r in config.runs.iter().filter(|r| r.name == dup).skip(1) {
            let loc = Loc {
                run: Some(Ident::Name(r.name.clone())),
                ..Loc::default()
            };
            d.error(&loc, r.position, format!("duplicate run name {dup:?}"));
        }
    }
    for run in &config.runs {
        validate_run(d, run);
    }
}

fn task_loc(run: &ConfigRun, index: usize) -> Loc {
    let t = &run.tasks[index];
    Loc {
        run: Some(Ident::Name(run.name.clone())),
        task: Some(if t.name.is_empty() {
            Ident::Index(index + 1)
        } else {
            Ident::Name(t.name.clone())
        }),
        step: None,
    }
}

fn validate_run(d: &mut Decoder, run: &ConfigRun) {
    for dup in duplicates(run.tasks.iter().map(|t| t.name.as_str())) {
        for (i, t) in run
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.name == dup)
            .skip(1)
        {
            d.error(
                &task_loc(run, i),
                t.position,
                format!("duplicate task name {dup:?}"),
            );
        }
    }
    let names: std::collections::HashSet<&str> =
        run.tasks.iter().map(|t| t.name.as_str()).collect();
    for (i, t) in run.tasks.iter().enumerate() {
        let loc = task_loc(run, i);
        let mut seen: Vec<&str> = Vec::new();
        for dep in &t.depends {
            if seen.contains(&dep.task.as_str()) {
                d.error(
                    &loc,
                    dep.position,
                    format!("duplicate dependency on task {:?}", dep.task),
                );
                continue;
            }
            seen.push(&dep.task);
            if dep.task == t.name {
                d.error(&loc, dep.position, "task depends on itself");
            } else if !names.contains(dep.task.as_str()) {
                d.error(
                    &loc,
                    dep.position,
                    format!("dependency on unknown task {:?}", dep.task),
                );
            }
        }
    }

    let graph = RunGraph::new(run);
    if graph.is_acyclic() {
        check_redundant_edges(d, run, &graph.parents, &graph.order);
    } else {
        report_cycles(d, run, &graph.parents, &graph.order);
    }
}

/// Reports each cycle once. Every task left over by Kahn's algorithm has a left-over parent,
/// so following left-over parents from any of them reaches a cycle.
fn report_cycles(d: &mut Decoder, run: &ConfigRun, parents: &[Vec<usize>], placed: &[usize]) {
    let n = parents.len();
    let mut order = vec![false; n];
    for &t in placed {
        order[t] = true;
    }
    let mut in_cycle = vec![false; n];
    for start in 0..n {
        if order[start] || in_cycle[start] {
            continue;
        }
        let mut path: Vec<usize> = Vec::new();
        let mut at: HashMap<usize, usize> = HashMap::new();
        let mut cur = start;
        loop {
            if in_cycle[cur] {
                break;
            }
            if let Some(&i) = at.get(&cur) {
                let cycle = &path[i..];
                for &c in cycle {
                    in_cycle[c] = true;
                }
                // a self-dependency was already reported by the dependency checks
                if cycle.len() > 1 {
                    let mut names: Vec<&str> =
                        cycle.iter().map(|&c| run.tasks[c].name.as_str()).collect();
                    names.push(run.tasks[cycle[0]].name.as_str());
                    d.error(
                        &task_loc(run, cycle[0]),
                        run.tasks[cycle[0]].position,
                        format!(
                            "dependency cycle: {} (each task depends on the next)",
                            names.join(" -> ")
                        ),
                    );
                }
                break;
            }
            at.insert(cur, path.len());
            path.push(cur);
            match parents[cur].iter().find(|&&p| !order[p]) {
                Some(&p) => cur = p,
                None => break,
            }
        }
    }
}

/// A task may not depend directly on a task that is already an ancestor of another of its
/// direct parents: the edge adds nothing and hides the intended shape of the graph.
fn check_redundant_edges(
    d: &mut Decoder,
    run: &ConfigRun,
    parents: &[Vec<usize>],
    order: &[usize],
) {
    let n = parents.len();
    let words = n.div_ceil(64);
    // ancestors as bitsets, filled parents-first
    let mut ancestors = vec![vec![0u64; words]; n];
    for &t in order {
        let mut set = vec![0u64; words];
        for &p in &parents[t] {
            set[p / 64] |= 1 << (p % 64);
            for (w, a) in set.iter_mut().zip(&ancestors[p]) {
                *w |= a;
            }
        }
        ancestors[t] = set;
    }
    let has = |set: &[u64], i: usize| set[i / 64] & (1 << (i % 64)) != 0;
    for (t, ps) in parents.iter().enumerate() {
        for &p in ps {
            if let Some(&q) = ps.iter().find(|&&q| q != p && has(&ancestors[q], p)) {
                let task = &run.tasks[t];
                let pos = task
                    .depends
                    .iter()
                    .find(|dep| dep.task == run.tasks[p].name)
                    .and_then(|dep| dep.position)
                    .or(task.position);
                d.error(
                    &task_loc(run, t),
                    pos,
                    format!(
                        "redundant dependency on task {:?}: it is already an ancestor of dependency {:?}",
                        run.tasks[p].name, run.tasks[q].name
                    ),
                );
            }
        }
    }
}
