//! `bench api`'s authentication comparison: the same ConfigMap GETs, on one server with
//! RBAC, made by three users bound to `edit` who authenticate three ways — a TLS client
//! certificate (verified once per connection, at the handshake), a static bearer token
//! (`--token-auth-file`: a map lookup per request, the cheapest authenticator, so the
//! baseline "without" authentication cost) and a ServiceAccount token (a signed JWT checked
//! per request: signature, expiry, and the account still existing). Rounds in rotating
//! order; medians of the rounds, latencies over all of them, server CPU per request.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hyper::Method;
use serde_json::{Value, json};

use super::api::{closed_loop, configmap, kubeconfig_ca, median, per_op_us, rate};
use super::client::{self, Conn};
use super::report::Figure;
use super::server::ServerProcess;
use super::stats::Latencies;

const NS_PATH: &str = "/api/v1/namespaces/default";
/// The static token of user `bench-static` (a benchmark server's throw-away secret).
const STATIC_TOKEN: &str = "bench-static-token-2f6c1e0a9b7d4c38";
/// Rounds of the comparison (each runs every way once).
const ROUNDS: usize = 3;
/// ConfigMaps the GETs cycle over.
const OBJECTS: usize = 1_000;

/// How a benchmark user authenticates.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Way {
    Certificate,
    StaticToken,
    ServiceAccountToken,
}

impl Way {
    const ALL: [Way; 3] = [Way::Certificate, Way::StaticToken, Way::ServiceAccountToken];

    fn label(self) -> &'static str {
        match self {
            Way::Certificate => "client certificate",
            Way::StaticToken => "static token",
            Way::ServiceAccountToken => "ServiceAccount token",
        }
    }
}

/// The credentials of the three users.
struct Credentials {
    ca: String,
    cert_pem: String,
    key_pem: String,
    service_account_token: String,
}

impl Credentials {
    /// Makes new connections and requests authenticate `way`.
    fn apply(&self, way: Way) -> anyhow::Result<()> {
        match way {
            Way::Certificate => {
                client::use_bearer(None);
                client::use_tls(client::tls_config(&self.ca, &self.cert_pem, &self.key_pem)?);
            }
            Way::StaticToken => {
                client::use_bearer(Some(STATIC_TOKEN.to_string()));
                client::use_tls(client::tls_config_without_certificate(&self.ca)?);
            }
            Way::ServiceAccountToken => {
                client::use_bearer(Some(self.service_account_token.clone()));
                client::use_tls(client::tls_config_without_certificate(&self.ca)?);
            }
        }
        Ok(())
    }
}

fn progress(msg: String) {
    eprintln!("bench api (authentication): {msg}");
}

/// Runs the comparison: `gets` GETs per way and round with `clients` connections.
pub(super) async fn run(clients: usize, gets: usize) -> anyhow::Result<Vec<Figure>> {
    let dir = tempfile::Builder::new().prefix("berth-bench-authn-").tempdir().context("a temp dir")?;
    let token_file = dir.path().join("tokens.csv");
    std::fs::write(&token_file, format!("{STATIC_TOKEN},bench-static,bench-static-uid\n"))
        .context("writing the token file")?;
    let server = ServerProcess::start_with(&["--token-auth-file".to_string(), token_file.display().to_string()])
        .await
        .context("starting a server with a token file")?;
    let result = measure(&server, clients, gets).await;
    client::use_bearer(None);
    server.stop().await.context("stopping the authentication benchmark server")?;
    result
}

