//! TODO: fields
