//! The change groups of the configstore (spec 40 §5) and which fact each one guards.
//!
//! | kind | value | guards | bumped by |
//! |---|---|---|---|
//! | `username`, `orgname`, `remotesourcename` | name | the name is free / taken | create, rename, delete |
//! | `userid`, `orgid`, `remotesourceid` | id | the record as read | every change of it |
//! | `usercontent`, `orgcontent` | id | the set of memberships | membership adds (touch), user/org delete |
//! | `orgmember` | `<org>/<user>` | one membership | add, role change, remove |
//! | `linkedaccount` | `<remote source>/<remote user>` | the remote user is linked once | link, relink, unlink |
//! | `remotesourcecontent` | id | the set of users of a remote source | new links and projects (touch), delete |
//! | `projectname` | `<group>/<name>` | one path is one object (groups and projects) | create, rename, move, delete |
//! | `projectgroupid`, `projectid` | id | the object exists where it was seen | update, move, delete |
//! | `projectgroupcontent`, `projectcontent` | id | the set of everything below | creations and moves below (touch), cascade delete |
//! | `secretname`, `variablename` | `<parent>/<name>` | the secret/variable as read | create, update, delete |
//!
//! Writes inside a group *share* (compare only) the id groups of every ancestor, so a move or
//! delete of any ancestor fails them, and *touch* (bump only) their content groups, so a
//! cascade delete of any ancestor that read the subtree before them fails and re-reads it.
//! Creations of different names in one group never conflict with each other.

use crate::error::Result;
use crate::readmodel::State;
use crate::refs::Node;
use crate::store::Guard;

pub const USER_NAME: &str = "username";
pub const USER_ID: &str = "userid";
pub const USER_CONTENT: &str = "usercontent";
pub const ORG_NAME: &str = "orgname";
pub const ORG_ID: &str = "orgid";
pub const ORG_CONTENT: &str = "orgcontent";
pub const ORG_MEMBER: &str = "orgmember";
pub const LINKED_ACCOUNT: &str = "linkedaccount";
pub const REMOTE_SOURCE_NAME: &str = "remotesourcename";
pub const REMOTE_SOURCE_ID: &str = "remotesourceid";
pub const REMOTE_SOURCE_CONTENT: &str = "remotesourcecontent";
pub const PROJECT_NAME: &str = "projectname";
pub const GROUP_ID: &str = "projectgroupid";
pub const GROUP_CONTENT: &str = "projectgroupcontent";
pub const PROJECT_ID: &str = "projectid";
pub const PROJECT_CONTENT: &str = "projectcontent";
pub const SECRET_NAME: &str = "secretname";
pub const VARIABLE_NAME: &str = "variablename";

/// `<a>/<b>` values of two-part groups.
pub fn pair(a: &str, b: &str) -> String {
    format!("{a}/{b}")
}

impl Guard {
    /// The write relies on group `group_id` and its ancestors staying where they are.
    pub fn within_group(&mut self, s: &State, group_id: &str) -> Result<&mut Self> {
        for g in s.group_chain(group_id)? {
            self.shared(GROUP_ID, &g.id);
        }
        Ok(self)
    }

    /// The write changes what lies below `group_id` and its ancestors.
    pub fn touch_below_group(&mut self, s: &State, group_id: &str) -> Result<&mut Self> {
        for g in s.group_chain(group_id)? {
            self.touch(GROUP_CONTENT, &g.id);
        }
        Ok(self)
    }

    /// The write adds something directly under `group_id`.
    pub fn inside_group(&mut self, s: &State, group_id: &str) -> Result<&mut Self> {
        self.within_group(s, group_id)?;
        self.touch_below_group(s, group_id)
    }

    /// The write relies on `node` (and its ancestors) staying where it is.
    pub fn within_node(&mut self, s: &State, node: Node<'_>) -> Result<&mut Self> {
        match node {
            Node::Group(g) => self.within_group(s, &g.id),
            Node::Project(p) => {
                self.shared(PROJECT_ID, &p.id);
                self.within_group(s, &p.parent.id)
            }
        }
    }

    /// The write adds something (a secret, a variable) directly under `node`.
    pub fn inside_node(&mut self, s: &State, node: Node<'_>) -> Result<&mut Self> {
        match node {
            Node::Group(g) => self.inside_group(s, &g.id),
            Node::Project(p) => {
                self.shared(PROJECT_ID, &p.id);
                self.touch(PROJECT_CONTENT, &p.id);
                self.inside_group(s, &p.parent.id)
            }
        }
    }
}