async fn measure(server: &ServerProcess, clients: usize, gets: usize) -> anyhow::Result<Vec<Figure>> {
    let creds = prepare(server).await?;
    let objects = OBJECTS.min(gets);
    let rounds = if gets < 1_000 { 1 } else { ROUNDS };
    let mut runs: Vec<(Way, f64, f64, Latencies)> = Vec::new();
    for round in 0..rounds {
        for k in 0..Way::ALL.len() {
            let way = Way::ALL[(round + k) % Way::ALL.len()];
            progress(format!("round {}: {gets} GETs as the {} user", round + 1, way.label()));
            creds.apply(way)?;
            let cpu = server.cpu_time()?;
            let (took, lat) = closed_loop(server.addr, clients, gets, move |i| {
                (Method::GET, format!("{NS_PATH}/configmaps/authn-cm-{:05}", i % objects), None)
            })
            .await
            .with_context(|| format!("GETs as the {} user", way.label()))?;
            let cpu = server.cpu_time()? - cpu;
            runs.push((way, rate(gets, took), per_op_us(cpu, gets), lat));
        }
    }
    let mut figs = Vec::new();
    let mut cpu_of = |way: Way, keys: [&'static str; 4]| {
        let rate = median(runs.iter().filter(|r| r.0 == way).map(|r| r.1).collect());
        let cpu = median(runs.iter().filter(|r| r.0 == way).map(|r| r.2).collect());
        let mut lat = Latencies::with_capacity(0);
        for r in runs.iter_mut().filter(|r| r.0 == way) {
            lat.extend(std::mem::take(&mut r.3));
        }
        figs.push(Figure::new(keys[0], format!("{}: ConfigMap GETs as an edit user", way.label()), rate, "/s"));
        figs.push(Figure::new(keys[1], "  get p50", lat.percentile_ms(50.0), "ms"));
        figs.push(Figure::new(keys[2], "  get p99", lat.percentile_ms(99.0), "ms"));
        figs.push(Figure::new(keys[3], "  server CPU per get", cpu, "us"));
        (rate, cpu)
    };
    let cert = cpu_of(
        Way::Certificate,
        ["authn_cert_gets_per_s", "authn_cert_get_p50_ms", "authn_cert_get_p99_ms", "authn_cert_get_cpu_us"],
    );
    let fixed = cpu_of(
        Way::StaticToken,
        ["authn_static_gets_per_s", "authn_static_get_p50_ms", "authn_static_get_p99_ms", "authn_static_get_cpu_us"],
    );
    let jwt = cpu_of(
        Way::ServiceAccountToken,
        ["authn_sa_gets_per_s", "authn_sa_get_p50_ms", "authn_sa_get_p99_ms", "authn_sa_get_cpu_us"],
    );
    let cost =
        |(rate, cpu): (f64, f64)| (100.0 * (1.0 - rate / fixed.0.max(1e-9)), 100.0 * (cpu / fixed.1.max(1e-9) - 1.0));
    let (cert_rate, cert_cpu) = cost(cert);
    let (jwt_rate, jwt_cpu) = cost(jwt);
    figs.push(Figure::new(
        "authn_cert_throughput_cost_pct",
        "client certificate vs static token: throughput cost",
        cert_rate,
        "%",
    ));
    figs.push(Figure::new("authn_cert_cpu_cost_pct", "  server CPU cost per request", cert_cpu, "%"));
    figs.push(
        Figure::new(
            "authn_sa_throughput_cost_pct",
            "ServiceAccount token vs static token: throughput cost",
            jwt_rate,
            "%",
        )
        .goal("< 10 %"),
    );
    figs.push(Figure::new("authn_sa_cpu_cost_pct", "  server CPU cost per request", jwt_cpu, "%").goal("< 10 %"));
    Ok(figs)
}

/// As the admin: the ConfigMaps, a ServiceAccount and its token, the three users' `edit`
/// bindings; then waits until each user may GET ConfigMaps.
async fn prepare(server: &ServerProcess) -> anyhow::Result<Credentials> {
    let kubeconfig = server.kubeconfig_path();
    let ca = kubeconfig_ca(&kubeconfig)?;
    let dir = kubeconfig.parent().context("the server data dir")?;
    let pki = berth_pki::Pki::load_or_create(&dir.join("tls")).context("the server PKI")?;
    let user = pki.leaf(&berth_pki::LeafSpec::client("bench-user", "bench-user", &[])).context("a user certificate")?;
    progress(format!("creating {OBJECTS} ConfigMaps, a ServiceAccount and the bindings"));
    closed_loop(server.addr, 8, OBJECTS, |i| {
        (Method::POST, format!("{NS_PATH}/configmaps"), Some(configmap("authn-cm", i)))
    })
    .await
    .context("creating the ConfigMaps")?;
    let mut admin = Conn::connect(server.addr).await?;
    let account = json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": "bench-sa" } });
    admin
        .call(Method::POST, &format!("{NS_PATH}/serviceaccounts"), Some(Bytes::from(account.to_string())))
        .await
        .context("creating the ServiceAccount")?;
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": { "name": "bench-authn-edit", "namespace": "default" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit" },
        "subjects": [
            { "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bench-user" },
            { "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bench-static" },
            { "kind": "ServiceAccount", "name": "bench-sa", "namespace": "default" },
        ],
    });
    admin
        .call(
            Method::POST,
            "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
            Some(Bytes::from(binding.to_string())),
        )
        .await
        .context("binding the bench users to edit")?;
    let request = json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": { "expirationSeconds": 3600 },
    });
    let body = admin
        .call(
            Method::POST,
            &format!("{NS_PATH}/serviceaccounts/bench-sa/token"),
            Some(Bytes::from(request.to_string())),
        )
        .await
        .context("requesting the ServiceAccount's token")?;
    let answer: Value = serde_json::from_slice(&body).context("decoding the TokenRequest")?;
    let service_account_token =
        answer.pointer("/status/token").and_then(Value::as_str).context("no token in the TokenRequest")?.to_string();
    let creds = Credentials { ca, cert_pem: user.cert_pem, key_pem: user.key_pem, service_account_token };
    for way in Way::ALL {
        creds.apply(way)?;
        wait_allowed(server.addr, "get", &format!("{} user", way.label())).await?;
    }
    Ok(creds)
}

/// Waits (up to 30 s) until the current credentials may `verb` ConfigMaps in `default`: a
/// new binding reaches the authorizer through the watch cache. `who` names them in the error.
pub(super) async fn wait_allowed(addr: std::net::SocketAddr, verb: &str, who: &str) -> anyhow::Result<()> {
    let review = json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": { "resourceAttributes": { "namespace": "default", "verb": verb, "resource": "configmaps" } },
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut conn = Conn::connect(addr).await?;
        let (status, body) = conn
            .call_any(
                Method::POST,
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                Some(Bytes::from(review.to_string())),
            )
            .await?;
        let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status.is_success() && answer.pointer("/status/allowed") == Some(&json!(true)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the {who} may not {verb} ConfigMaps: {status} {answer}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
