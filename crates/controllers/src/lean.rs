//! Decoding watched objects without their `metadata.managedFields`, as kube-controller-manager's
//! informers drop them (its shared informer factory's transform), but before they are built.
//!
//! No controller reads managedFields, yet they are most of a small object's metadata: one
//! entry per writer, each a tree of field names (`fieldsV1`) decoded into a
//! `serde_json::Value` map per level. Measured on a release build, decoding them was 40 % of
//! decoding a watched Pod, and copying them into the reflector's cache most of that copy.
//! Dropping them after decoding (as the scheduler does) saves the copies but not the decoding.
//!
//! [`Lean<K>`] decodes a `K` through a [`Deserializer`] adapter that passes every field
//! through untouched except the `managedFields` of the top-level `metadata`, which it skips
//! as [`IgnoredAny`] (parsed for its length, nothing allocated). The adapter only wraps the
//! object's own map and its `metadata` map: spec and status are decoded straight from the
//! inner deserializer.

use std::borrow::Cow;
use std::fmt;

use berth_api::fields::Key;
use kube::Resource;
use kube::api::ObjectMeta;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

/// A `K` decoded without `metadata.managedFields` (they are `None`).
#[derive(Clone, Debug)]
pub(crate) struct Lean<K>(pub(crate) K);

impl<'de, K: de::Deserialize<'de>> de::Deserialize<'de> for Lean<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        K::deserialize(Skipping { inner: deserializer, level: Level::Object }).map(Lean)
    }
}

/// `ObjectMeta` decoded without `managedFields`, for a `#[serde(deserialize_with)]` field.
pub(crate) fn object_meta<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ObjectMeta, D::Error> {
    de::Deserialize::deserialize(Skipping { inner: deserializer, level: Level::Meta })
}

impl<K: Resource> Resource for Lean<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }
    fn api_version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::api_version(dt)
    }
    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        self.0.meta()
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        self.0.meta_mut()
    }
}

/// Where in the object a map is: the object itself (whose `metadata` is wrapped again) or
/// its metadata (whose `managedFields` are skipped).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Object,
    Meta,
}

/// The deserializer adapter: the inner deserializer, with the maps it yields filtered.
struct Skipping<D> {
    inner: D,
    level: Level,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Skipping<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_any(Wrap { visitor, level: self.level })
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_option(Wrap { visitor, level: self.level })
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_map(Wrap { visitor, level: self.level })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_struct(name, fields, Wrap { visitor, level: self.level })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct newtype_struct seq tuple tuple_struct enum identifier ignored_any
    }
}

/// A visitor passing the maps it is given on filtered.
struct Wrap<V> {
    visitor: V,
    level: Level,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_map(SkipMap { map, level: self.level, metadata_next: false })
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_some(Skipping { inner: deserializer, level: self.level })
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_unit()
    }
}

/// A map without the skipped key; at the object level, its `metadata` value wrapped.
struct SkipMap<A> {
    map: A,
    level: Level,
    metadata_next: bool,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for SkipMap<A> {
    type Error = A::Error;

    fn next_key_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<Option<S::Value>, A::Error> {
        loop {
            let Some(Key(key)) = self.map.next_key::<Key<'de>>()? else { return Ok(None) };
            let key = key.as_ref();
            if self.level == Level::Meta && key == "managedFields" {
                self.map.next_value::<IgnoredAny>()?;
                continue;
            }
            self.metadata_next = self.level == Level::Object && key == "metadata";
            return seed.deserialize(de::value::StrDeserializer::new(key)).map(Some);
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        if std::mem::take(&mut self.metadata_next) {
            self.map.next_value_seed(MetaSeed(seed))
        } else {
            self.map.next_value_seed(seed)
        }
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// A seed whose deserializer is wrapped at the metadata level.
struct MetaSeed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for MetaSeed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Skipping { inner: deserializer, level: Level::Meta })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use kube::core::WatchEvent;
    use serde_json::json;

    fn pod_json() -> serde_json::Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "web-1",
                "namespace": "default",
                "labels": {"app": "web"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "u1", "controller": true}],
                "managedFields": [{
                    "manager": "kubectl",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}
                }],
                "resourceVersion": "7",
                "uid": "p1"
            },
            "spec": {"containers": [{"name": "c", "image": "busybox"}], "nodeName": "n1"},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False"}]}
        })
    }

    #[test]
    fn a_lean_pod_is_the_pod_without_its_managed_fields() {
        let text = pod_json().to_string();
        let lean: Lean<Pod> = serde_json::from_str(&text).unwrap();
        let mut full: Pod = serde_json::from_str(&text).unwrap();
        assert!(full.metadata.managed_fields.is_some());
        full.metadata.managed_fields = None;
        assert_eq!(lean.0, full);
    }

    #[test]
    fn only_the_top_level_metadata_is_filtered() {
        // A nested `metadata` (a pod template's) keeps its managedFields: the adapter wraps
        // the object's own metadata only.
        let text = json!({
            "metadata": {"name": "x", "managedFields": [{"manager": "m"}]},
            "template": {"metadata": {"managedFields": [{"manager": "t"}]}}
        })
        .to_string();
        let lean: Lean<k8s_openapi::api::core::v1::PodTemplate> = serde_json::from_str(&text).unwrap();
        assert!(lean.0.metadata.managed_fields.is_none());
        let template = lean.0.template.unwrap();
        assert_eq!(template.metadata.unwrap().managed_fields.unwrap()[0].manager.as_deref(), Some("t"));
    }

    #[test]
    fn watch_events_decode_as_before() {
        let line = json!({"type": "MODIFIED", "object": pod_json()}).to_string();
        let WatchEvent::Modified(Lean(pod)) = serde_json::from_str::<WatchEvent<Lean<Pod>>>(&line).unwrap() else {
            panic!("not a MODIFIED event");
        };
        assert_eq!(pod.metadata.name.as_deref(), Some("web-1"));
        assert_eq!(pod.metadata.owner_references.unwrap()[0].uid, "u1");
        assert_eq!(pod.spec.unwrap().node_name.as_deref(), Some("n1"));
        assert!(pod.metadata.managed_fields.is_none());
        // Escaped keys (not borrowable) and a null metadata still decode.
        let escaped = r#"{"metadata":{"na\u006de":"e","managedFields":[]},"spec":null}"#;
        assert_eq!(serde_json::from_str::<Lean<Pod>>(escaped).unwrap().0.metadata.name.as_deref(), Some("e"));
        let bare: Lean<Pod> = serde_json::from_str(r#"{"metadata":null}"#).unwrap();
        assert_eq!(bare.0, Pod::default());
    }

    #[test]
    fn errors_still_name_the_position() {
        let err = serde_json::from_str::<Lean<Pod>>(r#"{"metadata":{"name":5}}"#).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        assert!(serde_json::from_str::<Lean<Pod>>("[1]").is_err());
    }

    #[test]
    fn object_meta_alone() {
        #[derive(serde::Deserialize)]
        struct Meta {
            #[serde(deserialize_with = "object_meta")]
            metadata: ObjectMeta,
        }
        let m: Meta = serde_json::from_str(&pod_json().to_string()).unwrap();
        assert_eq!(m.metadata.uid.as_deref(), Some("p1"));
        assert!(m.metadata.managed_fields.is_none());
    }
}
