#!/usr/bin/env python3
"""Captures the protobuf bodies kubectl's imperative `create` commands send.

Runs a stub API server on 127.0.0.1 that answers /version and plain (non-aggregated)
discovery, records every POST body, and runs a list of `kubectl create ... --dry-run=server`
commands against it; then runs each with `--dry-run=client -o json` for kubectl's own JSON
form of the object. Both become fixtures of crates/api/src/protobuf/tests.rs (NAME.pb and
NAME.json).

Usage: capture-kubectl-protobuf.py OUT_DIR [KUBECTL]
"""

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# group/version -> [(resource, kind, namespaced)]
RESOURCES = {
    "v1": [
        ("namespaces", "Namespace", False),
        ("configmaps", "ConfigMap", True),
        ("secrets", "Secret", True),
        ("services", "Service", True),
        ("serviceaccounts", "ServiceAccount", True),
        ("serviceaccounts/token", "TokenRequest", True, "authentication.k8s.io", "v1"),
        ("resourcequotas", "ResourceQuota", True),
        ("pods", "Pod", True),
    ],
    "apps/v1": [("deployments", "Deployment", True)],
    "batch/v1": [("jobs", "Job", True), ("cronjobs", "CronJob", True)],
    "rbac.authorization.k8s.io/v1": [
        ("roles", "Role", True),
        ("rolebindings", "RoleBinding", True),
        ("clusterroles", "ClusterRole", False),
        ("clusterrolebindings", "ClusterRoleBinding", False),
    ],
    "scheduling.k8s.io/v1": [("priorityclasses", "PriorityClass", False)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "networking.k8s.io/v1": [("ingresses", "Ingress", True)],
}

COMMANDS = {
    "deployment": ["create", "deployment", "web", "--image=nginx", "--replicas=2", "--port=80"],
    "configmap": ["create", "configmap", "settings", "--from-literal=a=1", "--from-literal=b=two"],
    "secret": ["create", "secret", "generic", "creds", "--from-literal=password=s3cr3t"],
    "namespace": ["create", "namespace", "team-a"],
    "service": ["create", "service", "clusterip", "web", "--tcp=80:8080"],
    "job": ["create", "job", "once", "--image=busybox", "--", "echo", "hi"],
    "cronjob": ["create", "cronjob", "tick", "--image=busybox", "--schedule=*/5 * * * *", "--", "date"],
    "role": ["create", "role", "reader", "--verb=get,list", "--resource=pods"],
    "rolebinding": ["create", "rolebinding", "read", "--role=reader", "--user=alice"],
    "clusterrole": ["create", "clusterrole", "viewer", "--verb=get", "--resource=pods"],
    "serviceaccount": ["create", "serviceaccount", "robot"],
    "quota": ["create", "quota", "small", "--hard=cpu=1,memory=1Gi,pods=10"],
    "priorityclass": ["create", "priorityclass", "high", "--value=1000", "--description=important"],
    "pdb": ["create", "pdb", "web", "--selector=app=web", "--min-available=1"],
    "ingress": ["create", "ingress", "web", "--rule=example.com/=web:80"],
    "service-externalname": ["create", "service", "externalname", "db",
                             "--external-name=db.example.com"],
    "service-nodeport": ["create", "service", "nodeport", "web", "--tcp=80:http", "--node-port=30080"],
    "clusterrolebinding": ["create", "clusterrolebinding", "admins", "--clusterrole=admin",
                           "--group=ops", "--serviceaccount=default:robot"],
}

# Commands without --dry-run (kubectl create token has none); no kubectl JSON for these.
PLAIN_COMMANDS = {
    "token": ["create", "token", "robot", "--audience=api", "--duration=1h"],
}

captured = {}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, obj, code=200):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/version":
            return self.reply({"major": "1", "minor": "33", "gitVersion": "v1.33.0"})
        if path == "/api":
            return self.reply({"kind": "APIVersions", "versions": ["v1"]})
        if path == "/apis":
            groups = []
            for gv in RESOURCES:
                if "/" in gv:
                    g, v = gv.split("/")
                    ver = {"groupVersion": gv, "version": v}
                    groups.append({"name": g, "versions": [ver], "preferredVersion": ver})
            return self.reply({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        gv = path[len("/api/"):] if path.startswith("/api/") else path[len("/apis/"):]
        if gv in RESOURCES:
            res = []
            for (r, k, n, *group_version) in RESOURCES[gv]:
                entry = {"name": r, "singularName": "", "namespaced": n, "kind": k,
                         "verbs": ["create", "get", "list"]}
                if group_version:
                    entry["group"], entry["version"] = group_version
                res.append(entry)
            return self.reply({"kind": "APIResourceList", "apiVersion": "v1",
                               "groupVersion": gv, "resources": res})
        self.reply({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "NotFound", "code": 404}, 404)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        captured[self.path] = (self.headers.get("Content-Type"), body)
        self.reply({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                    "reason": "Invalid", "code": 422, "message": "captured"}, 422)


def main():
    out_dir = sys.argv[1]
    kubectl = sys.argv[2] if len(sys.argv) > 2 else "kubectl"
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    os.makedirs(out_dir, exist_ok=True)
    for name, args in PLAIN_COMMANDS.items():
        captured.clear()
        subprocess.run([kubectl, "--server", url, *args], capture_output=True, timeout=60)
        for path, (ctype, data) in captured.items():
            print(f"{name}: POST {path} {ctype} {len(data)} bytes", file=sys.stderr)
            with open(os.path.join(out_dir, name + ".pb"), "wb") as f:
                f.write(data)
    for name, args in COMMANDS.items():
        captured.clear()
        subprocess.run([kubectl, "--server", url, "--dry-run=server", *args],
                       capture_output=True, timeout=60)
        posts = [(p, ct, b) for p, (ct, b) in captured.items()]
        if not posts:
            print(f"{name}: no POST", file=sys.stderr)
            continue
        path, ctype, data = posts[0]
        print(f"{name}: POST {path} {ctype} {len(data)} bytes", file=sys.stderr)
        with open(os.path.join(out_dir, name + ".pb"), "wb") as f:
            f.write(data)
        # kubectl's own JSON form of the same object: the expected decoding.
        client = subprocess.run([kubectl, "--server", url, "--dry-run=client", "-o", "json", *args],
                                capture_output=True, timeout=60, text=True)
        if client.returncode == 0:
            with open(os.path.join(out_dir, name + ".json"), "w") as f:
                f.write(client.stdout)
        else:
            print(f"{name}: client dry run failed: {client.stderr}", file=sys.stderr)
    server.shutdown()


if __name__ == "__main__":
    main()
