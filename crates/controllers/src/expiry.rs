//! Deleting an object once a time computed from it has passed: what the TTL-after-finished
//! controller does for Jobs and the token cleaner for bootstrap-token Secrets.

use std::fmt::Debug;
use std::time::Duration;

use kube::api::{DeleteParams, Preconditions};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

/// Deletes `obj` through `api` (with `params`, guarded by its uid, so a re-created object
/// of the same name is left alone) once `expires_at` has passed; before that, asks to be
/// called again then. True when this call deleted it. Objects already being deleted, and
/// objects without an expiry, are left as they are.
pub(crate) async fn delete_when_expired<K>(
    obj: &K,
    api: &Api<K>,
    expires_at: Option<jiff::Timestamp>,
    params: DeleteParams,
) -> crate::Result<(Action, bool)>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    if obj.meta().deletion_timestamp.is_some() {
        return Ok((Action::await_change(), false));
    }
    let Some(at) = expires_at else { return Ok((Action::await_change(), false)) };
    let now = jiff::Timestamp::now();
    if at > now {
        let wait = Duration::from_millis(at.duration_since(now).as_millis().max(100) as u64);
        return Ok((Action::requeue(wait), false));
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions { uid: obj.meta().uid.clone(), resource_version: None }),
        ..params
    };
    let deleted = match api.delete(&obj.name_any(), &params).await {
        Ok(_) => true,
        // Gone already, or replaced by a new object of the same name: nothing to do.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => false,
        Err(e) => return Err(e.into()),
    };
    Ok((Action::await_change(), deleted))
}
