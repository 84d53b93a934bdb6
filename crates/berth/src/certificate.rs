//! `berth certificate check|rotate`: the cluster's certificates with their ends of
//! validity, and issuing leaf certificates anew before they end (as k3s's `certificate`
//! command). Rotation keeps the CAs, so every client that trusts them keeps working; a
//! running server serves its new serving certificate within seconds (the TLS listener
//! re-reads it) and its own clients (controllers, scheduler, its node) present their new
//! ones within seconds too (its renewal task looks at the files every 2 s), and
//! DATA_DIR/kubeconfig.yaml gets the new admin certificate.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

#[derive(Args, Debug)]
pub(crate) struct CertificateCommand {
    #[command(subcommand)]
    command: Tool,
}

#[derive(clap::Subcommand, Debug)]
enum Tool {
    /// List the certificates and when each one ends.
    Check(DirArgs),
    /// Issue leaf certificates anew under the same CAs: all of them, or those named.
    Rotate(RotateArgs),
}

#[derive(Args, Debug)]
struct DirArgs {
    /// The server's data dir [default: the server's default].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct RotateArgs {
    #[command(flatten)]
    dir: DirArgs,
    /// A certificate to rotate, by the name `berth certificate check` lists (repeatable;
    /// default: every leaf certificate).
    #[arg(long = "service", value_name = "NAME")]
    services: Vec<String>,
}

/// Runs a `berth certificate` command.
pub(crate) fn run(cmd: CertificateCommand) -> anyhow::Result<()> {
    match cmd.command {
        Tool::Check(args) => check(&args),
        Tool::Rotate(args) => rotate(&args),
    }
}

fn open(args: &DirArgs) -> anyhow::Result<(PathBuf, berth_pki::Pki)> {
    let data_dir = args.data_dir.clone().unwrap_or_else(crate::server::default_data_dir);
    let tls = data_dir.join("tls");
    anyhow::ensure!(
        berth_pki::Pki::exists(&tls),
        "{}: no cluster certificates here (start `berth server --data-dir {}` first)",
        tls.display(),
        data_dir.display()
    );
    let pki = berth_pki::Pki::load_or_create(&tls).with_context(|| tls.display().to_string())?;
    Ok((data_dir, pki))
}

fn check(args: &DirArgs) -> anyhow::Result<()> {
    let (_, pki) = open(args)?;
    let now = berth_pki::OffsetDateTime::now_utc();
    println!("{:<28} {:<22} {:>10}", "NAME", "NOT AFTER", "DAYS LEFT");
    for (name, not_after) in pki.expiries()? {
        let left = (not_after - now).whole_days();
        let warn = if not_after - now < berth_pki::RENEW_BEFORE { "  (renew: within 90 days)" } else { "" };
        println!("{name:<28} {:<22} {left:>10}{warn}", rfc3339(not_after));
    }
    Ok(())
}

fn rotate(args: &RotateArgs) -> anyhow::Result<()> {
    let (data_dir, pki) = open(&args.dir)?;
    let rotated = pki.rotate(&args.services)?;
    for (name, not_after) in &rotated {
        println!("{name}: rotated, valid until {}", rfc3339(*not_after));
    }
    let admin = berth_pki::LeafSpec::client("admin", "", &[]).name;
    let kubeconfig = data_dir.join("kubeconfig.yaml");
    if rotated.iter().any(|(n, _)| *n == admin) && kubeconfig.exists() {
        let server = kubeconfig_server(&kubeconfig)?;
        let (cert, key) = pki.leaf_files(&admin);
        let read = |p: &PathBuf| std::fs::read_to_string(p).with_context(|| p.display().to_string());
        let ca = pki.ca_pem(berth_pki::CaKind::Server)?;
        let text = crate::server::kubeconfig(&server, &ca, &read(&cert)?, &read(&key)?);
        crate::server::write_private(&kubeconfig, &text)?;
        println!("{}: now holds the new admin certificate", kubeconfig.display());
    }
    Ok(())
}

fn rfc3339(t: berth_pki::OffsetDateTime) -> String {
    jiff::Timestamp::from_second(t.unix_timestamp()).map(|t| t.to_string()).unwrap_or_else(|_| t.to_string())
}

/// The server URL of the kubeconfig the server wrote.
fn kubeconfig_server(path: &std::path::Path) -> anyhow::Result<String> {
    let config = kube::config::Kubeconfig::read_from(path).with_context(|| path.display().to_string())?;
    config
        .clusters
        .iter()
        .find_map(|c| c.cluster.as_ref()?.server.clone())
        .with_context(|| format!("{}: no cluster server address", path.display()))
}
