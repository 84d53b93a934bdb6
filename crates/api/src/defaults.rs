//! TODO: defaults
