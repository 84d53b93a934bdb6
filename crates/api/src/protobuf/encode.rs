//! An object's JSON form to protobuf message bytes, walking the field tables.

use base64::Engine as _;
use serde_json::Value;

use super::table::{Card, Field, Kind, Presence, Tables};
use super::wellknown::{self, WellKnown};
use super::wire::Writer;
use super::{MAX_DEPTH, ProtobufError};

fn invalid(path: &str, expected: &'static str) -> ProtobufError {
    ProtobufError::InvalidValue { field: path.to_string(), expected }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

/// Encodes `value` as message `name`; `path` names it in errors.
pub(super) fn encode_message(
    tables: &Tables,
    name: &str,
    value: &Value,
    path: &str,
    depth: usize,
) -> Result<Vec<u8>, ProtobufError> {
    if depth > MAX_DEPTH {
        return Err(ProtobufError::TooDeep { limit: MAX_DEPTH });
    }
    let mut w = Writer::default();
    if let Some(well_known) = WellKnown::of(name) {
        encode_well_known(tables, name, well_known, value, path, depth, &mut w)?;
        return Ok(w.buf);
    }
    let object = value.as_object().ok_or_else(|| invalid(path, "an object"))?;
    let fields = tables.message(name).ok_or_else(|| ProtobufError::Table(format!("no table for message {name}")))?;
    for field in fields {
        if field.presence == Presence::Inline {
            let Kind::Message(inner) = field.kind else {
                return Err(ProtobufError::Table(format!("inline scalar in {name}")));
            };
            let bytes = encode_message(tables, inner, value, path, depth + 1)?;
            w.bytes_field(field.number, &bytes);
            continue;
        }
        let Some(v) = object.get(field.json).filter(|v| !v.is_null()) else {
            continue;
        };
        let here = join(path, field.json);
        match field.card {
            Card::One => encode_value(tables, field, field.number, v, &here, depth, &mut w)?,
            Card::Repeated => {
                for (i, item) in v.as_array().ok_or_else(|| invalid(&here, "an array"))?.iter().enumerate() {
                    let item_path = format!("{here}[{i}]");
                    encode_value(tables, field, field.number, item, &item_path, depth, &mut w)?;
                }
            }
            Card::Map => {
                for (key, item) in v.as_object().ok_or_else(|| invalid(&here, "an object"))? {
                    let mut entry = Writer::default();
                    entry.bytes_field(1, key.as_bytes());
                    encode_value(tables, field, 2, item, &join(&here, key), depth, &mut entry)?;
                    w.bytes_field(field.number, &entry.buf);
                }
            }
        }
    }
    Ok(w.buf)
}

fn encode_value(
    tables: &Tables,
    field: &Field,
    number: u32,
    v: &Value,
    path: &str,
    depth: usize,
    w: &mut Writer,
) -> Result<(), ProtobufError> {
    match field.kind {
        Kind::String => w.bytes_field(number, v.as_str().ok_or_else(|| invalid(path, "a string"))?.as_bytes()),
        Kind::Bytes => {
            let text = v.as_str().ok_or_else(|| invalid(path, "a base64 string"))?;
            let bytes =
                base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| invalid(path, "a base64 string"))?;
            w.bytes_field(number, &bytes);
        }
        Kind::Bool => w.varint_field(number, u64::from(v.as_bool().ok_or_else(|| invalid(path, "a boolean"))?)),
        Kind::Int32 => {
            let i = v.as_i64().and_then(|i| i32::try_from(i).ok()).ok_or_else(|| invalid(path, "a 32-bit integer"))?;
            // Negative int32s travel sign-extended to 64 bits.
            w.varint_field(number, i64::from(i) as u64);
        }
        Kind::Int64 => w.varint_field(number, v.as_i64().ok_or_else(|| invalid(path, "an integer"))? as u64),
        Kind::Double => w.fixed64_field(number, v.as_f64().ok_or_else(|| invalid(path, "a number"))?.to_bits()),
        Kind::Message(name) => {
            let bytes = encode_message(tables, name, v, path, depth + 1)?;
            w.bytes_field(number, &bytes);
        }
    }
    Ok(())
}

fn encode_well_known(
    tables: &Tables,
    name: &str,
    which: WellKnown,
    v: &Value,
    path: &str,
    depth: usize,
    w: &mut Writer,
) -> Result<(), ProtobufError> {
    let strings = |w: &mut Writer, number: u32, v: &Value| -> Result<(), ProtobufError> {
        for item in v.as_array().ok_or_else(|| invalid(path, "an array of strings"))? {
            w.bytes_field(number, item.as_str().ok_or_else(|| invalid(path, "an array of strings"))?.as_bytes());
        }
        Ok(())
    };
    let package = name.rsplit_once('.').map_or("", |(p, _)| p);
    let props = format!("{package}.JSONSchemaProps");
    match which {
        WellKnown::IntOrString => match v {
            Value::String(s) => {
                w.varint_field(1, 1);
                w.varint_field(2, 0);
                w.bytes_field(3, s.as_bytes());
            }
            _ => {
                let i = v
                    .as_i64()
                    .and_then(|i| i32::try_from(i).ok())
                    .ok_or_else(|| invalid(path, "an integer or a string"))?;
                w.varint_field(1, 0);
                w.varint_field(2, i64::from(i) as u64);
                w.bytes_field(3, b"");
            }
        },
        WellKnown::Quantity => match v {
            Value::String(s) => w.bytes_field(1, s.as_bytes()),
            Value::Number(n) => w.bytes_field(1, n.to_string().as_bytes()),
            _ => return Err(invalid(path, "a quantity")),
        },
        WellKnown::Time | WellKnown::MicroTime => {
            let text = v.as_str().ok_or_else(|| invalid(path, "an RFC 3339 time"))?;
            let (seconds, nanos) = wellknown::parse_time(text).ok_or_else(|| invalid(path, "an RFC 3339 time"))?;
            let nanos = if which == WellKnown::Time { 0 } else { nanos / 1000 * 1000 };
            w.varint_field(1, seconds as u64);
            w.varint_field(2, i64::from(nanos) as u64);
        }
        WellKnown::Duration => {
            let text = v.as_str().ok_or_else(|| invalid(path, "a duration"))?;
            let nanos = wellknown::parse_duration(text).ok_or_else(|| invalid(path, "a duration"))?;
            w.varint_field(1, nanos as u64);
        }
        WellKnown::RawJson => {
            let bytes = serde_json::to_vec(v).map_err(|e| ProtobufError::InvalidEmbeddedJson(e.to_string()))?;
            w.bytes_field(1, &bytes);
        }
        WellKnown::StringList => strings(w, 1, v)?,
        WellKnown::PropsOrArray => match v {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let bytes = encode_message(tables, &props, item, &format!("{path}[{i}]"), depth + 1)?;
                    w.bytes_field(2, &bytes);
                }
            }
            _ => w.bytes_field(1, &encode_message(tables, &props, v, path, depth + 1)?),
        },
        WellKnown::PropsOrBool => match v {
            Value::Bool(b) => w.varint_field(1, u64::from(*b)),
            _ => {
                w.varint_field(1, 1);
                w.bytes_field(2, &encode_message(tables, &props, v, path, depth + 1)?);
            }
        },
        WellKnown::PropsOrStringArray => match v {
            Value::Array(_) => strings(w, 2, v)?,
            _ => w.bytes_field(1, &encode_message(tables, &props, v, path, depth + 1)?),
        },
    }
    Ok(())
}
