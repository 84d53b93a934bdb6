//! `berth image import|ls`: images in a node's containerd (the one `berth agent` started
//! under its data dir, or `--containerd-socket`).

use std::path::PathBuf;

use anyhow::Context;
use berth_agent::runtime::containerd::Layout;
use berth_agent::runtime::cri::Cri;
use berth_agent::runtime::images;
use clap::{Args, Subcommand};

/// `berth image` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum ImageCommand {
    /// Import an image archive (OCI layout or docker archive, tarred) into the node.
    Import {
        #[command(flatten)]
        node: NodeArgs,
        /// The archive.
        file: PathBuf,
    },
    /// List the node's images.
    Ls {
        #[command(flatten)]
        node: NodeArgs,
    },
}

/// Which node's containerd.
#[derive(Args, Debug)]
pub(crate) struct NodeArgs {
    /// The agent's data dir.
    #[arg(long, default_value = "/var/lib/berth/agent")]
    data_dir: PathBuf,
    /// The containerd socket (default: the one under the data dir).
    #[arg(long)]
    containerd_socket: Option<PathBuf>,
}

impl NodeArgs {
    fn socket(&self) -> PathBuf {
        self.containerd_socket.clone().unwrap_or_else(|| Layout::new(&self.data_dir).socket())
    }
}

/// Runs a `berth image` subcommand.
pub(crate) async fn run(command: ImageCommand) -> anyhow::Result<()> {
    match command {
        ImageCommand::Import { node, file } => {
            anyhow::ensure!(file.is_file(), "{} is not a file", file.display());
            images::import(&node.socket(), &file).await.with_context(|| format!("importing {}", file.display()))?;
            println!("imported {}", file.display());
        }
        ImageCommand::Ls { node } => {
            let socket = node.socket();
            let cri =
                Cri::connect(&socket).await.with_context(|| format!("is the agent running? ({})", socket.display()))?;
            println!("{:<50} {:<20} {:>10}", "IMAGE", "ID", "SIZE");
            for image in cri.list_images().await? {
                let id = image.id.trim_start_matches("sha256:").chars().take(12).collect::<String>();
                for tag in &image.repo_tags {
                    println!("{tag:<50} {id:<20} {:>10}", image.size);
                }
            }
        }
    }
    Ok(())
}
