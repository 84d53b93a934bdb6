//! TODO: protobuf
