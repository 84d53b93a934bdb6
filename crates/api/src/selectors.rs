//! Label and field selectors: parsing the `labelSelector`/`fieldSelector` query
//! parameters and `metav1.LabelSelector` objects, and matching objects against them.

use std::fmt;

use serde_json::{Map, Value};

use crate::registry::ResourceInfo;

/// Why a selector could not be parsed or used; the API server answers 400 with the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The selector text is malformed.
    #[error("unable to parse requirement: {0}")]
    Parse(String),
    /// A `metav1.LabelSelector` is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The field selector names a field the kind does not support.
    #[error("field label not supported: {0}")]
    FieldNotSupported(String),
}

/// The operator of one label requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `key=value` or `key==value`, `In` with one value.
    Equals,
    /// `key!=value`: matches objects without the key too.
    NotEquals,
    /// `key in (a,b)`.
    In,
    /// `key notin (a,b)`: matches objects without the key too.
    NotIn,
    /// `key`.
    Exists,
    /// `!key`.
    DoesNotExist,
    /// `key>1` (integer comparison).
    GreaterThan,
    /// `key<1` (integer comparison).
    LessThan,
}

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// How the label is compared.
    pub operator: Operator,
    /// The values compared against (empty for exists / does-not-exist).
    pub values: Vec<String>,
}

impl Requirement {
    fn matches(&self, labels: &Map<String, Value>) -> bool {
        let value = labels.get(&self.key).map(|v| v.as_str().unwrap_or_default());
        match self.operator {
            Operator::Equals | Operator::In => value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            Operator::NotEquals | Operator::NotIn => value.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(v), Some(bound)) = (value, self.values.first()) else {
                    return false;
                };
                let (Ok(v), Ok(bound)) = (v.parse::<i64>(), bound.parse::<i64>()) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan { v > bound } else { v < bound }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        let values = self.values.join(",");
        match self.operator {
            Operator::Equals => write!(f, "{key}={values}"),
            Operator::NotEquals => write!(f, "{key}!={values}"),
            Operator::In => write!(f, "{key} in ({values})"),
            Operator::NotIn => write!(f, "{key} notin ({values})"),
            Operator::Exists => write!(f, "{key}"),
            Operator::DoesNotExist => write!(f, "!{key}"),
            Operator::GreaterThan => write!(f, "{key}>{values}"),
            Operator::LessThan => write!(f, "{key}<{values}"),
        }
    }
}

/// A label selector: all requirements must hold. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    /// The requirements, all of which must match.
    pub requirements: Vec<Requirement>,
    /// True for a selector that matches nothing (a nil `metav1.LabelSelector`).
    pub match_nothing: bool,
}

