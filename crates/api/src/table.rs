//! TODO: table
