//! TODO: selectors