impl LabelSelector {
    /// Parses the `labelSelector` query syntax: `a=b,c!=d,e in (f,g),h notin (i),j,!k`.
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let mut lexer = Lexer { chars: s.chars().collect(), pos: 0 };
        let mut requirements = Vec::new();
        loop {
            match lexer.peek() {
                Token::End => break,
                Token::Comma if requirements.is_empty() => {
                    return Err(SelectorError::Parse("found ',', expected: !, identifier, or 'end of string'".into()));
                }
                _ => {}
            }
            requirements.push(parse_requirement(&mut lexer)?);
            match lexer.next() {
                Token::End => break,
                Token::Comma => {
                    if lexer.peek() == Token::End {
                        return Err(SelectorError::Parse("found '', expected: identifier after ','".into()));
                    }
                }
                other => {
                    return Err(SelectorError::Parse(format!("found '{other}', expected: ',' or 'end of string'")));
                }
            }
        }
        Ok(LabelSelector { requirements, match_nothing: false })
    }

    /// Converts a `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`).
    /// `null` matches nothing; `{}` matches everything.
    pub fn from_label_selector(v: &Value) -> Result<LabelSelector, SelectorError> {
        if v.is_null() {
            return Ok(LabelSelector { requirements: Vec::new(), match_nothing: true });
        }
        let Some(obj) = v.as_object() else {
            return Err(SelectorError::Invalid("label selector must be an object".into()));
        };
        let mut requirements = Vec::new();
        if let Some(labels) = obj.get("matchLabels").filter(|l| !l.is_null()) {
            let Some(labels) = labels.as_object() else {
                return Err(SelectorError::Invalid("matchLabels must be a map of strings".into()));
            };
            for (k, val) in labels {
                let Some(val) = val.as_str() else {
                    return Err(SelectorError::Invalid(format!("matchLabels[{k}] must be a string")));
                };
                check_key(k)?;
                check_value(val)?;
                requirements.push(Requirement {
                    key: k.clone(),
                    operator: Operator::Equals,
                    values: vec![val.to_string()],
                });
            }
        }
        if let Some(exprs) = obj.get("matchExpressions").filter(|l| !l.is_null()) {
            let Some(exprs) = exprs.as_array() else {
                return Err(SelectorError::Invalid("matchExpressions must be a list".into()));
            };
            for e in exprs {
                let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
                check_key(key)?;
                let op = e.get("operator").and_then(Value::as_str).unwrap_or_default();
                let values: Vec<String> = match e.get("values") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(items)) => {
                        let mut out = Vec::new();
                        for item in items {
                            let Some(s) = item.as_str() else {
                                return Err(SelectorError::Invalid("matchExpressions values must be strings".into()));
                            };
                            out.push(s.to_string());
                        }
                        out
                    }
                    Some(_) => {
                        return Err(SelectorError::Invalid("matchExpressions values must be a list".into()));
                    }
                };
                let operator = match op {
                    "In" => Operator::In,
                    "NotIn" => Operator::NotIn,
                    "Exists" => Operator::Exists,
                    "DoesNotExist" => Operator::DoesNotExist,
                    other => {
                        return Err(SelectorError::Invalid(format!(
                            "\"{other}\" is not a valid label selector operator"
                        )));
                    }
                };
                let needs_values = matches!(operator, Operator::In | Operator::NotIn);
                if needs_values && values.is_empty() {
                    return Err(SelectorError::Invalid(
                        "for 'in', 'notin' operators, values set can't be empty".into(),
                    ));
                }
                if !needs_values && !values.is_empty() {
                    return Err(SelectorError::Invalid(
                        "values set must be empty for exists and does not exist".into(),
                    ));
                }
                for v in &values {
                    check_value(v)?;
                }
                requirements.push(Requirement { key: key.to_string(), operator, values });
            }
        }
        Ok(LabelSelector { requirements, match_nothing: false })
    }

    /// True when the labels (a JSON object of strings) satisfy every requirement.
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        !self.match_nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// True when the selector places no requirement (matches every object).
    pub fn is_empty(&self) -> bool {
        !self.match_nothing && self.requirements.is_empty()
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.requirements.iter().map(|r| r.to_string()).collect();
        f.write_str(&parts.join(","))
    }
}

fn check_key(key: &str) -> Result<(), SelectorError> {
    let errors = crate::validation::is_qualified_name(key);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(SelectorError::Parse(format!("key: Invalid value: \"{key}\": {}", errors.join("; "))))
    }
}

fn check_value(value: &str) -> Result<(), SelectorError> {
    let errors = crate::validation::is_valid_label_value(value);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(SelectorError::Parse(format!("values[0]: Invalid value: \"{value}\": {}", errors.join("; "))))
    }
}

/// A token of the label selector syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    End,
    Comma,
    OpenParen,
    CloseParen,
    Not,
    Equals,
    DoubleEquals,
    NotEquals,
    Greater,
    Less,
    In,
    NotIn,
    Identifier(String),
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Token::End => "",
            Token::Comma => ",",
            Token::OpenParen => "(",
            Token::CloseParen => ")",
            Token::Not => "!",
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::NotEquals => "!=",
            Token::Greater => ">",
            Token::Less => "<",
            Token::In => "in",
            Token::NotIn => "notin",
            Token::Identifier(s) => s,
        };
        f.write_str(s)
    }
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
}

impl Lexer {
    fn peek(&mut self) -> Token {
        let saved = self.pos;
        let t = self.next();
        self.pos = saved;
        t
    }

    fn next(&mut self) -> Token {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
        let Some(&c) = self.chars.get(self.pos) else {
            return Token::End;
        };
        let next = self.chars.get(self.pos + 1).copied();
        let (token, len) = match (c, next) {
            (',', _) => (Token::Comma, 1),
            ('(', _) => (Token::OpenParen, 1),
            (')', _) => (Token::CloseParen, 1),
            ('!', Some('=')) => (Token::NotEquals, 2),
            ('!', _) => (Token::Not, 1),
            ('=', Some('=')) => (Token::DoubleEquals, 2),
            ('=', _) => (Token::Equals, 1),
            ('>', _) => (Token::Greater, 1),
            ('<', _) => (Token::Less, 1),
            _ => {
                let start = self.pos;
                let mut end = start;
                while let Some(&ch) = self.chars.get(end) {
                    if ch.is_whitespace() || ",()!=<>".contains(ch) {
                        break;
                    }
                    end += 1;
                }
                self.pos = end;
                let word: String = self.chars[start..end].iter().collect();
                return match word.as_str() {
                    "in" => Token::In,
                    "notin" => Token::NotIn,
                    _ => Token::Identifier(word),
                };
            }
        };
        self.pos += len;
        token
    }
}

