//! The CRI API of containerd over its unix socket (tonic, `k8s-cri`'s v1 bindings): a thin
//! client whose calls turn gRPC statuses into [`Error::Cri`].

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::{Error, Result};

pub use k8s_cri::v1;

/// A CRI client (runtime and image services) on one connection; cheap to clone.
#[derive(Debug, Clone)]
pub struct Cri {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

fn cri_err(call: &'static str) -> impl FnOnce(tonic::Status) -> Error {
    move |status| Error::Cri { call, status: Box::new(status) }
}

impl Cri {
    /// Connects to the CRI socket at `socket`.
    pub async fn connect(socket: &Path) -> Result<Cri> {
        let path: PathBuf = socket.to_path_buf();
        // The URI is required by tonic but unused: the connector dials the socket.
        let channel = Endpoint::try_from("http://[::1]:50051")
            .expect("a static URI")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { UnixStream::connect(path).await.map(TokioIo::new) }
            }))
            .await
            .map_err(|source| Error::Connect { socket: socket.to_path_buf(), source })?;
        Ok(Cri { runtime: RuntimeServiceClient::new(channel.clone()), images: ImageServiceClient::new(channel) })
    }

    /// A client that dials `socket` on its first call (for tests that never call it, or a
    /// runtime that is not up yet).
    pub fn connect_lazy(socket: &Path) -> Cri {
        let path: PathBuf = socket.to_path_buf();
        let channel = Endpoint::try_from("http://[::1]:50051").expect("a static URI").connect_with_connector_lazy(
            tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { UnixStream::connect(path).await.map(TokioIo::new) }
            }),
        );
        Cri { runtime: RuntimeServiceClient::new(channel.clone()), images: ImageServiceClient::new(channel) }
    }

    /// The runtime's name and version.
    pub async fn version(&self) -> Result<cri::VersionResponse> {
        let req = cri::VersionRequest { version: "v1".into() };
        Ok(self.runtime.clone().version(req).await.map_err(cri_err("Version"))?.into_inner())
    }

    /// [`Cri::version`] once the CRI service has initialized: containerd answers "server is
    /// not initialized yet" while it restores its state (after a restart with pods kept),
    /// so that answer is retried for at most `timeout`.
    pub async fn version_when_ready(&self, timeout: std::time::Duration) -> Result<cri::VersionResponse> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match self.version().await {
                Err(Error::Cri { status, .. })
                    if status.message().contains("not initialized") && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await
                }
                other => return other,
            }
        }
    }

    /// The status of an image by reference; `None` when the node does not have it.
    pub async fn image_status(&self, image: &str) -> Result<Option<cri::Image>> {
        let req = cri::ImageStatusRequest {
            image: Some(cri::ImageSpec { image: image.to_string(), ..Default::default() }),
            verbose: false,
        };
        Ok(self.images.clone().image_status(req).await.map_err(cri_err("ImageStatus"))?.into_inner().image)
    }

    /// Every image on the node.
    pub async fn list_images(&self) -> Result<Vec<cri::Image>> {
        let req = cri::ListImagesRequest::default();
        Ok(self.images.clone().list_images(req).await.map_err(cri_err("ListImages"))?.into_inner().images)
    }

    /// Runs a pod sandbox; returns its id.
    pub async fn run_pod_sandbox(&self, config: cri::PodSandboxConfig) -> Result<String> {
        let req = cri::RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() };
        Ok(self
            .runtime
            .clone()
            .run_pod_sandbox(req)
            .await
            .map_err(cri_err("RunPodSandbox"))?
            .into_inner()
            .pod_sandbox_id)
    }

    /// A sandbox's status (its IP among it).
    pub async fn pod_sandbox_status(&self, id: &str) -> Result<Option<cri::PodSandboxStatus>> {
        let req = cri::PodSandboxStatusRequest { pod_sandbox_id: id.to_string(), verbose: false };
        let resp = self.runtime.clone().pod_sandbox_status(req).await.map_err(cri_err("PodSandboxStatus"))?;
        Ok(resp.into_inner().status)
    }

    /// Every sandbox.
    pub async fn list_pod_sandboxes(&self) -> Result<Vec<cri::PodSandbox>> {
        let req = cri::ListPodSandboxRequest::default();
        Ok(self.runtime.clone().list_pod_sandbox(req).await.map_err(cri_err("ListPodSandbox"))?.into_inner().items)
    }

    /// The containers of one sandbox.
    pub async fn list_containers(&self, sandbox_id: &str) -> Result<Vec<cri::Container>> {
        let req = cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter { pod_sandbox_id: sandbox_id.to_string(), ..Default::default() }),
        };
        Ok(self.runtime.clone().list_containers(req).await.map_err(cri_err("ListContainers"))?.into_inner().containers)
    }

    /// Every container of every sandbox.
    pub async fn list_all_containers(&self) -> Result<Vec<cri::Container>> {
        let req = cri::ListContainersRequest::default();
        Ok(self.runtime.clone().list_containers(req).await.map_err(cri_err("ListContainers"))?.into_inner().containers)
    }

    /// The usage of every container (CPU, memory, its writable layer).
    pub async fn list_container_stats(&self) -> Result<Vec<cri::ContainerStats>> {
        let req = cri::ListContainerStatsRequest::default();
        let resp = self.runtime.clone().list_container_stats(req).await.map_err(cri_err("ListContainerStats"))?;
        Ok(resp.into_inner().stats)
    }

    /// The usage of the image filesystem(s): their mount point, bytes and inodes the images use.
    pub async fn image_fs_info(&self) -> Result<Vec<cri::FilesystemUsage>> {
        let req = cri::ImageFsInfoRequest::default();
        let resp = self.images.clone().image_fs_info(req).await.map_err(cri_err("ImageFsInfo"))?;
        Ok(resp.into_inner().image_filesystems)
    }

    /// Stops a sandbox (its containers and its network).
    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let req = cri::StopPodSandboxRequest { pod_sandbox_id: id.to_string() };
        self.runtime.clone().stop_pod_sandbox(req).await.map_err(cri_err("StopPodSandbox"))?;
        Ok(())
    }

    /// Removes a stopped sandbox and its containers.
    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let req = cri::RemovePodSandboxRequest { pod_sandbox_id: id.to_string() };
        self.runtime.clone().remove_pod_sandbox(req).await.map_err(cri_err("RemovePodSandbox"))?;
        Ok(())
    }

    /// Creates a container in a sandbox; returns its id.
    pub async fn create_container(
        &self,
        sandbox_id: &str,
        config: cri::ContainerConfig,
        sandbox_config: cri::PodSandboxConfig,
    ) -> Result<String> {
        let req = cri::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.to_string(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        Ok(self
            .runtime
            .clone()
            .create_container(req)
            .await
            .map_err(cri_err("CreateContainer"))?
            .into_inner()
            .container_id)
    }

    /// Starts a created container.
    pub async fn start_container(&self, id: &str) -> Result<()> {
        let req = cri::StartContainerRequest { container_id: id.to_string() };
        self.runtime.clone().start_container(req).await.map_err(cri_err("StartContainer"))?;
        Ok(())
    }

    /// Stops a container: SIGTERM (or its stop signal), SIGKILL after `timeout_seconds`.
    pub async fn stop_container(&self, id: &str, timeout_seconds: i64) -> Result<()> {
        let req = cri::StopContainerRequest { container_id: id.to_string(), timeout: timeout_seconds };
        self.runtime.clone().stop_container(req).await.map_err(cri_err("StopContainer"))?;
        Ok(())
    }

    /// Removes a container.
    pub async fn remove_container(&self, id: &str) -> Result<()> {
        let req = cri::RemoveContainerRequest { container_id: id.to_string() };
        self.runtime.clone().remove_container(req).await.map_err(cri_err("RemoveContainer"))?;
        Ok(())
    }

    /// Runs `cmd` in a running container and waits for it (at most `timeout_seconds`; 0 = no limit).
    pub async fn exec_sync(&self, id: &str, cmd: Vec<String>, timeout_seconds: i64) -> Result<cri::ExecSyncResponse> {
        let req = cri::ExecSyncRequest { container_id: id.to_string(), cmd, timeout: timeout_seconds };
        Ok(self.runtime.clone().exec_sync(req).await.map_err(cri_err("ExecSync"))?.into_inner())
    }

    /// A container's status.
    pub async fn container_status(&self, id: &str) -> Result<Option<cri::ContainerStatus>> {
        let req = cri::ContainerStatusRequest { container_id: id.to_string(), verbose: false };
        let resp = self.runtime.clone().container_status(req).await.map_err(cri_err("ContainerStatus"))?;
        Ok(resp.into_inner().status)
    }

    /// A streaming URL (containerd's CRI streaming server) for running `cmd` in a container.
    pub async fn exec(&self, req: cri::ExecRequest) -> Result<String> {
        Ok(self.runtime.clone().exec(req).await.map_err(cri_err("Exec"))?.into_inner().url)
    }

    /// A streaming URL for attaching to a container's main process.
    pub async fn attach(&self, req: cri::AttachRequest) -> Result<String> {
        Ok(self.runtime.clone().attach(req).await.map_err(cri_err("Attach"))?.into_inner().url)
    }
}
