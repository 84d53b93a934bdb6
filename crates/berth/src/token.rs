//! `berth token create|list|delete`: join tokens as Kubernetes' bootstrap tokens, each a
//! Secret `kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token` (keys
//! token-id, token-secret, expiration, description, usage-bootstrap-authentication,
//! usage-bootstrap-signing, auth-extra-groups), managed through the admin kubeconfig as
//! `kubeadm token` does. The API server authenticates `<id>.<secret>` as
//! `system:bootstrap:<id>`; the tokencleaner controller deletes expired ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};

const NAMESPACE: &str = "kube-system";
const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
const PREFIX: &str = "bootstrap-token-";
/// The extra group kubeadm gives the tokens it makes, so that its bindings apply.
const DEFAULT_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

/// `berth token`.
#[derive(Args, Debug)]
pub(crate) struct TokenCommand {
    /// Admin kubeconfig [default: the server's DATA_DIR/kubeconfig.yaml].
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    #[command(subcommand)]
    action: TokenAction,
}

#[derive(Subcommand, Debug)]
enum TokenAction {
    /// Create a join token and print it (`<id>.<secret>`).
    Create(CreateArgs),
    /// List the join tokens.
    List,
    /// Delete join tokens (by id or whole token): agents can no longer join with them.
    Delete {
        /// Token ids (`abcdef`) or tokens (`abcdef.0123456789abcdef`).
        #[arg(required = true)]
        tokens: Vec<String>,
    },
}

#[derive(Args, Debug)]
struct CreateArgs {
    /// The token to create (`[a-z0-9]{6}.[a-z0-9]{16}`) [default: a random one].
    token: Option<String>,
    /// Time until the token expires (`24h`, `90m`, `1h30m`); `0` never expires.
    #[arg(long, default_value = "24h")]
    ttl: String,
    /// A human-readable note on the token.
    #[arg(long)]
    description: Option<String>,
    /// Extra groups the token authenticates with (each `system:bootstrappers:...`).
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_GROUP)]
    groups: Vec<String>,
    /// What the token may be used for: `authentication`, `signing`.
    #[arg(long, value_delimiter = ',', default_value = "signing,authentication")]
    usages: Vec<String>,
    /// Print the `berth agent` command that joins with this token (with the CA hash) instead.
    #[arg(long)]
    print_join_command: bool,
}

/// Runs `berth token ...`.
pub(crate) async fn run(cmd: TokenCommand) -> anyhow::Result<()> {
    let path = cmd.kubeconfig.unwrap_or_else(|| crate::server::default_data_dir().join("kubeconfig.yaml"));
    let (client, url) = client(&path).await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    match cmd.action {
        TokenAction::Create(args) => create(&client, &url, &secrets, args).await,
        TokenAction::List => {
            let list = secrets
                .list(&ListParams::default().fields(&format!("type={SECRET_TYPE}")))
                .await
                .context("listing bootstrap tokens")?;
            print!("{}", table(&list.items, jiff::Timestamp::now()));
            Ok(())
        }
        TokenAction::Delete { tokens } => {
            for given in tokens {
                let id = given.split_once('.').map_or(given.as_str(), |(id, _)| id);
                if !valid_part(id, 6) {
                    bail!("{given:?} is neither a token id ([a-z0-9]{{6}}) nor a token ([a-z0-9]{{6}}.[a-z0-9]{{16}})");
                }
                secrets
                    .delete(&format!("{PREFIX}{id}"), &DeleteParams::default())
                    .await
                    .with_context(|| format!("deleting bootstrap token {id:?}"))?;
                println!("bootstrap token {id:?} deleted");
            }
            Ok(())
        }
    }
}

/// A client of the kubeconfig at `path`, and the server's URL.
async fn client(path: &Path) -> anyhow::Result<(kube::Client, String)> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading the kubeconfig {} (give --kubeconfig)", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .with_context(|| format!("using the kubeconfig {}", path.display()))?;
    let url = config.cluster_url.to_string().trim_end_matches('/').to_string();
    Ok((kube::Client::try_from(config).context("building the API client")?, url))
}

fn valid_part(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// A random string of `len` characters in `[a-z0-9]` (uniform: bytes past 251 are skipped).
fn random_part(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in uuid::Uuid::new_v4().into_bytes() {
            if b < 252 && out.len() < len {
                out.push(ALPHABET[usize::from(b) % 36] as char);
            }
        }
    }
    out
}