fn parse_requirement(lexer: &mut Lexer) -> Result<Requirement, SelectorError> {
    let mut negated = false;
    if lexer.peek() == Token::Not {
        lexer.next();
        negated = true;
    }
    let key = match lexer.next() {
        Token::Identifier(k) => k,
        other => {
            return Err(SelectorError::Parse(format!("found '{other}', expected: identifier")));
        }
    };
    check_key(&key)?;
    if negated {
        return Ok(Requirement { key, operator: Operator::DoesNotExist, values: Vec::new() });
    }
    let operator = match lexer.peek() {
        Token::End | Token::Comma => {
            return Ok(Requirement { key, operator: Operator::Exists, values: Vec::new() });
        }
        Token::Equals | Token::DoubleEquals => Operator::Equals,
        Token::NotEquals => Operator::NotEquals,
        Token::In => Operator::In,
        Token::NotIn => Operator::NotIn,
        Token::Greater => Operator::GreaterThan,
        Token::Less => Operator::LessThan,
        other => {
            return Err(SelectorError::Parse(format!("found '{other}', expected: in, notin, =, ==, !=, gt, lt")));
        }
    };
    lexer.next();
    let values = if matches!(operator, Operator::In | Operator::NotIn) {
        if lexer.next() != Token::OpenParen {
            return Err(SelectorError::Parse("found '', expected: '('".into()));
        }
        let mut values = Vec::new();
        loop {
            match lexer.next() {
                Token::CloseParen if values.is_empty() => {
                    values.push(String::new());
                    break;
                }
                Token::Identifier(v) => values.push(v),
                Token::Comma => {
                    // an empty value between commas
                    values.push(String::new());
                    continue;
                }
                other => {
                    return Err(SelectorError::Parse(format!("found '{other}', expected: ',', ')' or identifier")));
                }
            }
            match lexer.next() {
                Token::Comma => {
                    if lexer.peek() == Token::CloseParen {
                        lexer.next();
                        values.push(String::new());
                        break;
                    }
                }
                Token::CloseParen => break,
                other => {
                    return Err(SelectorError::Parse(format!("found '{other}', expected: ',' or ')'")));
                }
            }
        }
        values
    } else {
        match lexer.peek() {
            Token::Identifier(v) => {
                lexer.next();
                vec![v]
            }
            Token::End | Token::Comma if !matches!(operator, Operator::GreaterThan | Operator::LessThan) => {
                vec![String::new()]
            }
            other => {
                return Err(SelectorError::Parse(format!("found '{other}', expected: identifier")));
            }
        }
    };
    if matches!(operator, Operator::GreaterThan | Operator::LessThan) {
        let v = values.first().map(String::as_str).unwrap_or_default();
        if v.parse::<i64>().is_err() {
            return Err(SelectorError::Parse(format!(
                "values[0]: Invalid value: \"{v}\": for 'Gt', 'Lt' operators, the value must be an integer"
            )));
        }
    } else {
        for v in &values {
            check_value(v)?;
        }
    }
    Ok(Requirement { key, operator, values })
}

/// One term of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The field path, e.g. `status.phase`.
    pub field: String,
    /// The value compared against.
    pub value: String,
    /// True for `!=`.
    pub not_equal: bool,
}

