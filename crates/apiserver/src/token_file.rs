//! The static token file (`--token-auth-file`): bearer tokens for users that the
//! cluster does not manage, in Kubernetes' CSV format, one user per line:
//! `token,user,uid[,"group1,group2,..."]`. Read once at start, as Kubernetes does.

use std::collections::HashMap;
use std::path::Path;

use crate::authn::UserInfo;

/// Why a token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file cannot be read.
    #[error("reading token file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not a valid record.
    #[error("token file {path}, line {line}: {why}")]
    Record {
        /// The file.
        path: String,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with it.
        why: String,
    },
}

/// The users of a static token file, by token.
#[derive(Debug, Default)]
pub struct StaticTokens {
    users: HashMap<String, UserInfo>,
}

impl StaticTokens {
    /// Reads and parses the token file at `path`.
    pub fn load(path: &Path) -> Result<StaticTokens, TokenFileError> {
        let shown = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| TokenFileError::Read { path: shown.clone(), source })?;
        StaticTokens::parse(&text).map_err(|(line, why)| TokenFileError::Record { path: shown, line, why })
    }

    /// Parses the file's text; an error names the 1-based line and what is wrong.
    fn parse(text: &str) -> Result<StaticTokens, (usize, String)> {
        let mut users = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line_no = n + 1;
            if line.trim().is_empty() {
                continue;
            }
            let fields = split_csv(line).map_err(|why| (line_no, why))?;
            if fields.len() < 3 {
                return Err((
                    line_no,
                    format!("must have at least 3 columns (token, user name, user uid), found {}", fields.len()),
                ));
            }
            let token = fields[0].clone();
            if token.is_empty() {
                tracing::warn!(line = line_no, "empty token in the token file: line skipped");
                continue;
            }
            let groups: Vec<String> = match fields.get(3) {
                Some(g) if !g.is_empty() => g.split(',').map(|s| s.trim().to_string()).collect(),
                _ => Vec::new(),
            };
            let mut user = UserInfo::new(fields[1].clone(), groups);
            user.uid = fields[2].clone();
            if users.insert(token, user).is_some() {
                tracing::warn!(line = line_no, "duplicate token in the token file: the later line wins");
            }
        }
        Ok(StaticTokens { users })
    }

    /// The user `token` authenticates as, if any.
    pub fn user(&self, token: &str) -> Option<UserInfo> {
        self.users.get(token).cloned()
    }

    /// How many tokens the file holds.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file holds no token.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// Splits one CSV record: fields separated by commas, optionally double-quoted (a quoted
/// field may hold commas, and `""` for a quote), leading spaces of a field trimmed.
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("a quoted field is not closed".into()),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(c) => return Err(format!("unexpected {c:?} after a quoted field")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err("a quote inside an unquoted field".into()),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{StaticTokens, split_csv};

    #[test]
    fn records_with_and_without_groups() {
        let tokens = StaticTokens::parse(
            "s3cret,alice,1001,\"dev,ops\"\n\n  other, bob ,1002\nthird,carol,1003,viewers\n,nobody,0\n",
        )
        .expect("valid");
        assert_eq!(tokens.len(), 3, "the empty token is skipped");
        let alice = tokens.user("s3cret").expect("alice");
        assert_eq!((alice.username.as_str(), alice.uid.as_str()), ("alice", "1001"));
        assert_eq!(alice.groups, ["dev", "ops", "system:authenticated"]);
        let bob = tokens.user("other").expect("bob");
        assert_eq!(bob.username, "bob ", "only leading spaces are trimmed, as Go's csv reader does");
        assert_eq!(bob.groups, ["system:authenticated"]);
        assert_eq!(tokens.user("third").expect("carol").groups, ["viewers", "system:authenticated"]);
        assert!(tokens.user("nope").is_none());
        assert!(tokens.user("").is_none());
    }

    #[test]
    fn bad_records_name_their_line() {
        let err = StaticTokens::parse("a,b,c\nonly,two\n").expect_err("two columns");
        assert_eq!(err.0, 2);
        assert!(err.1.contains("at least 3 columns"), "{}", err.1);
        assert_eq!(StaticTokens::parse("a,\"b,c\n").expect_err("open quote").0, 1);
        assert_eq!(split_csv("a,\"x\"\"y\",c").expect("escaped quote"), ["a", "x\"y", "c"]);
        assert!(split_csv("a,b\"c").is_err());
    }
}