/// Parses a Go-style duration of hours, minutes and seconds (`24h`, `1h30m`, `90s`, `0`).
pub(crate) fn parse_ttl(text: &str) -> anyhow::Result<std::time::Duration> {
    let text = text.trim();
    if text == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number.parse().with_context(|| format!("--ttl {text:?}: expected a number before {c:?}"))?;
        number.clear();
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => bail!("--ttl {text:?}: unknown unit {c:?} (use h, m, s)"),
        };
        total = total.checked_add(n.checked_mul(unit).context("--ttl is too long")?).context("--ttl is too long")?;
    }
    if !number.is_empty() || text.is_empty() {
        bail!("--ttl {text:?}: give a unit (24h, 30m, 90s) or 0");
    }
    Ok(std::time::Duration::from_secs(total))
}

/// The Secret for `token` (`id`, `secret`).
fn token_secret(
    id: &str,
    secret: &str,
    expiration: Option<jiff::Timestamp>,
    args: &CreateArgs,
) -> anyhow::Result<Secret> {
    let mut data: BTreeMap<String, String> = BTreeMap::new();
    data.insert("token-id".into(), id.into());
    data.insert("token-secret".into(), secret.into());
    if let Some(at) = expiration {
        data.insert("expiration".into(), at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    }
    if let Some(d) = &args.description {
        data.insert("description".into(), d.clone());
    }
    for usage in &args.usages {
        match usage.trim() {
            u @ ("authentication" | "signing") => {
                data.insert(format!("usage-bootstrap-{u}"), "true".into());
            }
            other => bail!("--usages: unknown usage {other:?} (authentication, signing)"),
        }
    }
    let groups: Vec<&str> = args.groups.iter().map(|g| g.trim()).filter(|g| !g.is_empty()).collect();
    for g in &groups {
        if !berth_apiserver::authn::valid_bootstrap_group(g) {
            bail!("--groups: {g:?} must start with system:bootstrappers: (and match [a-z0-9:-]*[a-z0-9] after it)");
        }
    }
    if !groups.is_empty() {
        data.insert("auth-extra-groups".into(), groups.join(","));
    }
    Ok(Secret {
        metadata: ObjectMeta { name: Some(format!("{PREFIX}{id}")), ..ObjectMeta::default() },
        type_: Some(SECRET_TYPE.into()),
        // `data`, not `stringData`: berth's API server does not fold stringData into data yet.
        data: Some(data.into_iter().map(|(k, v)| (k, k8s_openapi::ByteString(v.into_bytes()))).collect()),
        ..Secret::default()
    })
}

async fn create(client: &kube::Client, url: &str, secrets: &Api<Secret>, args: CreateArgs) -> anyhow::Result<()> {
    let (id, secret) = match &args.token {
        Some(t) => match t.split_once('.') {
            Some((id, secret)) if valid_part(id, 6) && valid_part(secret, 16) => (id.to_string(), secret.to_string()),
            _ => bail!("the token {t:?} is not of the form [a-z0-9]{{6}}.[a-z0-9]{{16}}"),
        },
        None => (random_part(6), random_part(16)),
    };
    let ttl = parse_ttl(&args.ttl)?;
    let expiration = if ttl.is_zero() {
        None
    } else {
        Some(jiff::Timestamp::now() + jiff::SignedDuration::try_from(ttl).context("--ttl is too long")?)
    };
    let object = token_secret(&id, &secret, expiration, &args)?;
    secrets
        .create(&PostParams::default(), &object)
        .await
        .with_context(|| format!("creating bootstrap token {id:?}"))?;
    let token = format!("{id}.{secret}");
    if args.print_join_command {
        let request = hyper::Request::get("/cacerts").body(Vec::new()).context("building the /cacerts request")?;
        let ca_pem = client.request_text(request).await.context("fetching the server CA from /cacerts")?;
        let hash = berth_pki::token::ca_hash(&ca_pem);
        println!("berth agent --server {url} --token K10{hash}::{token}");
    } else {
        println!("{token}");
    }
    Ok(())
}

/// kubeadm's `token list` table of bootstrap-token `secrets` at `now`.
pub(crate) fn table(secrets: &[Secret], now: jiff::Timestamp) -> String {
    let mut rows = vec![["TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA GROUPS"].map(String::from)];
    for s in secrets {
        let value = |k: &str| {
            s.data.as_ref().and_then(|d| d.get(k)).and_then(|v| String::from_utf8(v.0.clone()).ok()).unwrap_or_default()
        };
        let (id, secret) = (value("token-id"), value("token-secret"));
        if !valid_part(&id, 6) || !valid_part(&secret, 16) {
            continue;
        }
        let expiration = value("expiration");
        let (ttl, expires) = if expiration.is_empty() {
            ("<forever>".to_string(), "<never>".to_string())
        } else {
            match expiration.parse::<jiff::Timestamp>() {
                Ok(at) if at > now => (human(at.duration_since(now)), expiration.clone()),
                _ => ("<invalid>".to_string(), expiration.clone()),
            }
        };
        let mut usages: Vec<&str> = ["authentication", "signing"]
            .into_iter()
            .filter(|u| value(&format!("usage-bootstrap-{u}")) == "true")
            .collect();
        usages.sort_unstable();
        let or_none = |v: String| if v.is_empty() { "<none>".to_string() } else { v };
        rows.push([
            format!("{id}.{secret}"),
            ttl,
            expires,
            or_none(usages.join(",")),
            or_none(value("description")),
            or_none(value("auth-extra-groups")),
        ]);
    }
    let widths: Vec<usize> = (0..6).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// A duration as kubectl prints ages, rounded down: `23h`, `59m`, `30s`, `2d`.
fn human(d: jiff::SignedDuration) -> String {
    let s = d.as_secs().max(0);
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// The client CA (and the cluster CA, for kubelet serving certificates) the csrsigning
/// controller signs approved requests with (`berth server`),
/// and the longest a certificate it signs lasts.
pub(crate) fn csr_signing(
    data_dir: &Path,
    duration: std::time::Duration,
) -> anyhow::Result<berth_controllers::csr_signing::CsrSigning> {
    use berth_pki::CaKind;
    let pki = berth_pki::Pki::load_or_create(&data_dir.join("tls")).context("the cluster PKI")?;
    Ok(berth_controllers::csr_signing::CsrSigning {
        ca_pem: pki.ca_pem(CaKind::Client)?,
        ca_key_pem: pki.ca_key_pem(CaKind::Client)?,
        serving_ca_pem: pki.ca_pem(CaKind::Server)?,
        serving_ca_key_pem: pki.ca_key_pem(CaKind::Server)?,
        duration,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_parse_as_go_durations() {
        assert_eq!(parse_ttl("24h").unwrap().as_secs(), 86_400);
        assert_eq!(parse_ttl("1h30m").unwrap().as_secs(), 5400);
        assert_eq!(parse_ttl("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_ttl("0").unwrap().as_secs(), 0);
        for bad in ["", "24", "h", "1d", "-1h", "1h30"] {
            assert!(parse_ttl(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn random_tokens_are_of_the_bootstrap_form() {
        let (id, secret) = (random_part(6), random_part(16));
        assert!(berth_apiserver::authn::BootstrapToken::parse(&format!("{id}.{secret}")).is_some());
        assert_ne!(random_part(16), random_part(16));
    }

    #[test]
    fn the_list_reads_as_kubeadms() {
        let now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let secret = |id: &str, extra: &[(&str, &str)]| {
            let mut data: BTreeMap<String, k8s_openapi::ByteString> =
                [("token-id", id), ("token-secret", "0123456789abcdef")]
                    .iter()
                    .chain(extra)
                    .map(|(k, v)| (k.to_string(), k8s_openapi::ByteString(v.as_bytes().to_vec())))
                    .collect();
            data.retain(|_, v| !v.0.is_empty());
            Secret { data: Some(data), ..Secret::default() }
        };
        let text = table(
            &[
                secret(
                    "abcdef",
                    &[
                        ("expiration", "2026-01-01T23:00:00Z"),
                        ("usage-bootstrap-authentication", "true"),
                        ("usage-bootstrap-signing", "true"),
                        ("description", "for n1"),
                        ("auth-extra-groups", DEFAULT_GROUP),
                    ],
                ),
                secret("ghijkl", &[("expiration", "2025-12-31T00:00:00Z")]),
                secret("mnopqr", &[]),
                secret("BAD", &[]),
            ],
            now,
        );
        let expected = "\
TOKEN                     TTL         EXPIRES                USAGES                   DESCRIPTION   EXTRA GROUPS
abcdef.0123456789abcdef   23h         2026-01-01T23:00:00Z   authentication,signing   for n1        system:bootstrappers:kubeadm:default-node-token
ghijkl.0123456789abcdef   <invalid>   2025-12-31T00:00:00Z   <none>                   <none>        <none>
mnopqr.0123456789abcdef   <forever>   <never>                <none>                   <none>        <none>
";
        assert_eq!(text, expected);
    }
}
