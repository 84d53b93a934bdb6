//! The OpenAPI v2 document in the protobuf form of gnostic's `openapi.v2.Document`, the
//! only form kubectl reads from `/openapi/v2` (it asks for
//! `application/com.github.proto-openapi.spec.v2@v1.0+protobuf` and validates the items
//! of a `kind: List` against it on the client side).
//!
//! The document is built as JSON (see `openapi::v2_document`) and written here field by
//! field: the messages and field numbers are gnostic's. Vendor extensions, `default`,
//! `enum` and `example` values are gnostic `Any` messages carrying their value as YAML
//! text; JSON text is valid YAML, so they carry the value's JSON.

use serde_json::{Map, Value};

use super::wire::Writer;

/// Encodes an OpenAPI v2 (Swagger 2.0) document as an `openapi.v2.Document` message.
/// Keys the message has no field for are left out (as gnostic drops them).
pub fn encode_openapi_v2(document: &Value) -> Vec<u8> {
    let mut w = Writer::default();
    let Some(doc) = document.as_object() else { return w.buf };
    string(&mut w, 1, doc.get("swagger"));
    if let Some(Value::Object(info)) = doc.get("info") {
        message(&mut w, 2, |w| {
            string(w, 1, info.get("title"));
            string(w, 2, info.get("version"));
            string(w, 3, info.get("description"));
            extensions(w, 7, info);
        });
    }
    string(&mut w, 3, doc.get("host"));
    string(&mut w, 4, doc.get("basePath"));
    strings(&mut w, 5, doc.get("schemes"));
    strings(&mut w, 6, doc.get("consumes"));
    strings(&mut w, 7, doc.get("produces"));
    if let Some(Value::Object(paths)) = doc.get("paths") {
        // Paths: 1 vendor extensions, 2 NamedPathItem { 1 name, 2 PathItem }.
        message(&mut w, 8, |w| {
            for (name, item) in paths {
                if name.starts_with("x-") {
                    named_any(w, 1, name, item);
                } else {
                    named(w, 2, name, |w| path_item(w, item));
                }
            }
        });
    }
    if let Some(Value::Object(definitions)) = doc.get("definitions") {
        // Definitions: 1 NamedSchema { 1 name, 2 Schema }.
        message(&mut w, 9, |w| {
            for (name, s) in definitions {
                named(w, 1, name, |w| schema(w, s));
            }
        });
    }
    extensions(&mut w, 16, doc);
    w.buf
}

/// A nested message: written into its own buffer, then as a length-delimited field.
fn message(w: &mut Writer, number: u32, body: impl FnOnce(&mut Writer)) {
    let mut inner = Writer::default();
    body(&mut inner);
    w.bytes_field(number, &inner.buf);
}

/// gnostic's `Named*` entry of an ordered map: `{ 1 name, 2 value }`.
fn named(w: &mut Writer, number: u32, name: &str, value: impl FnOnce(&mut Writer)) {
    message(w, number, |w| {
        w.bytes_field(1, name.as_bytes());
        message(w, 2, value);
    });
}

fn string(w: &mut Writer, number: u32, value: Option<&Value>) {
    if let Some(s) = value.and_then(Value::as_str).filter(|s| !s.is_empty()) {
        w.bytes_field(number, s.as_bytes());
    }
}

/// A repeated string field from a JSON array (or a single string).
fn strings(w: &mut Writer, number: u32, value: Option<&Value>) {
    match value {
        Some(Value::Array(items)) => items.iter().for_each(|v| string(w, number, Some(v))),
        Some(v @ Value::String(_)) => string(w, number, Some(v)),
        _ => {}
    }
}

fn boolean(w: &mut Writer, number: u32, value: Option<&Value>) {
    if value.and_then(Value::as_bool) == Some(true) {
        w.varint_field(number, 1);
    }
}

fn int64(w: &mut Writer, number: u32, value: Option<&Value>) {
    if let Some(n) = value.and_then(Value::as_i64) {
        // int64 is written as its two's-complement varint.
        w.varint_field(number, n as u64);
    }
}

fn double(w: &mut Writer, number: u32, value: Option<&Value>) {
    if let Some(n) = value.and_then(Value::as_f64) {
        w.fixed64_field(number, n.to_bits());
    }
}

