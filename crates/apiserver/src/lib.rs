//! The Kubernetes HTTP API over the revisioned store.
//!
//! Requests under `/api` and `/apis` are parsed into a resource path ([`resources`]),
//! decoded once into JSON values ([`codec`]), and handled by verb: reads and watches
//! from the watch cache ([`read`], [`watch`], [`cache`]), writes through defaulting,
//! validation and compare-and-swap in the store ([`write`]). Every failure is a
//! Kubernetes `Status` ([`error`]).

pub mod admission_policy;
pub mod audit;
pub mod authn;
pub mod authz;
pub mod cache;
pub mod certificates;
pub mod codec;
pub mod convert;
pub mod crd;
pub mod crd_rules;
pub mod csr_admission;
pub mod default_storage_class;
pub mod discovery;
pub mod error;
pub mod filter;
pub mod handler;
pub mod health;
pub mod limit_ranger;
pub mod namespaces;
pub mod node_proxy;
pub mod node_restriction;
pub mod object;
pub mod openapi;
pub mod params;
pub mod pod_security;
pub mod priority;
pub mod pvc_resize;
pub mod read;
pub mod resource_quota;
pub mod resources;
pub mod reviews;
pub mod scale;
pub mod server;
pub mod service_account;
pub mod serviceaccount_token;
pub mod services;
pub mod starting;
pub mod storage_protection;
pub mod table;
pub mod tls;
pub mod token_file;
pub mod watch;
pub mod webhook;
pub mod write;

pub use authn::{Authenticator, UserInfo};
pub use server::{Config, KUBERNETES_VERSION, Server};
pub use starting::Starting;
pub use tls::TlsConfig;
