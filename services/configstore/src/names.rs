//! Name rules (spec 50 §2). Every error names the request field it is about.

use crate::error::{Error, Result};

const MAX_NAME: usize = 100;

/// Users, orgs, project groups, projects and remote sources: a letter, then letters and
/// digits with single `-` between alphanumerics, at most 100 characters.
///
/// A UUID is refused too even when it fits the pattern: refs are "id or name", and a name
/// that looks like an id would be unreachable by name.
pub fn validate_entity_name(field: &str, name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::InvalidArgument(format!(
            "invalid {field} {name:?}: {why}"
        )))
    };
    if name.is_empty() {
        return bad("must not be empty");
    }
    if name.len() > MAX_NAME {
        return bad("must be at most 100 characters");
    }
    let mut chars = name.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphabetic()) {
        return bad("must start with a letter");
    }
    let mut prev_dash = false;
    for c in chars {
        match c {
            '-' if prev_dash => return bad("must not contain consecutive '-'"),
            '-' => prev_dash = true,
            c if c.is_ascii_alphanumeric() => prev_dash = false,
            _ => return bad("may only contain letters, digits and '-'"),
        }
    }
    if prev_dash {
        return bad("must not end with '-'");
    }
    if uuid::Uuid::parse_str(name).is_ok() {
        return bad("must not be a uuid (ids and names share refs)");
    }
    Ok(())
}

/// Secrets and variables: letters, digits, `_` and `-`, starting with a letter or `_`, at
/// most 100 characters.
pub fn validate_secret_name(field: &str, name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::InvalidArgument(format!(
            "invalid {field} {name:?}: {why}"
        )))
    };
    if name.is_empty() {
        return bad("must not be empty");
    }
    if name.len() > MAX_NAME {
        return bad("must be at most 100 characters");
    }
    if !name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
    {
        return bad("must start with a letter or '_'");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return bad("may only contain letters, digits, '_' and '-'");
    }
    Ok(())
}

/// User token names: free text, but bounded and printable (they end up in listings).
pub fn validate_token_name(field: &str, name: &str) -> Result<()> {
    if name.trim().is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "invalid {field} {name:?}: must be 1 to 100 printable characters"
        )));
    }
    Ok(())
}

/// A required free-form field.
pub fn require(field: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::InvalidArgument(format!("{field} is required")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_names() {
        for ok in ["a", "abc", "a-b", "a1-2b-c3", "Proj-X", &"a".repeat(100)] {
            assert!(validate_entity_name("name", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1a",
            "-a",
            "a-",
            "a--b",
            "a_b",
            "a b",
            "a/b",
            "é",
            &"a".repeat(101),
            "abcdef12-3456-4789-8abc-def012345678",
        ] {
            let e = validate_entity_name("project.name", bad).expect_err(bad);
            assert!(e.to_string().contains("project.name"), "{e}");
        }
    }

    #[test]
    fn secret_names() {
        for ok in ["a", "_a", "A_b-c9", "_"] {
            assert!(validate_secret_name("name", ok).is_ok(), "{ok}");
        }
        for bad in ["", "1a", "-a", "a b", "a/b", "a.b"] {
            assert!(validate_secret_name("name", bad).is_err(), "{bad}");
        }
    }
}