/// gnostic's `Any { 1 google.protobuf.Any, 2 yaml }`, with the value as YAML (JSON) text.
fn any(w: &mut Writer, number: u32, value: &Value) {
    message(w, number, |w| w.bytes_field(2, value.to_string().as_bytes()));
}

fn named_any(w: &mut Writer, number: u32, name: &str, value: &Value) {
    named(w, number, name, |w| w.bytes_field(2, value.to_string().as_bytes()));
}

/// The `x-` keys of an object as repeated `NamedAny` entries.
fn extensions(w: &mut Writer, number: u32, object: &Map<String, Value>) {
    for (key, value) in object.iter().filter(|(k, _)| k.starts_with("x-")) {
        named_any(w, number, key, value);
    }
}

/// `openapi.v2.Schema`.
fn schema(w: &mut Writer, s: &Value) {
    let Some(o) = s.as_object() else { return };
    string(w, 1, o.get("$ref"));
    string(w, 2, o.get("format"));
    string(w, 3, o.get("title"));
    string(w, 4, o.get("description"));
    if let Some(v) = o.get("default") {
        any(w, 5, v);
    }
    double(w, 6, o.get("multipleOf"));
    double(w, 7, o.get("maximum"));
    boolean(w, 8, o.get("exclusiveMaximum"));
    double(w, 9, o.get("minimum"));
    boolean(w, 10, o.get("exclusiveMinimum"));
    int64(w, 11, o.get("maxLength"));
    int64(w, 12, o.get("minLength"));
    string(w, 13, o.get("pattern"));
    int64(w, 14, o.get("maxItems"));
    int64(w, 15, o.get("minItems"));
    boolean(w, 16, o.get("uniqueItems"));
    int64(w, 17, o.get("maxProperties"));
    int64(w, 18, o.get("minProperties"));
    strings(w, 19, o.get("required"));
    if let Some(Value::Array(values)) = o.get("enum") {
        values.iter().for_each(|v| any(w, 20, v));
    }
    match o.get("additionalProperties") {
        // AdditionalPropertiesItem: oneof { 1 Schema, 2 bool }.
        Some(Value::Bool(b)) => message(w, 21, |w| w.varint_field(2, u64::from(*b))),
        Some(v @ Value::Object(_)) => message(w, 21, |w| message(w, 1, |w| schema(w, v))),
        _ => {}
    }
    if let Some(t) = o.get("type") {
        // TypeItem: 1 repeated string.
        message(w, 22, |w| strings(w, 1, Some(t)));
    }
    match o.get("items") {
        // ItemsItem: 1 repeated Schema.
        Some(Value::Array(items)) => message(w, 23, |w| items.iter().for_each(|i| message(w, 1, |w| schema(w, i)))),
        Some(v @ Value::Object(_)) => message(w, 23, |w| message(w, 1, |w| schema(w, v))),
        _ => {}
    }
    if let Some(Value::Array(all)) = o.get("allOf") {
        all.iter().for_each(|s| message(w, 24, |w| schema(w, s)));
    }
    if let Some(Value::Object(properties)) = o.get("properties") {
        // Properties: 1 NamedSchema.
        message(w, 25, |w| {
            for (name, p) in properties {
                named(w, 1, name, |w| schema(w, p));
            }
        });
    }
    string(w, 26, o.get("discriminator"));
    boolean(w, 27, o.get("readOnly"));
    if let Some(v) = o.get("example") {
        any(w, 30, v);
    }
    extensions(w, 31, o);
}

/// `openapi.v2.PathItem`.
fn path_item(w: &mut Writer, item: &Value) {
    let Some(o) = item.as_object() else { return };
    string(w, 1, o.get("$ref"));
    for (method, number) in
        [("get", 2), ("put", 3), ("post", 4), ("delete", 5), ("options", 6), ("head", 7), ("patch", 8)]
    {
        if let Some(op) = o.get(method) {
            message(w, number, |w| operation(w, op));
        }
    }
    if let Some(Value::Array(parameters)) = o.get("parameters") {
        parameters.iter().for_each(|p| parameters_item(w, 9, p));
    }
    extensions(w, 10, o);
}

