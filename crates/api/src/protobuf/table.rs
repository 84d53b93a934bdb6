//! The field tables of every Kubernetes protobuf message, loaded from
//! `schema/protobuf.txt` (made by `scripts/gen-protobuf-schema.py`).

use std::collections::HashMap;
use std::sync::LazyLock;

static TABLE_TEXT: &str = include_str!("../../schema/protobuf.txt");

static TABLES: LazyLock<Result<Tables, String>> = LazyLock::new(|| Tables::parse(TABLE_TEXT));

/// The parsed tables, or the reason the embedded table is malformed.
pub(super) fn tables() -> Result<&'static Tables, super::ProtobufError> {
    TABLES.as_ref().map_err(|e| super::ProtobufError::Table(e.clone()))
}

/// How many values a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Card {
    One,
    Repeated,
    /// `map<string, kind>`, encoded as repeated entries with the key in field 1 and the
    /// value in field 2.
    Map,
}

/// The type of a field's value (of a map's value, for maps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    String,
    Bool,
    Int32,
    Int64,
    Double,
    Bytes,
    Message(&'static str),
}

/// When a present field appears in the JSON form (from the Go field's pointer-ness and
/// `omitempty`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Presence {
    /// A pointer: emitted whenever set, even to a zero value (`replicas: 0`).
    Pointer,
    /// `omitempty` on a value: zero values are left out.
    OmitEmpty,
    /// No `omitempty`: emitted even when zero.
    Keep,
    /// `json:",inline"`: the message's fields are merged into the parent object.
    Inline,
}

/// One field of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Field {
    pub(super) number: u32,
    pub(super) json: &'static str,
    pub(super) card: Card,
    pub(super) kind: Kind,
    pub(super) presence: Presence,
}

/// All messages and top-level kinds.
#[derive(Debug)]
pub(super) struct Tables {
    messages: HashMap<&'static str, Vec<Field>>,
    kinds: HashMap<(&'static str, &'static str), &'static str>,
}

impl Tables {
    /// The fields of a message (by full proto name), in declaration order.
    pub(super) fn message(&self, name: &str) -> Option<&[Field]> {
        self.messages.get(name).map(Vec::as_slice)
    }

    /// The message of a top-level kind (`apps/v1`, `Deployment`).
    pub(super) fn kind(&self, api_version: &str, kind: &str) -> Option<&'static str> {
        self.kinds.get(&(api_version, kind)).copied()
    }

    /// All top-level kinds as (apiVersion, kind, message).
    #[cfg(test)]
    pub(super) fn all_kinds(&self) -> impl Iterator<Item = (&'static str, &'static str, &'static str)> + '_ {
        self.kinds.iter().map(|(&(v, k), &m)| (v, k, m))
    }

    fn parse(text: &'static str) -> Result<Tables, String> {
        let mut messages: HashMap<&'static str, Vec<Field>> = HashMap::new();
        let mut kinds = HashMap::new();
        let mut current: Option<&'static str> = None;
        for (n, line) in text.lines().enumerate() {
            let bad = |what: &str| format!("schema/protobuf.txt line {}: {what}", n + 1);
            let words: Vec<&'static str> = line.split_whitespace().collect();
            match words.as_slice() {
                [] => {}
                [first, ..] if first.starts_with('#') => {}
                ["K", api_version, kind, message] => {
                    kinds.insert((*api_version, *kind), *message);
                }
                ["M", name] => {
                    messages.entry(*name).or_default();
                    current = Some(name);
                }
                ["F", number, json, card, kind, presence, rest @ ..] => {
                    let message = current.ok_or_else(|| bad("field outside a message"))?;
                    let number = number.parse().map_err(|_| bad("bad field number"))?;
                    let card = match *card {
                        "one" => Card::One,
                        "rep" => Card::Repeated,
                        "map" => Card::Map,
                        _ => return Err(bad("bad cardinality")),
                    };
                    let kind = match (*kind, rest) {
                        ("string", []) => Kind::String,
                        ("bool", []) => Kind::Bool,
                        ("int32", []) => Kind::Int32,
                        ("int64", []) => Kind::Int64,
                        ("double", []) => Kind::Double,
                        ("bytes", []) => Kind::Bytes,
                        ("message", [name]) => Kind::Message(name),
                        _ => return Err(bad("bad kind")),
                    };
                    let presence = match *presence {
                        "ptr" => Presence::Pointer,
                        "omit" => Presence::OmitEmpty,
                        "keep" => Presence::Keep,
                        "inline" => Presence::Inline,
                        _ => return Err(bad("bad presence")),
                    };
                    let json = if *json == "-" { "" } else { json };
                    messages.entry(message).or_default().push(Field { number, json, card, kind, presence });
                }
                _ => return Err(bad("unrecognised line")),
            }
        }
        for (name, fields) in &messages {
            for field in fields {
                if let Kind::Message(target) = field.kind
                    && !messages.contains_key(target)
                {
                    return Err(format!("{name}.{}: unknown message {target}", field.json));
                }
            }
        }
        for message in kinds.values() {
            if !messages.contains_key(message) {
                return Err(format!("kind table names unknown message {message}"));
            }
        }
        Ok(Tables { messages, kinds })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_table_parses() {
        let tables = tables().unwrap();
        assert_eq!(tables.kind("apps/v1", "Deployment"), Some("k8s.io.api.apps.v1.Deployment"));
        assert_eq!(tables.kind("v1", "ConfigMap"), Some("k8s.io.api.core.v1.ConfigMap"));
        let spec = tables.message("k8s.io.api.core.v1.PodSpec").unwrap();
        let host_ipc = spec.iter().find(|f| f.json == "hostIPC").unwrap();
        assert_eq!((host_ipc.kind, host_ipc.presence), (Kind::Bool, Presence::OmitEmpty));
    }

    #[test]
    fn malformed_tables_are_rejected() {
        for (text, expect) in [
            ("F 1 a one string ptr", "field outside a message"),
            ("M a\nF x a one string ptr", "bad field number"),
            ("M a\nF 1 a two string ptr", "bad cardinality"),
            ("M a\nF 1 a one float ptr", "bad kind"),
            ("M a\nF 1 a one string maybe", "bad presence"),
            ("M a\nF 1 a one message ptr b", "unknown message b"),
            ("K v1 Pod p", "unknown message p"),
            ("Z", "unrecognised line"),
        ] {
            let err = Tables::parse(text).unwrap_err();
            assert!(err.contains(expect), "{text:?}: {err}");
        }
    }
}
