"""The official Kubernetes Python client against a berth server: CRUD, watch, errors.

Usage: official_client.py KUBECONFIG
Exits non-zero (with a traceback) on any mismatch.
"""
import sys
import threading

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

config.load_kube_config(config_file=sys.argv[1])
core = client.CoreV1Api()
apps = client.AppsV1Api()

ns = client.V1Namespace(metadata=client.V1ObjectMeta(name="py"))
core.create_namespace(ns)
cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings", labels={"app": "py"}), data={"mode": "fast"})
created = core.create_namespaced_config_map("py", cm)
assert created.metadata.resource_version, created

got = core.read_namespaced_config_map("settings", "py")
assert got.data == {"mode": "fast"}, got.data
core.patch_namespaced_config_map("settings", "py", {"data": {"mode": "slow"}})
assert core.read_namespaced_config_map("settings", "py").data["mode"] == "slow"

listed = core.list_namespaced_config_map("py", label_selector="app=py")
assert [c.metadata.name for c in listed.items] == ["settings"], listed.items

try:
    core.read_namespaced_config_map("missing", "py")
    raise SystemExit("expected 404")
except ApiException as e:
    assert e.status == 404, e.status

deployment = client.V1Deployment(
    metadata=client.V1ObjectMeta(name="web"),
    spec=client.V1DeploymentSpec(
        replicas=2,
        selector=client.V1LabelSelector(match_labels={"app": "web"}),
        template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels={"app": "web"}),
            spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="nginx:1.27")]),
        ),
    ),
)
d = apps.create_namespaced_deployment("py", deployment)
assert d.spec.strategy.type == "RollingUpdate", d.spec.strategy
scale = apps.patch_namespaced_deployment_scale("web", "py", {"spec": {"replicas": 5}})
assert scale.spec.replicas == 5

# Watch from the list's resourceVersion sees a new object.
rv = core.list_namespaced_config_map("py").metadata.resource_version
seen = []


def watcher():
    w = watch.Watch()
    for event in w.stream(core.list_namespaced_config_map, "py", resource_version=rv, timeout_seconds=10):
        seen.append((event["type"], event["object"].metadata.name))
        if event["object"].metadata.name == "later":
            w.stop()


t = threading.Thread(target=watcher)
t.start()
core.create_namespaced_config_map("py", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="later")))
t.join(15)
assert ("ADDED", "later") in seen, seen

core.delete_namespaced_config_map("settings", "py")
print("ok")