/// `openapi.v2.Operation`.
fn operation(w: &mut Writer, op: &Value) {
    let Some(o) = op.as_object() else { return };
    strings(w, 1, o.get("tags"));
    string(w, 2, o.get("summary"));
    string(w, 3, o.get("description"));
    string(w, 5, o.get("operationId"));
    strings(w, 6, o.get("produces"));
    strings(w, 7, o.get("consumes"));
    if let Some(Value::Array(parameters)) = o.get("parameters") {
        parameters.iter().for_each(|p| parameters_item(w, 8, p));
    }
    if let Some(Value::Object(responses)) = o.get("responses") {
        // Responses: 1 NamedResponseValue { name, ResponseValue: oneof { 1 Response, 2 JsonReference } }.
        message(w, 9, |w| {
            for (code, response) in responses {
                if code.starts_with("x-") {
                    named_any(w, 2, code, response);
                    continue;
                }
                named(w, 1, code, |w| match response.get("$ref") {
                    Some(r) => message(w, 2, |w| string(w, 1, Some(r))),
                    None => message(w, 1, |w| {
                        string(w, 1, response.get("description"));
                        if let Some(s) = response.get("schema") {
                            // SchemaItem: oneof { 1 Schema, 2 FileSchema }.
                            message(w, 2, |w| message(w, 1, |w| schema(w, s)));
                        }
                        if let Value::Object(r) = response {
                            extensions(w, 5, r);
                        }
                    }),
                });
            }
        });
    }
    strings(w, 10, o.get("schemes"));
    boolean(w, 11, o.get("deprecated"));
    extensions(w, 13, o);
}

