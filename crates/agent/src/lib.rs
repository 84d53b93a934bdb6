//! The berth node agent. [`node`] is the real node: it registers a Node, keeps its Lease and
//! runs the pods bound to it as containers through containerd's CRI ([`runtime`]: containerd
//! as a child process, CRI client, locally built images, CNI config). [`hollow`] plays many
//! fake nodes in one process without containers (as kwok does), for scale tests. [`streaming`] is
//! the real node's kubelet-style HTTPS endpoint (logs, exec, attach, port-forward).

pub mod hollow;
pub mod node;
pub mod runtime;
pub mod streaming;
