//! Protobuf message bytes to the object's JSON form, walking the field tables.

use base64::Engine as _;
use serde_json::{Map, Number, Value};

use super::table::{Card, Field, Kind, Presence, Tables};
use super::wellknown::{self, WellKnown};
use super::wire::{RawValue, Reader};
use super::{MAX_DEPTH, ProtobufError};

/// Decodes the fields of message `name` from `bytes` into `out` (which may already hold
/// `apiVersion` and `kind`).
pub(super) fn decode_into(
    tables: &Tables,
    name: &str,
    bytes: &[u8],
    depth: usize,
    out: &mut Map<String, Value>,
) -> Result<(), ProtobufError> {
    if depth > MAX_DEPTH {
        return Err(ProtobufError::TooDeep { limit: MAX_DEPTH });
    }
    let fields = tables.message(name).ok_or_else(|| ProtobufError::Table(format!("no table for message {name}")))?;

    enum Slot {
        Empty,
        One(Option<Value>),
        Repeated(Vec<Value>),
        Map(Map<String, Value>),
    }
    let mut slots: Vec<Slot> = fields.iter().map(|_| Slot::Empty).collect();
    let mut inline = Map::new();

    let mut reader = Reader::new(bytes);
    while let Some((number, raw)) = reader.field()? {
        // Unknown fields (newer servers' additions) are skipped, as Go's decoder does.
        let Some(index) = fields.iter().position(|f| f.number == number) else {
            continue;
        };
        let field = &fields[index];
        match field.card {
            Card::One if field.presence == Presence::Inline => {
                let Kind::Message(inner) = field.kind else {
                    return Err(ProtobufError::Table(format!("inline scalar in {name}")));
                };
                let RawValue::Len(inner_bytes) = raw else {
                    return Err(mismatch(field, raw));
                };
                decode_into(tables, inner, inner_bytes, depth + 1, &mut inline)?;
            }
            Card::One => slots[index] = Slot::One(value(tables, field, raw, depth)?),
            Card::Repeated => {
                if !matches!(slots[index], Slot::Repeated(_)) {
                    slots[index] = Slot::Repeated(Vec::new());
                }
                if let Slot::Repeated(items) = &mut slots[index] {
                    push_repeated(tables, field, raw, depth, items)?;
                }
            }
            Card::Map => {
                let RawValue::Len(entry) = raw else {
                    return Err(mismatch(field, raw));
                };
                let (key, val) = map_entry(tables, field, entry, depth)?;
                if !matches!(slots[index], Slot::Map(_)) {
                    slots[index] = Slot::Map(Map::new());
                }
                if let Slot::Map(map) = &mut slots[index] {
                    map.insert(key, val);
                }
            }
        }
    }

    for (field, slot) in fields.iter().zip(slots) {
        let value = match slot {
            Slot::Empty | Slot::One(None) => continue,
            Slot::One(Some(v)) => {
                let scalar = !matches!(field.kind, Kind::Message(_));
                if scalar && field.presence == Presence::OmitEmpty && is_zero(&v) {
                    continue;
                }
                v
            }
            Slot::Repeated(items) => Value::Array(items),
            Slot::Map(map) => Value::Object(map),
        };
        out.insert(field.json.to_string(), value);
    }
    for (key, value) in inline {
        out.entry(key).or_insert(value);
    }
    Ok(())
}

fn mismatch(field: &Field, raw: RawValue<'_>) -> ProtobufError {
    ProtobufError::WireTypeMismatch { field: field.json.to_string(), found: raw.wire_type() }
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

/// One value of `field` (its single value, one repeated element or a map value). `None`
/// for a message whose JSON form is absent (a zero Time, an empty RawExtension).
fn value(tables: &Tables, field: &Field, raw: RawValue<'_>, depth: usize) -> Result<Option<Value>, ProtobufError> {
    let v = match (field.kind, raw) {
        (Kind::String, RawValue::Len(bytes)) => Value::String(utf8(field, bytes)?),
        (Kind::Bytes, RawValue::Len(bytes)) => Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
        (Kind::Bool, RawValue::Varint(v)) => Value::Bool(v != 0),
        // int32 values travel sign-extended to 64 bits; the low 32 bits are the value.
        (Kind::Int32, RawValue::Varint(v)) => Value::from(v as i32),
        (Kind::Int64, RawValue::Varint(v)) => Value::from(v as i64),
        (Kind::Double, RawValue::Fixed64(bits)) => double(field, f64::from_bits(bits))?,
        (Kind::Message(name), RawValue::Len(bytes)) => {
            return message(tables, name, bytes, depth + 1);
        }
        _ => return Err(mismatch(field, raw)),
    };
    Ok(Some(v))
}

fn utf8(field: &Field, bytes: &[u8]) -> Result<String, ProtobufError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ProtobufError::InvalidUtf8 { field: field.json.to_string() })
}