/// A field selector: all terms must hold. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    /// The terms, all of which must match.
    pub requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses the `fieldSelector` query syntax: `a=b,c==d,e!=f`; `\,` `\=` `\!` `\\` escape.
    pub fn parse(s: &str) -> Result<FieldSelector, SelectorError> {
        let mut requirements = Vec::new();
        for term in split_unescaped(s, ',') {
            if term.trim().is_empty() {
                continue;
            }
            let (field, value, not_equal) = if let Some(i) = find_unescaped(&term, "!=") {
                (&term[..i], &term[i + 2..], true)
            } else if let Some(i) = find_unescaped(&term, "==") {
                (&term[..i], &term[i + 2..], false)
            } else if let Some(i) = find_unescaped(&term, "=") {
                (&term[..i], &term[i + 1..], false)
            } else {
                return Err(SelectorError::Invalid(format!("invalid selector: '{s}'; can't understand '{term}'")));
            };
            requirements.push(FieldRequirement { field: field.trim().to_string(), value: unescape(value), not_equal });
        }
        Ok(FieldSelector { requirements })
    }

    /// Fails with "field label not supported" for a field the kind cannot be selected by.
    pub fn check_supported(&self, res: &ResourceInfo) -> Result<(), SelectorError> {
        for r in &self.requirements {
            if field_value(res, &Value::Null, &r.field).is_none() {
                return Err(SelectorError::FieldNotSupported(r.field.clone()));
            }
        }
        Ok(())
    }

    /// True when `obj` satisfies every term; fails for unsupported fields.
    pub fn matches(&self, res: &ResourceInfo, obj: &Value) -> Result<bool, SelectorError> {
        for r in &self.requirements {
            let Some(actual) = field_value(res, obj, &r.field) else {
                return Err(SelectorError::FieldNotSupported(r.field.clone()));
            };
            if (actual == r.value) == r.not_equal {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// True when the selector has no terms.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            current.push('\\');
            current.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            out.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    if escaped {
        current.push('\\');
    }
    out.push(current);
    out
}

fn find_unescaped(s: &str, pat: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        // Bytes, not `&s[i..]`: after a backslash `i` may sit inside a multi-byte character.
        if bytes[i..].starts_with(pat.as_bytes()) {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of a selectable field of `obj` as a string, or None when the kind does not
/// support selecting by that field. Absent fields read as "".
fn field_value(res: &ResourceInfo, obj: &Value, field: &str) -> Option<String> {
    let text = |path: &[&str]| -> String {
        let mut v = obj;
        for p in path {
            v = v.get(*p).unwrap_or(&Value::Null);
        }
        match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => String::new(),
        }
    };
    let path: Vec<&str> = field.split('.').collect();
    match field {
        "metadata.name" | "metadata.namespace" => return Some(text(&path)),
        _ => {}
    }
    if res.definition.is_empty() {
        return None; // custom resources: metadata only
    }
    let supported: &[&str] = match (res.group.as_str(), res.kind.as_str()) {
        ("", "Pod") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ("events.k8s.io", "Event") => &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "type",
        ],
        ("", "Event") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "type",
        ],
        ("", "Secret") => &["type"],
        ("", "Namespace") => &["status.phase"],
        ("", "ReplicationController") | ("apps", "ReplicaSet") => &["status.replicas"],
        ("batch", "Job") => &["status.successful"],
        ("", "Service") => &["spec.clusterIP", "spec.type"],
        ("certificates.k8s.io", "CertificateSigningRequest") => &["spec.signerName"],
        _ => &[],
    };
    if supported.contains(&field) {
        let value = text(&path);
        // integers default to 0 when absent
        if value.is_empty() && matches!(field, "status.replicas" | "status.successful") {
            return Some("0".into());
        }
        return Some(value);
    }
    match (res.kind.as_str(), field) {
        ("Pod", "spec.hostNetwork") => Some(text(&path).eq("true").to_string()),
        ("Node", "spec.unschedulable") => Some(text(&path).eq("true").to_string()),
        ("Event", "source") => {
            let (source, controller) = if res.group.is_empty() {
                (text(&["source", "component"]), text(&["reportingComponent"]))
            } else {
                (text(&["deprecatedSource", "component"]), text(&["reportingController"]))
            };
            Some(if source.is_empty() { controller } else { source })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::registry::find_builtin;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    /// Parses `sel` and checks it against each `(labels, expected)` pair.
    fn check(sel: &str, cases: &[(Value, bool)]) {
        let parsed = LabelSelector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
        for (l, want) in cases {
            assert_eq!(parsed.matches(&labels(l.clone())), *want, "{sel} on {l}");
        }
    }

    fn check_err(sel: &str, expected: &str) {
        match LabelSelector::parse(sel) {
            Ok(s) => panic!("{sel} parsed as {s:?}"),
            Err(e) => assert!(e.to_string().contains(expected), "{sel}: {e}"),
        }
    }

    #[test]
    fn label_selectors_match() {
        check("", &[(json!({}), true), (json!({"a": "b"}), true)]);
        check("a=b", &[(json!({"a": "b"}), true), (json!({"a": "c"}), false), (json!({}), false)]);
        check("a==b", &[(json!({"a": "b"}), true), (json!({"a": "c"}), false)]);
        check("a!=b", &[(json!({"a": "b"}), false), (json!({"a": "c"}), true), (json!({}), true)]);
        check("a in (b, c)", &[(json!({"a": "b"}), true), (json!({"a": "c"}), true), (json!({"a": "d"}), false)]);
        check("a notin (b,c)", &[(json!({"a": "b"}), false), (json!({"a": "d"}), true), (json!({}), true)]);
        check("a", &[(json!({"a": ""}), true), (json!({"b": "x"}), false)]);
        check("!a", &[(json!({"a": ""}), false), (json!({"b": "x"}), true)]);
        check("a=b,c", &[(json!({"a": "b", "c": "1"}), true), (json!({"a": "b"}), false)]);
        check(" a = b , ! c ", &[(json!({"a": "b"}), true), (json!({"a": "b", "c": "1"}), false)]);
        check("app.kubernetes.io/name=web", &[(json!({"app.kubernetes.io/name": "web"}), true)]);
        check("a>5", &[(json!({"a": "6"}), true), (json!({"a": "5"}), false), (json!({"a": "x"}), false)]);
        check("a<5", &[(json!({"a": "4"}), true), (json!({}), false)]);
        check("a=", &[(json!({"a": ""}), true), (json!({"a": "x"}), false)]);
    }

    #[test]
    fn label_selector_errors() {
        check_err("a=b c", "found 'c', expected: ',' or 'end of string'");
        check_err("a in b", "expected: '('");
        check_err("a in (b", "expected: ',' or ')'");
        check_err(",a", "unable to parse requirement");
        check_err("a=b,", "identifier after ','");
        check_err("Bad Key=x", "unable to parse requirement");
        check_err("-a=b", "name part must consist of alphanumeric characters");
        check_err("a=b_", "unable to parse requirement");
        check_err("a=(b)", "expected: identifier");
        check_err("a>x", "must be an integer");
        check_err("!", "expected: identifier");
        check_err("a notin", "expected: '('");
    }

    #[test]
    fn label_selector_display_round_trips() {
        for s in ["a=b", "a!=b", "a in (b,c)", "a notin (b)", "a", "!a", "a=b,c"] {
            assert_eq!(LabelSelector::parse(s).map(|l| l.to_string()), Ok(s.to_string()));
        }
    }

    fn check_object(sel: Value, cases: &[(Value, bool)]) {
        let parsed = LabelSelector::from_label_selector(&sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
        for (l, want) in cases {
            assert_eq!(parsed.matches(&labels(l.clone())), *want, "{sel} on {l}");
        }
    }

    #[test]
    fn label_selector_objects() {
        check_object(json!(null), &[(json!({}), false), (json!({"a": "b"}), false)]);
        check_object(json!({}), &[(json!({}), true)]);
        check_object(
            json!({"matchLabels": {"app": "web"}}),
            &[(json!({"app": "web", "x": "y"}), true), (json!({}), false)],
        );
        check_object(
            json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]}]}),
            &[(json!({"tier": "be"}), true), (json!({"tier": "db"}), false)],
        );
        check_object(
            json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["fe"]}]}),
            &[(json!({}), true), (json!({"tier": "fe"}), false)],
        );
        check_object(
            json!({"matchExpressions": [{"key": "a", "operator": "Exists"}]}),
            &[(json!({"a": "1"}), true), (json!({}), false)],
        );
        check_object(
            json!({"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "b", "operator": "DoesNotExist"}]}),
            &[(json!({"a": "1"}), true), (json!({"a": "1", "b": "2"}), false)],
        );
    }

    #[test]
    fn label_selector_object_errors() {
        for bad in [
            json!("a=b"),
            json!({"matchLabels": {"a": 1}}),
            json!({"matchLabels": {"a b": "c"}}),
            json!({"matchExpressions": [{"key": "a", "operator": "In"}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "Foo"}]}),
            json!({"matchExpressions": [{"key": "", "operator": "Exists"}]}),
            json!({"matchExpressions": "x"}),
        ] {
            assert!(LabelSelector::from_label_selector(&bad).is_err(), "{bad}");
        }
    }

    fn check_field(plural: &str, sel: &str, obj: Value, expected: Result<bool, &str>) {
        let res = find_builtin(if plural == "jobs" { "batch" } else { "" }, "v1", plural).expect("resource");
        let result = FieldSelector::parse(sel).and_then(|f| f.matches(res, &obj)).map_err(|e| e.to_string());
        assert_eq!(result, expected.map_err(str::to_string), "{plural} {sel}");
    }

    #[test]
    fn field_selectors() {
        let pod = json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        check_field("pods", "", pod.clone(), Ok(true));
        check_field("pods", "metadata.name=p", pod.clone(), Ok(true));
        check_field("pods", "metadata.name==q", pod.clone(), Ok(false));
        check_field("pods", "metadata.namespace!=ns", pod.clone(), Ok(false));
        check_field("pods", "spec.nodeName=n1,status.phase=Running", pod.clone(), Ok(true));
        check_field("pods", "spec.nodeName=", pod.clone(), Ok(false));
        check_field("pods", "status.podIP=", pod.clone(), Ok(true));
        check_field("pods", "spec.hostNetwork=false", pod.clone(), Ok(true));
        check_field("pods", "spec.foo=bar", pod.clone(), Err("field label not supported: spec.foo"));
        check_field("configmaps", "spec.nodeName=x", json!({}), Err("field label not supported: spec.nodeName"));
        check_field("secrets", "type=Opaque", json!({"type": "Opaque"}), Ok(true));
        check_field("nodes", "spec.unschedulable=false", json!({}), Ok(true));
        check_field(
            "events",
            "involvedObject.name=p,type=Warning",
            json!({"involvedObject": {"name": "p"}, "type": "Warning"}),
            Ok(true),
        );
        check_field("events", "source=kubelet", json!({"source": {"component": "kubelet"}}), Ok(true));
        check_field("jobs", "status.successful=0", json!({}), Ok(true));
        check_field("events", "source=kubelet", json!({"reportingComponent": "kubelet"}), Ok(true));
        check_field("events", "regarding.name=p", json!({}), Err("field label not supported: regarding.name"));
        let events = find_builtin("events.k8s.io", "v1", "events").expect("events");
        let ev = json!({"regarding": {"kind": "Pod", "name": "p"}, "reportingController": "kubelet"});
        for (sel, want) in [
            ("regarding.kind=Pod,regarding.name=p", Ok(true)),
            ("reportingController=kubelet,source=kubelet", Ok(true)),
            ("regarding.name=q", Ok(false)),
            ("involvedObject.name=p", Err(SelectorError::FieldNotSupported("involvedObject.name".into()))),
        ] {
            let parsed = FieldSelector::parse(sel).expect("parse");
            assert_eq!(parsed.matches(events, &ev), want, "{sel}");
        }
        check_field("replicationcontrollers", "status.replicas=3", json!({"status": {"replicas": 3}}), Ok(true));
        check_field(
            "pods",
            "metadata.name",
            pod.clone(),
            Err("invalid selector: 'metadata.name'; can't understand 'metadata.name'"),
        );
        check_field("pods", r"metadata.name=a\,b", json!({"metadata": {"name": "a,b"}}), Ok(true));
        // Multi-byte characters, also right after a backslash (found by tests/fuzz.rs: it panicked).
        check_field("pods", "metadata.name=ü", json!({"metadata": {"name": "ü"}}), Ok(true));
        check_field("pods", "metadata.name!=\\üb", json!({"metadata": {"name": "x"}}), Ok(true));
        assert!(FieldSelector::parse("a\\ۮb!=c").is_ok());
        assert!(FieldSelector::parse("a\\ۮ").is_err());
    }

    #[test]
    fn field_selector_support_check() {
        let pods = find_builtin("", "v1", "pods").expect("pods");
        let sel = FieldSelector::parse("status.phase=Running").expect("parse");
        assert_eq!(sel.check_supported(pods), Ok(()));
        let cms = find_builtin("", "v1", "configmaps").expect("cms");
        assert_eq!(sel.check_supported(cms), Err(SelectorError::FieldNotSupported("status.phase".into())));
        let mut custom = cms.clone();
        custom.definition.clear();
        custom.kind = "Pod".into();
        assert!(sel.check_supported(&custom).is_err());
        assert!(FieldSelector::parse("metadata.name=x").expect("parse").check_supported(&custom).is_ok());
    }
}
