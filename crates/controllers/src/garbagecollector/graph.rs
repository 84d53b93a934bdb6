//! The ownerReferences graph and the collector's decisions over it, without IO.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::discovery::Resource;

/// The finalizer of a foreground deletion: dependents go first.
pub(crate) const FOREGROUND: &str = "foregroundDeletion";
/// The finalizer of an orphaning deletion: dependents lose their reference, then the owner goes.
pub(crate) const ORPHAN: &str = "orphan";

/// One object as the collector knows it.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// Its resource.
    pub(crate) resource: Arc<Resource>,
    /// Namespace (none when cluster-scoped).
    pub(crate) namespace: Option<String>,
    /// Name.
    pub(crate) name: String,
    /// UID.
    pub(crate) uid: String,
    /// `metadata.ownerReferences`.
    pub(crate) owners: Vec<OwnerReference>,
    /// True when `metadata.deletionTimestamp` is set.
    pub(crate) deleting: bool,
    /// `metadata.finalizers`.
    pub(crate) finalizers: Vec<String>,
}

impl Node {
    /// True while the object waits for its blocking dependents (a foreground deletion).
    pub(crate) fn deleting_dependents(&self) -> bool {
        self.deleting && self.finalizers.iter().any(|f| f == FOREGROUND)
    }

    /// True when an orphaning deletion waits for the collector.
    pub(crate) fn orphaning(&self) -> bool {
        self.deleting && self.finalizers.iter().any(|f| f == ORPHAN)
    }
}

/// Every watched object by UID, and who depends on whom.
#[derive(Debug, Default)]
pub(crate) struct Graph {
    nodes: HashMap<String, Node>,
    /// owner UID → dependent UIDs (owners may be absent from `nodes`).
    dependents: HashMap<String, BTreeSet<String>>,
}

impl Graph {
    /// The object with `uid`.
    pub(crate) fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// The objects that name `uid` as an owner.
    pub(crate) fn dependents(&self, uid: &str) -> Vec<&Node> {
        self.dependents.get(uid).map(|d| d.iter().filter_map(|u| self.nodes.get(u)).collect()).unwrap_or_default()
    }

    /// Adds or replaces an object; returns the UIDs to look at again.
    pub(crate) fn upsert(&mut self, node: Node) -> Vec<String> {
        // A write that changed nothing the collector decides on (a status update, a label)
        // concerns no one, as in Kubernetes' graph builder, which looks again only when the
        // references or the deletion state change: most writes of a Pod are status writes.
        if let Some(old) = self.nodes.get_mut(&node.uid)
            && old.owners == node.owners
            && old.deleting == node.deleting
            && old.finalizers == node.finalizers
            && old.resource.key() == node.resource.key()
        {
            *old = node;
            return Vec::new();
        }
        let uid = node.uid.clone();
        let mut touched = vec![uid.clone()];
        let old_owners: Vec<String> = self.unlink(&uid);
        for o in &node.owners {
            self.dependents.entry(o.uid.clone()).or_default().insert(uid.clone());
            touched.push(o.uid.clone());
        }
        touched.extend(old_owners);
        // An owner that starts deleting (or reappears) concerns its dependents.
        if node.deleting_dependents() || node.orphaning() {
            touched.extend(self.dependents.get(&uid).into_iter().flatten().cloned());
        }
        self.nodes.insert(uid, node);
        touched.sort();
        touched.dedup();
        touched
    }

    /// Removes an object; returns the UIDs to look at again (its dependents and owners).
    pub(crate) fn remove(&mut self, uid: &str) -> Vec<String> {
        let mut touched = self.unlink(uid);
        self.nodes.remove(uid);
        touched.extend(self.dependents.get(uid).into_iter().flatten().cloned());
        if self.dependents.get(uid).is_some_and(BTreeSet::is_empty) {
            self.dependents.remove(uid);
        }
        touched
    }

