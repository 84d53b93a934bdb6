//! TODO: patch
