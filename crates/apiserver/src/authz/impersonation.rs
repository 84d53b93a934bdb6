//! User impersonation (`kubectl --as`, `--as-group`, `--as-uid`): the `Impersonate-User`,
//! `Impersonate-Uid`, `Impersonate-Group` and `Impersonate-Extra-<key>` headers, each
//! authorized as the `impersonate` verb on users, uids, groups, userextras/<key> or (for
//! `system:serviceaccount:<ns>:<name>`) serviceaccounts, as Kubernetes' impersonation filter.

use std::collections::BTreeMap;

use axum::http::HeaderMap;

use super::{Attributes, Authorizer, forbidden};
use crate::authn::{AUTHENTICATED, UserInfo};
use crate::error::ApiError;

const USER: &str = "impersonate-user";
const UID: &str = "impersonate-uid";
const GROUP: &str = "impersonate-group";
const EXTRA_PREFIX: &str = "impersonate-extra-";
const ANONYMOUS: &str = "system:anonymous";
const UNAUTHENTICATED: &str = "system:unauthenticated";

fn values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect()
}

fn unescape(key: &str) -> String {
    form_urlencoded::parse(format!("k={key}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| key.to_string())
        .to_lowercase()
}

/// The user a request impersonates, when it has impersonation headers and `user` may
/// impersonate everything they name; `Ok(None)` without headers; 403 (or 500 for groups
/// or extras without a user, as Kubernetes) otherwise.
pub fn impersonate(authorizer: &Authorizer, user: UserInfo, headers: &HeaderMap) -> Result<Option<UserInfo>, ApiError> {
    let names = values(headers, USER);
    let uids = values(headers, UID);
    let groups: Vec<String> = values(headers, GROUP).into_iter().map(str::to_string).collect();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix(EXTRA_PREFIX)
            && let Ok(v) = value.to_str()
        {
            extra.entry(unescape(key)).or_default().push(v.to_string());
        }
    }
    let Some(&username) = names.first() else {
        if uids.is_empty() && groups.is_empty() && extra.is_empty() {
            return Ok(None);
        }
        return Err(ApiError::new(
            500,
            "InternalError",
            "Internal error occurred: requested impersonation of groups, extra or uid without impersonating a user",
        ));
    };
    let check = |attrs: Attributes| {
        if authorizer.authorize(&attrs) { Ok(()) } else { Err(forbidden(&attrs, "")) }
    };
    let ask = |resource: &str, sub: &str, ns: &str, name: &str| {
        Attributes::resource(user.clone(), "impersonate", "", resource, sub, ns, name)
    };
    let service_account = username
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains(':'));
    match service_account {
        Some((ns, name)) => check(ask("serviceaccounts", "", ns, name))?,
        None => check(ask("users", "", "", username))?,
    }
    for uid in &uids {
        check(ask("uids", "", "", uid))?;
    }
    for group in &groups {
        check(ask("groups", "", "", group))?;
    }
    for (key, vals) in &extra {
        for v in vals {
            check(ask("userextras", key, "", v))?;
        }
    }
    let mut all_groups = groups;
    if all_groups.is_empty()
        && let Some((ns, _)) = service_account
    {
        all_groups.push("system:serviceaccounts".into());
        all_groups.push(format!("system:serviceaccounts:{ns}"));
    }
    let mut impersonated = if username == ANONYMOUS {
        if !all_groups.iter().any(|g| g == UNAUTHENTICATED) {
            all_groups.push(UNAUTHENTICATED.into());
        }
        UserInfo { username: username.to_string(), uid: String::new(), groups: all_groups, extra: BTreeMap::new() }
    } else {
        UserInfo::new(username, all_groups.into_iter().filter(|g| g != AUTHENTICATED))
    };
    impersonated.uid = uids.first().map(|u| u.to_string()).unwrap_or_default();
    impersonated.extra = extra;
    Ok(Some(impersonated))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::Modes;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn impersonation_needs_the_verb() {
        let rbac = Authorizer::new(Modes::default());
        let alice = UserInfo::new("alice", []);
        assert_eq!(impersonate(&rbac, alice.clone(), &headers(&[])).unwrap(), None);
        let e = impersonate(&rbac, alice.clone(), &headers(&[("Impersonate-User", "bob")])).unwrap_err();
        assert_eq!(
            e.message,
            r#"users "bob" is forbidden: User "alice" cannot impersonate resource "users" in API group "" at the cluster scope"#
        );
        let e = impersonate(&rbac, alice.clone(), &headers(&[("Impersonate-Group", "g")])).unwrap_err();
        assert_eq!(e.code, 500);
        let root = UserInfo::new("root", ["system:masters".to_string()]);
        let sa = impersonate(&rbac, root.clone(), &headers(&[("Impersonate-User", "system:serviceaccount:a:b")]))
            .unwrap()
            .unwrap();
        assert_eq!(sa.groups, ["system:serviceaccounts", "system:serviceaccounts:a", "system:authenticated"]);
        let bob = impersonate(
            &rbac,
            root,
            &headers(&[
                ("Impersonate-User", "bob"),
                ("Impersonate-Group", "devs"),
                ("Impersonate-Extra-Scopes%2Fa", "x"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(bob.groups, ["devs", "system:authenticated"]);
        assert_eq!(bob.extra.get("scopes/a").unwrap(), &["x".to_string()]);
    }
}
