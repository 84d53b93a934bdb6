//! The berth binary: command-line wiring only.

fn main() {}
