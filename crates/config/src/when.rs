//! `when` conditions (spec 60 §8.4), shared by config runs and tasks and by variable values.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use crate::context::{RefContext, RefType};

/// Compiled regexps are capped so that a hostile pattern cannot make the gateway allocate
/// without bound.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A `when` filter. An absent `When` matches everything; a present one starts from "no match".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct When {
    /// Checked only for branch refs, against the branch name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<WhenConditions>,
    /// Checked only for tag refs, against the tag name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<WhenConditions>,
    /// Checked for every ref, against the full ref.
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<WhenConditions>,
}

/// Patterns of one ref kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WhenConditions {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

/// How a pattern string is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern<'a> {
    Exact(&'a str),
    /// The regexp between the delimiters; an unanchored search.
    Regex(&'a str),
}

impl<'a> Pattern<'a> {
    /// A pattern starting and ending with `/` (or both with `#`) and longer than 2 characters is
    /// a regular expression; anything else matches exactly.
    pub fn classify(p: &'a str) -> Self {
        let b = p.as_bytes();
        if b.len() > 2 {
            let (first, last) = (b[0], b[b.len() - 1]);
            if (first == b'/' && last == b'/') || (first == b'#' && last == b'#') {
                // the delimiters are ASCII, so slicing them off keeps char boundaries
                return Pattern::Regex(&p[1..p.len() - 1]);
            }
        }
        Pattern::Exact(p)
    }
}

/// Compiled patterns are kept: a pipeline repeats the same few patterns over hundreds of
/// tasks, and compiling a regexp costs far more than matching it.
const REGEX_CACHE_ENTRIES: usize = 1024;

type RegexCache = HashMap<String, Result<Regex, String>>;

static REGEX_CACHE: LazyLock<Mutex<RegexCache>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// Compiles a regexp body with the size limits of this crate (cached).
pub(crate) fn compile_regex(body: &str) -> Result<Regex, String> {
    // a poisoned lock only means another thread panicked mid-insert: the map is still usable
    let mut cache = REGEX_CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(r) = cache.get(body) {
        return r.clone();
    }
    let r = RegexBuilder::new(body)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| e.to_string());
    if cache.len() >= REGEX_CACHE_ENTRIES {
        cache.clear();
    }
    cache.insert(body.to_owned(), r.clone());
    r
}

/// Checks that a pattern is usable: an error message for an invalid regexp.
pub fn validate_pattern(p: &str) -> Result<(), String> {
    match Pattern::classify(p) {
        Pattern::Exact(_) => Ok(()),
        Pattern::Regex(body) => compile_regex(body)
            .map(|_| ())
            .map_err(|e| format!("invalid regular expression {p:?}: {e}")),
    }
}

/// Whether `value` matches the pattern. An invalid regexp matches nothing (configs reject them
/// at validation; variables stored elsewhere must not break run creation).
pub fn pattern_matches(p: &str, value: &str) -> bool {
    match Pattern::classify(p) {
        Pattern::Exact(s) => s == value,
        Pattern::Regex(body) => compile_regex(body).is_ok_and(|re| re.is_match(value)),
    }
}

impl WhenConditions {
    /// Applies this kind to the running outcome: an include match sets true, an exclude match
    /// then sets false, no match leaves it unchanged.
    fn apply(&self, value: &str, outcome: &mut bool) {
        if self.include.iter().any(|p| pattern_matches(p, value)) {
            *outcome = true;
        }
        if self.exclude.iter().any(|p| pattern_matches(p, value)) {
            *outcome = false;
        }
    }
}

impl When {
    /// Evaluates the kinds in order branch → tag → ref; branch patterns only for branch refs,
    /// tag patterns only for tag refs, ref patterns always.
    pub fn matches(&self, ctx: &RefContext) -> bool {
        let mut outcome = false;
        if ctx.ref_type == RefType::Branch
            && let Some(c) = &self.branch
        {
            c.apply(&ctx.branch, &mut outcome);
        }
        if ctx.ref_type == RefType::Tag
            && let Some(c) = &self.tag
        {
            c.apply(&ctx.tag, &mut outcome);
        }
        if let Some(c) = &self.git_ref {
            c.apply(&ctx.git_ref, &mut outcome);
        }
        outcome
    }
}

/// `None` (no `when`) matches every ref.
pub fn when_matches(when: Option<&When>, ctx: &RefContext) -> bool {
    when.is_none_or(|w| w.matches(ctx))
}
