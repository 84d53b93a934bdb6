//! TODO: openapi