/// A float64 as Go's encoding/json writes it: whole numbers without a fraction.
fn double(field: &Field, f: f64) -> Result<Value, ProtobufError> {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        return Ok(Value::from(f as i64));
    }
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| ProtobufError::NonFiniteNumber { field: field.json.to_string() })
}

fn push_repeated(
    tables: &Tables,
    field: &Field,
    raw: RawValue<'_>,
    depth: usize,
    items: &mut Vec<Value>,
) -> Result<(), ProtobufError> {
    // Packed scalars: a length-delimited run of varints or fixed64s.
    if let (RawValue::Len(bytes), Kind::Bool | Kind::Int32 | Kind::Int64 | Kind::Double) = (raw, field.kind) {
        let mut packed = Reader::new(bytes);
        while !packed.is_empty() {
            let element = if field.kind == Kind::Double {
                RawValue::Fixed64(packed.fixed64()?)
            } else {
                RawValue::Varint(packed.varint()?)
            };
            if let Some(v) = value(tables, field, element, depth)? {
                items.push(v);
            }
        }
        return Ok(());
    }
    items.push(value(tables, field, raw, depth)?.unwrap_or(Value::Null));
    Ok(())
}

fn map_entry(tables: &Tables, field: &Field, entry: &[u8], depth: usize) -> Result<(String, Value), ProtobufError> {
    let mut key = String::new();
    let mut val = None;
    let mut reader = Reader::new(entry);
    while let Some((number, raw)) = reader.field()? {
        match (number, raw) {
            (1, RawValue::Len(bytes)) => key = utf8(field, bytes)?,
            (1, other) => return Err(mismatch(field, other)),
            (2, raw) => val = Some(value(tables, field, raw, depth)?.unwrap_or(Value::Null)),
            _ => {}
        }
    }
    let val = match val {
        Some(v) => v,
        // A missing value is the kind's zero value.
        None => match field.kind {
            Kind::String | Kind::Bytes => Value::String(String::new()),
            Kind::Bool => Value::Bool(false),
            Kind::Int32 | Kind::Int64 | Kind::Double => Value::from(0),
            Kind::Message(name) => message(tables, name, &[], depth + 1)?.unwrap_or(Value::Null),
        },
    };
    Ok((key, val))
}

/// The JSON form of message `name`.
fn message(tables: &Tables, name: &str, bytes: &[u8], depth: usize) -> Result<Option<Value>, ProtobufError> {
    if depth > MAX_DEPTH {
        return Err(ProtobufError::TooDeep { limit: MAX_DEPTH });
    }
    let Some(well_known) = WellKnown::of(name) else {
        let mut out = Map::new();
        decode_into(tables, name, bytes, depth, &mut out)?;
        return Ok(Some(Value::Object(out)));
    };
    let fields = Fields::read(bytes)?;
    let v = match well_known {
        WellKnown::IntOrString => match fields.varint(1)? {
            Some(1) => Value::String(fields.string(3)?.unwrap_or_default()),
            _ => Value::from(fields.varint(2)?.unwrap_or(0) as i32),
        },
        WellKnown::Quantity => {
            let text = fields.string(1)?.unwrap_or_default();
            Value::String(if text.is_empty() { "0".to_string() } else { text })
        }
        WellKnown::Time | WellKnown::MicroTime => {
            if bytes.is_empty() {
                return Ok(None);
            }
            let seconds = fields.varint(1)?.unwrap_or(0) as i64;
            let nanos = fields.varint(2)?.unwrap_or(0) as i32;
            let micros = well_known == WellKnown::MicroTime;
            Value::String(wellknown::format_time(seconds, nanos, micros)?)
        }
        WellKnown::Duration => Value::String(wellknown::format_duration(fields.varint(1)?.unwrap_or(0) as i64)),
        WellKnown::RawJson => match fields.bytes(1)? {
            None | Some([]) => return Ok(None),
            Some(raw) => serde_json::from_slice(raw).map_err(|e| ProtobufError::InvalidEmbeddedJson(e.to_string()))?,
        },
        WellKnown::StringList => Value::Array(
            fields
                .all_bytes(1)
                .map(|b| {
                    String::from_utf8(b.to_vec())
                        .map(Value::String)
                        .map_err(|_| ProtobufError::InvalidUtf8 { field: name.to_string() })
                })
                .collect::<Result<_, _>>()?,
        ),
        WellKnown::PropsOrArray | WellKnown::PropsOrBool | WellKnown::PropsOrStringArray => {
            return props_union(tables, name, well_known, &fields, depth);
        }
    };
    Ok(Some(v))
}

