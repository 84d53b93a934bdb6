//! The health endpoints `/livez`, `/readyz` and `/healthz` as kube-apiserver answers them:
//! each runs a list of named checks and answers `ok`, or 500 listing every check with the
//! failed ones marked; `?verbose` lists them on success too, `?exclude=NAME` skips one, and
//! `/readyz/NAME` runs one check alone.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::codec;
use crate::server::App;

/// How long the store may take to answer the `etcd` check.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// Which endpoint: they differ in their name and their checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Livez,
    Readyz,
    Healthz,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Livez => "livez",
            Endpoint::Readyz => "readyz",
            Endpoint::Healthz => "healthz",
        }
    }

    /// The checks, in the order they are listed. Readiness adds what a load balancer must
    /// know before sending requests: the watch cache is primed and no shutdown has begun.
    fn checks(self) -> &'static [&'static str] {
        match self {
            Endpoint::Livez | Endpoint::Healthz => &["ping", "log", "etcd"],
            Endpoint::Readyz => &["ping", "log", "etcd", "informer-sync", "shutdown"],
        }
    }
}

/// Runs one check: `Err` carries why it failed (logged, not sent: Kubernetes withholds it).
async fn run(app: &App, check: &str) -> Result<(), String> {
    match check {
        // The server answers, and its log is a plain writer that never blocks a request.
        "ping" | "log" => Ok(()),
        "etcd" => match tokio::time::timeout(STORE_TIMEOUT, app.store.current_revision()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("the datastore did not answer within {} s", STORE_TIMEOUT.as_secs())),
        },
        // The router serving this request exists only once the watch cache was primed; it
        // stays primed through a shutdown (which the next check reports).
        "informer-sync" => {
            if app.ready.load(Ordering::SeqCst) || *app.shutdown.borrow() {
                Ok(())
            } else {
                Err("the watch cache is not primed".into())
            }
        }
        "shutdown" => {
            if *app.shutdown.borrow() {
                Err("process is shutting down".into())
            } else {
                Ok(())
            }
        }
        _ => Err(format!("no check named {check:?}")),
    }
}

/// What the query asks for: `verbose`, and the checks to skip (`exclude`, repeatable).
fn parse_query(query: Option<&str>) -> (bool, Vec<String>) {
    let mut verbose = false;
    let mut excluded = Vec::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "verbose" => verbose = true,
            "exclude" => excluded.push(value.into_owned()),
            _ => {}
        }
    }
    (verbose, excluded)
}

/// Runs the endpoint's checks and answers as kube-apiserver does.
pub(crate) async fn answer(app: &App, endpoint: Endpoint, query: Option<&str>) -> Response {
    let (verbose, excluded) = parse_query(query);
    let mut listing = String::new();
    let mut failed = false;
    for &check in endpoint.checks() {
        if excluded.iter().any(|e| e == check) {
            listing.push_str(&format!("[+]{check} excluded: ok\n"));
            continue;
        }
        match run(app, check).await {
            Ok(()) => listing.push_str(&format!("[+]{check} ok\n")),
            Err(reason) => {
                failed = true;
                tracing::info!(check, %reason, "{} check failed", endpoint.name());
                listing.push_str(&format!("[-]{check} failed: reason withheld\n"));
            }
        }
    }
    let unknown: Vec<String> =
        excluded.iter().filter(|e| !endpoint.checks().contains(&e.as_str())).map(|e| format!("{e:?}")).collect();
    if !unknown.is_empty() {
        listing
            .push_str(&format!("warn: some health checks cannot be excluded: no matches for {}\n", unknown.join(", ")));
    }
    let name = endpoint.name();
    if failed {
        codec::text(StatusCode::INTERNAL_SERVER_ERROR, format!("{listing}{name} check failed\n"))
    } else if verbose {
        codec::text(StatusCode::OK, format!("{listing}{name} check passed\n"))
    } else {
        codec::text(StatusCode::OK, "ok".into())
    }
}

/// One check alone (`/readyz/etcd`): `ok`, or 500 with why; 404 for a check the endpoint
/// does not have.
pub(crate) async fn answer_one(app: &App, endpoint: Endpoint, check: &str) -> Response {
    if !endpoint.checks().contains(&check) {
        return crate::error::ApiError::unknown_resource().into_response();
    }
    match run(app, check).await {
        Ok(()) => codec::text(StatusCode::OK, "ok".into()),
        Err(reason) => codec::text(StatusCode::INTERNAL_SERVER_ERROR, format!("internal server error: {reason}\n")),
    }
}

pub(crate) async fn livez(State(app): State<Arc<App>>, RawQuery(q): RawQuery) -> Response {
    answer(&app, Endpoint::Livez, q.as_deref()).await
}

pub(crate) async fn readyz(State(app): State<Arc<App>>, RawQuery(q): RawQuery) -> Response {
    answer(&app, Endpoint::Readyz, q.as_deref()).await
}

pub(crate) async fn healthz(State(app): State<Arc<App>>, RawQuery(q): RawQuery) -> Response {
    answer(&app, Endpoint::Healthz, q.as_deref()).await
}

pub(crate) async fn livez_one(State(app): State<Arc<App>>, Path(check): Path<String>) -> Response {
    answer_one(&app, Endpoint::Livez, &check).await
}

pub(crate) async fn readyz_one(State(app): State<Arc<App>>, Path(check): Path<String>) -> Response {
    answer_one(&app, Endpoint::Readyz, &check).await
}

pub(crate) async fn healthz_one(State(app): State<Arc<App>>, Path(check): Path<String>) -> Response {
    answer_one(&app, Endpoint::Healthz, &check).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_flags_and_repeated_excludes() {
        assert_eq!(parse_query(None), (false, vec![]));
        assert_eq!(parse_query(Some("verbose")), (true, vec![]));
        assert_eq!(
            parse_query(Some("verbose=1&exclude=etcd&exclude=poststarthook%2Fx")),
            (true, vec!["etcd".to_string(), "poststarthook/x".to_string()])
        );
    }
}
