//! Field errors: the `causes` of an Invalid `Status`, worded as Kubernetes words them.

use std::fmt;

/// The kind of a field error; its [`FieldErrorKind::reason`] is the `Status` cause reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// A required field is missing: "Required value".
    Required,
    /// A value is malformed or out of range: "Invalid value".
    Invalid,
    /// A value is not one of the supported ones: "Unsupported value".
    NotSupported,
    /// A value appears twice where it must be unique: "Duplicate value".
    Duplicate,
    /// A value names something that does not exist: "Not found".
    NotFound,
    /// A field may not be set (or changed): "Forbidden".
    Forbidden,
    /// A value is too long: "Too long".
    TooLong,
    /// A list has too many items: "Too many".
    TooMany,
    /// A field is not known to the schema: "unknown field" (used by fieldValidation).
    Unknown,
    /// A field appears twice in the request body: "duplicate field".
    DuplicateField,
    /// A value has the wrong JSON type: "Invalid value" (type mismatch).
    TypeInvalid,
}

impl FieldErrorKind {
    /// The `reason` of the `StatusCause`, e.g. `FieldValueRequired`.
    pub fn reason(self) -> &'static str {
        match self {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::NotFound => "FieldValueNotFound",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::TooLong => "FieldValueTooLong",
            FieldErrorKind::TooMany => "FieldValueTooMany",
            FieldErrorKind::Unknown => "FieldValueInvalid",
            FieldErrorKind::DuplicateField => "FieldValueDuplicate",
            FieldErrorKind::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    fn label(self) -> &'static str {
        match self {
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Invalid | FieldErrorKind::TypeInvalid => "Invalid value",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::Duplicate => "Duplicate value",
            FieldErrorKind::NotFound => "Not found",
            FieldErrorKind::Forbidden => "Forbidden",
            FieldErrorKind::TooLong => "Too long",
            FieldErrorKind::TooMany => "Too many",
            FieldErrorKind::Unknown => "unknown field",
            FieldErrorKind::DuplicateField => "duplicate field",
        }
    }
}

/// One problem with one field of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// What is wrong.
    pub kind: FieldErrorKind,
    /// The field's path, as Kubernetes prints it: `spec.template.spec.containers[0].image`.
    pub field: String,
    /// The offending value, rendered for the message (None when there is none to show).
    pub value: Option<String>,
    /// Extra detail, e.g. "must be no more than 63 characters".
    pub detail: String,
}

impl FieldError {
    /// A field error of `kind` at `field`.
    pub fn new(kind: FieldErrorKind, field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError { kind, field: field.into(), value: None, detail: detail.into() }
    }

    /// "Required value" at `field`.
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Required, field, detail)
    }

    /// "Invalid value" at `field`, showing `value`.
    pub fn invalid(field: impl Into<String>, value: impl fmt::Display, detail: impl Into<String>) -> Self {
        FieldError { value: Some(value.to_string()), ..Self::new(FieldErrorKind::Invalid, field, detail) }
    }

    /// "Unsupported value" at `field`: `value` is not one of `supported`.
    pub fn not_supported(field: impl Into<String>, value: impl fmt::Display, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
        FieldError {
            value: Some(value.to_string()),
            ..Self::new(FieldErrorKind::NotSupported, field, format!("supported values: {}", list.join(", ")))
        }
    }

    /// "Forbidden" at `field`.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Forbidden, field, detail)
    }

    /// The message of the `StatusCause`: everything after the field path.
    pub fn cause_message(&self) -> String {
        let mut out = self.kind.label().to_string();
        if let Some(v) = &self.value {
            out.push_str(": ");
            out.push_str(v);
        }
        if !self.detail.is_empty() {
            out.push_str(": ");
            out.push_str(&self.detail);
        }
        out
    }
}

impl fmt::Display for FieldError {
    /// `spec.replicas: Invalid value: -1: must be greater than or equal to 0`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.cause_message())
    }
}