/// `openapi.v2.ParametersItem`: oneof { 1 Parameter, 2 JsonReference }.
fn parameters_item(w: &mut Writer, number: u32, p: &Value) {
    let Some(o) = p.as_object() else { return };
    message(w, number, |w| {
        if let Some(r) = o.get("$ref") {
            message(w, 2, |w| {
                string(w, 1, Some(r));
                string(w, 2, o.get("description"));
            });
            return;
        }
        // Parameter: oneof { 1 BodyParameter, 2 NonBodyParameter }.
        message(w, 1, |w| match o.get("in").and_then(Value::as_str) {
            Some("body") => message(w, 1, |w| {
                string(w, 1, o.get("description"));
                string(w, 2, o.get("name"));
                string(w, 3, o.get("in"));
                boolean(w, 4, o.get("required"));
                if let Some(s) = o.get("schema") {
                    message(w, 5, |w| schema(w, s));
                }
                extensions(w, 6, o);
            }),
            // NonBodyParameter: oneof { 1 header, 2 formData, 3 query, 4 path }. The
            // query and formData sub-schemas have `allowEmptyValue` as field 5, which
            // moves every later field up by one against the header and path ones.
            Some(kind @ ("header" | "formData" | "query" | "path")) => {
                let (which, shift) = match kind {
                    "header" => (1, 0),
                    "formData" => (2, 1),
                    "query" => (3, 1),
                    _ => (4, 0),
                };
                message(w, 2, |w| {
                    message(w, which, |w| {
                        boolean(w, 1, o.get("required"));
                        string(w, 2, o.get("in"));
                        string(w, 3, o.get("description"));
                        string(w, 4, o.get("name"));
                        if shift == 1 {
                            boolean(w, 5, o.get("allowEmptyValue"));
                        }
                        string(w, 5 + shift, o.get("type"));
                        string(w, 6 + shift, o.get("format"));
                        string(w, 8 + shift, o.get("collectionFormat"));
                        if let Some(v) = o.get("default") {
                            any(w, 9 + shift, v);
                        }
                        boolean(w, 19 + shift, o.get("uniqueItems"));
                        if let Some(Value::Array(values)) = o.get("enum") {
                            values.iter().for_each(|v| any(w, 20 + shift, v));
                        }
                        extensions(w, 22 + shift, o);
                    })
                });
            }
            _ => {}
        });
    });
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::wire::{RawValue, Reader};
    use super::encode_openapi_v2;

    /// The length-delimited fields numbered `number` of a message.
    fn fields(buf: &[u8], number: u32) -> Vec<&[u8]> {
        let mut reader = Reader::new(buf);
        let mut out = Vec::new();
        while let Some((n, value)) = reader.field().expect("well-formed") {
            if let (true, RawValue::Len(bytes)) = (n == number, value) {
                out.push(bytes);
            }
        }
        out
    }

    fn text(buf: &[u8], number: u32) -> Vec<String> {
        fields(buf, number).into_iter().map(|b| String::from_utf8(b.to_vec()).expect("utf-8")).collect()
    }

    #[test]
    fn definitions_carry_properties_types_refs_and_extensions() {
        let doc = json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "v1.33.0"},
            "definitions": {
                "io.k8s.api.core.v1.ConfigMap": {
                    "type": "object",
                    "required": ["metadata"],
                    "properties": {
                        "data": {"type": "object", "additionalProperties": {"type": "string"}},
                        "metadata": {"$ref": "#/definitions/meta"},
                    },
                    "x-kubernetes-group-version-kind": [{"group": "", "kind": "ConfigMap", "version": "v1"}],
                }
            }
        });
        let buf = encode_openapi_v2(&doc);
        assert_eq!(text(&buf, 1), ["2.0"]);
        assert_eq!(text(fields(&buf, 2)[0], 2), ["v1.33.0"]);
        let definitions = fields(&buf, 9);
        let named = fields(definitions[0], 1);
        assert_eq!(text(named[0], 1), ["io.k8s.api.core.v1.ConfigMap"]);
        let schema = fields(named[0], 2)[0];
        assert_eq!(text(fields(schema, 22)[0], 1), ["object"], "type");
        assert_eq!(text(schema, 19), ["metadata"], "required");
        let properties = fields(fields(schema, 25)[0], 1);
        assert_eq!(properties.len(), 2);
        assert_eq!(text(properties[1], 1), ["metadata"]);
        assert_eq!(text(fields(properties[1], 2)[0], 1), ["#/definitions/meta"], "$ref");
        let data = fields(properties[0], 2)[0];
        let additional = fields(fields(data, 21)[0], 1)[0];
        assert_eq!(text(fields(additional, 22)[0], 1), ["string"]);
        let extension = fields(schema, 31)[0];
        assert_eq!(text(extension, 1), ["x-kubernetes-group-version-kind"]);
        let yaml = text(fields(extension, 2)[0], 2);
        let value: serde_json::Value = serde_json::from_str(&yaml[0]).expect("the value as JSON");
        assert_eq!(value[0]["kind"], "ConfigMap");
    }

    #[test]
    fn query_and_path_parameters_use_their_own_field_numbers() {
        let doc = json!({"paths": {"/api/v1/namespaces/{namespace}/configmaps": {
            "parameters": [{"in": "path", "name": "namespace", "type": "string", "required": true}],
            "get": {"operationId": "list", "parameters": [
                {"in": "query", "name": "limit", "type": "integer", "uniqueItems": true},
                {"in": "body", "name": "body", "required": true, "schema": {"$ref": "#/definitions/x"}},
            ], "responses": {"200": {"description": "OK", "schema": {"$ref": "#/definitions/x"}}}},
        }}});
        let buf = encode_openapi_v2(&doc);
        let named = fields(fields(&buf, 8)[0], 2)[0];
        let item = fields(named, 2)[0];
        // path parameter: ParametersItem 1 → Parameter 2 (non-body) → 4 (path) → type 5.
        let path = fields(fields(fields(fields(item, 9)[0], 1)[0], 2)[0], 4)[0];
        assert_eq!(text(path, 4), ["namespace"]);
        assert_eq!(text(path, 5), ["string"]);
        let get = fields(item, 2)[0];
        assert_eq!(text(get, 5), ["list"]);
        let parameters = fields(get, 8);
        // query parameter: type is field 6 (allowEmptyValue is 5).
        let query = fields(fields(fields(parameters[0], 1)[0], 2)[0], 3)[0];
        assert_eq!(text(query, 6), ["integer"]);
        let body = fields(fields(parameters[1], 1)[0], 1)[0];
        assert_eq!(text(body, 2), ["body"]);
        let response = fields(fields(fields(get, 9)[0], 1)[0], 2)[0];
        let ok = fields(response, 1)[0];
        assert_eq!(text(ok, 1), ["OK"]);
    }
}
