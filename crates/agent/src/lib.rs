//! The berth node agent. Today it has the hollow mode ([`hollow`]): many fake nodes in one
//! process that register, keep their leases and play the kubelet's part for pods without
//! running containers (as kwok does). The container runtime (containerd over CRI) comes
//! with issue 5 and will live beside it in this crate.

pub mod hollow;
