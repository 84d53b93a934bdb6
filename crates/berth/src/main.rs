//! The berth binary: command-line wiring only.

mod agent;
mod audit;
mod bench;
mod bootstrap;
mod certificate;
mod datastore;
mod etcd_process;
mod image;
mod secrets_encryption;
mod server;
mod snapshots;
mod token;

use clap::{Parser, Subcommand};

/// The API server allocates and frees many small JSON trees per request: mimalloc
/// measured ~15% less server CPU per create than glibc's allocator (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// berth: a Kubernetes-compatible cluster in one binary.
#[derive(Parser)]
#[command(name = "berth", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: the size of the largest variant (the server's flags) costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run a control plane (API server on the embedded store or etcd).
    Server(server::ServerArgs),
    /// Run a node agent: pods on containerd (CRI), or hollow nodes (`--hollow`).
    Agent(agent::AgentArgs),
    /// Measure berth and print the figures beside their goals.
    Bench(bench::BenchArgs),
    /// Datastore tools: snapshot save/restore, migration between SQLite and etcd.
    Datastore(datastore::DatastoreCommand),
    /// Secrets at rest: rotate the encryption key.
    SecretsEncrypt(secrets_encryption::SecretsEncryptCommand),
    /// Cluster certificates: check their ends, rotate them.
    Certificate(certificate::CertificateCommand),
    /// Join tokens (bootstrap tokens) for agents: create, list, delete.
    Token(token::TokenCommand),
    /// Images in a node's containerd: import an archive, list.
    #[command(subcommand)]
    Image(image::ImageCommand),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Command::Agent(_) = &cli.command {
        builder.thread_keep_alive(agent::BLOCKING_KEEP_ALIVE);
    }
    let runtime = builder.build()?;
    match cli.command {
        Command::Server(args) => runtime.block_on(server::run(args)),
        Command::Agent(args) => runtime.block_on(agent::run(args)),
        Command::Bench(args) => runtime.block_on(bench::run(args)),
        Command::Datastore(args) => runtime.block_on(datastore::run(args)),
        Command::SecretsEncrypt(args) => secrets_encryption::run(args),
        Command::Certificate(args) => certificate::run(args),
        Command::Image(args) => runtime.block_on(image::run(args)),
        Command::Token(args) => runtime.block_on(token::run(args)),
    }
}