    /// Forgets every object of the resource with `key` (its watch stopped); returns their UIDs.
    pub(crate) fn remove_resource(&mut self, key: &str) -> Vec<String> {
        let uids: Vec<String> =
            self.nodes.values().filter(|n| n.resource.key() == key).map(|n| n.uid.clone()).collect();
        uids.iter().flat_map(|u| self.remove(u)).collect()
    }

    /// UIDs of the objects of resource `key` not in `seen` (gone while the watch was down).
    pub(crate) fn stale(&self, key: &str, seen: &BTreeSet<String>) -> Vec<String> {
        self.nodes
            .values()
            .filter(|n| n.resource.key() == key && !seen.contains(&n.uid))
            .map(|n| n.uid.clone())
            .collect()
    }

    /// Drops `uid` from its owners' dependent sets; returns those owners.
    fn unlink(&mut self, uid: &str) -> Vec<String> {
        let Some(old) = self.nodes.get(uid) else { return Vec::new() };
        let owners: Vec<String> = old.owners.iter().map(|o| o.uid.clone()).collect();
        for o in &owners {
            if let Some(set) = self.dependents.get_mut(o) {
                set.remove(uid);
                if set.is_empty() && !self.nodes.contains_key(o) {
                    self.dependents.remove(o);
                }
            }
        }
        owners
    }
}

/// What an owner reference points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OwnerState {
    /// The owner exists and is not waiting for its dependents.
    Solid,
    /// No object with that UID exists (absent, or the name now has another UID).
    Dangling,
    /// The owner is being deleted in the foreground.
    WaitingForDependents,
}

/// How an object is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Propagation {
    /// Dependents deleted after the object, by the collector.
    Background,
    /// Dependents deleted first.
    Foreground,
    /// Dependents kept, their references to the object removed.
    Orphan,
}

/// What to do with an object that has owners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// It has a live owner: keep it.
    Keep,
    /// It has a live owner, and references (UIDs) to owners that are gone or going: drop them.
    RemoveReferences(Vec<String>),
    /// Every owner is gone or going: delete it.
    Delete(Propagation),
}

/// Decides the fate of a dependent from the state of each of its owner references
/// (as Kubernetes' `attemptToDeleteItem`).
pub(crate) fn plan_dependent(owners: &[(String, OwnerState)], finalizers: &[String], has_dependents: bool) -> Plan {
    if owners.is_empty() {
        return Plan::Keep;
    }
    let solid = owners.iter().any(|(_, s)| *s == OwnerState::Solid);
    if solid {
        let gone: Vec<String> =
            owners.iter().filter(|(_, s)| *s != OwnerState::Solid).map(|(u, _)| u.clone()).collect();
        return if gone.is_empty() { Plan::Keep } else { Plan::RemoveReferences(gone) };
    }
    let waiting = owners.iter().any(|(_, s)| *s == OwnerState::WaitingForDependents);
    if waiting && has_dependents {
        // Its own dependents must go first, so that the owner's wait covers them too.
        return Plan::Delete(Propagation::Foreground);
    }
    let policy = if finalizers.iter().any(|f| f == ORPHAN) {
        Propagation::Orphan
    } else if finalizers.iter().any(|f| f == FOREGROUND) {
        Propagation::Foreground
    } else {
        Propagation::Background
    };
    Plan::Delete(policy)
}

/// True while some dependent blocks the foreground deletion of the owner `uid`
/// (a reference to it with `blockOwnerDeletion: true`).
pub(crate) fn blocked(uid: &str, dependents: &[&Node]) -> bool {
    dependents.iter().any(|d| d.owners.iter().any(|o| o.uid == uid && o.block_owner_deletion == Some(true)))
}

/// `refs` without the references to `uids`.
pub(crate) fn without(refs: &[OwnerReference], uids: &[String]) -> Vec<OwnerReference> {
    refs.iter().filter(|r| !uids.contains(&r.uid)).cloned().collect()
}

#[cfg(test)]
mod tests;