/// The `JSONSchemaPropsOr*` unions of apiextensions: a schema, or a bool / a list.
fn props_union(
    tables: &Tables,
    name: &str,
    which: WellKnown,
    fields: &Fields<'_>,
    depth: usize,
) -> Result<Option<Value>, ProtobufError> {
    let package = name.rsplit_once('.').map_or("", |(p, _)| p);
    let props = format!("{package}.JSONSchemaProps");
    let schema = |bytes: &[u8]| message(tables, &props, bytes, depth + 1);
    let (schema_field, other) = match which {
        WellKnown::PropsOrBool => (2, 1),
        _ => (1, 2),
    };
    let others: Vec<&[u8]> = fields.all_bytes(other).collect();
    match which {
        WellKnown::PropsOrBool => {
            if let Some(bytes) = fields.bytes(schema_field)? {
                return schema(bytes);
            }
            Ok(Some(Value::Bool(fields.varint(other)?.unwrap_or(0) != 0)))
        }
        WellKnown::PropsOrArray if !others.is_empty() => {
            let items =
                others.into_iter().map(|b| schema(b).map(|v| v.unwrap_or(Value::Null))).collect::<Result<_, _>>()?;
            Ok(Some(Value::Array(items)))
        }
        WellKnown::PropsOrStringArray if !others.is_empty() => {
            let items = others
                .into_iter()
                .map(|b| {
                    String::from_utf8(b.to_vec())
                        .map(Value::String)
                        .map_err(|_| ProtobufError::InvalidUtf8 { field: name.to_string() })
                })
                .collect::<Result<_, _>>()?;
            Ok(Some(Value::Array(items)))
        }
        _ => schema(fields.bytes(schema_field)?.unwrap_or(&[])),
    }
}

/// The raw fields of a small message, for the well-known messages read by number.
struct Fields<'a> {
    raw: Vec<(u32, RawValue<'a>)>,
}

impl<'a> Fields<'a> {
    fn read(bytes: &'a [u8]) -> Result<Fields<'a>, ProtobufError> {
        let mut reader = Reader::new(bytes);
        let mut raw = Vec::new();
        while let Some(field) = reader.field()? {
            raw.push(field);
        }
        Ok(Fields { raw })
    }

    fn last(&self, number: u32) -> Option<RawValue<'a>> {
        self.raw.iter().rev().find(|(n, _)| *n == number).map(|(_, v)| *v)
    }

    fn expect(number: u32, found: RawValue<'_>) -> ProtobufError {
        ProtobufError::WireTypeMismatch { field: format!("#{number}"), found: found.wire_type() }
    }

    fn varint(&self, number: u32) -> Result<Option<u64>, ProtobufError> {
        match self.last(number) {
            None => Ok(None),
            Some(RawValue::Varint(v)) => Ok(Some(v)),
            Some(other) => Err(Self::expect(number, other)),
        }
    }

    fn bytes(&self, number: u32) -> Result<Option<&'a [u8]>, ProtobufError> {
        match self.last(number) {
            None => Ok(None),
            Some(RawValue::Len(b)) => Ok(Some(b)),
            Some(other) => Err(Self::expect(number, other)),
        }
    }

    fn string(&self, number: u32) -> Result<Option<String>, ProtobufError> {
        self.bytes(number)?
            .map(|b| {
                String::from_utf8(b.to_vec()).map_err(|_| ProtobufError::InvalidUtf8 { field: format!("#{number}") })
            })
            .transpose()
    }

    fn all_bytes(&self, number: u32) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.raw.iter().filter_map(move |(n, v)| match v {
            RawValue::Len(b) if *n == number => Some(*b),
            _ => None,
        })
    }
}
