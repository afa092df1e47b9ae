//! The ref a run is created for: the `ctx` a Jsonnet or Starlark config receives, and what `when`
//! conditions and variable values are matched against.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefType {
    #[default]
    Branch,
    Tag,
    PullRequest,
}

impl RefType {
    pub fn as_str(self) -> &'static str {
        match self {
            RefType::Branch => "branch",
            RefType::Tag => "tag",
            RefType::PullRequest => "pull_request",
        }
    }
}

/// `ctx` of spec 60 §8.1. Every field is always present; those that do not apply are empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefContext {
    pub ref_type: RefType,
    /// The full git ref, e.g. `refs/heads/main`, `refs/tags/v1`, `refs/pull/12/head`.
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub branch: String,
    pub tag: String,
    pub pull_request_id: String,
    pub commit_sha: String,
}

impl RefContext {
    /// A branch push: ref `refs/heads/<branch>`.
    pub fn branch(branch: impl Into<String>, commit_sha: impl Into<String>) -> Self {
        let branch = branch.into();
        RefContext {
            ref_type: RefType::Branch,
            git_ref: format!("refs/heads/{branch}"),
            branch,
            commit_sha: commit_sha.into(),
            ..Default::default()
        }
    }

    /// A tag push: ref `refs/tags/<tag>`.
    pub fn tag(tag: impl Into<String>, commit_sha: impl Into<String>) -> Self {
        let tag = tag.into();
        RefContext {
            ref_type: RefType::Tag,
            git_ref: format!("refs/tags/{tag}"),
            tag,
            commit_sha: commit_sha.into(),
            ..Default::default()
        }
    }

    /// A pull request with an explicit ref (forges differ: `refs/pull/<n>/head` on GitHub and
    /// Gitea, `refs/merge-requests/<n>/head` on GitLab).
    pub fn pull_request(
        id: impl Into<String>,
        git_ref: impl Into<String>,
        commit_sha: impl Into<String>,
    ) -> Self {
        RefContext {
            ref_type: RefType::PullRequest,
            git_ref: git_ref.into(),
            pull_request_id: id.into(),
            commit_sha: commit_sha.into(),
            ..Default::default()
        }
    }

    /// The `(name, value)` pairs handed to Jsonnet and Starlark as `ctx`.
    pub fn fields(&self) -> [(&'static str, &str); 6] {
        [
            ("ref_type", self.ref_type.as_str()),
            ("ref", &self.git_ref),
            ("branch", &self.branch),
            ("tag", &self.tag),
            ("pull_request_id", &self.pull_request_id),
            ("commit_sha", &self.commit_sha),
        ]
    }
}

/// Whether a commit message asks for no runs (`[ci skip]`, spec 60 §7 step 1).
pub fn commit_message_skips_ci(message: &str) -> bool {
    message.contains("[ci skip]")
}
