//! The Kubernetes API as data, with no IO: which resources exist ([`registry`]), their
//! structural schemas ([`schema`]), and the pure functions the API server applies to
//! objects on their way in and out: defaulting, validation, field checks against the
//! schema, patches, server-side apply, Table rows, selectors and protobuf decoding.
//!
//! Objects are handled as `serde_json::Value` so that built-in kinds and custom
//! resources go through the same code; typed `k8s-openapi` structs are used where a
//! function needs a typed view.

pub mod apply;
pub mod crd;
pub mod defaults;
pub mod field_error;
pub mod fields;
pub mod node_match;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod quota;
pub mod registry;
pub mod schema;
pub mod selectors;
pub mod table;
pub mod validation;

pub use field_error::{FieldError, FieldErrorKind};
pub use registry::ResourceInfo;
