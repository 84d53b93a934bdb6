#!/usr/bin/env python3
"""Generate crates/api/schema/k8s-v1.33.defs: the structural facts of the Kubernetes 1.33 API,
one definition per line (its name, a space, its schema as compact JSON), so that the
server can decode each definition the first time it needs it.

Source: the `_definitions.json` JSON Schema inside the PyPI wheel `kubernetes-validate`.
Kept: types, formats, properties, $ref, items, additionalProperties, required, enum and
the x-kubernetes-* extensions (patch strategy, merge keys, list types, group/version/kind).
Dropped: every description (those sentences are Kubernetes' words, not facts we need).

Usage: scripts/gen-schema.py [PATH_TO_WHEEL_OR_DEFINITIONS_JSON]
Without an argument the wheel is downloaded with `pip download`.
"""
import json
import os
import subprocess
import sys
import tempfile
import zipfile

VERSION = "v1.33.0-local"
WHEEL = "kubernetes-validate==1.37.0"
OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "api", "schema", "k8s-v1.33.defs")
KEEP = {"type", "format", "properties", "$ref", "items", "additionalProperties", "required", "enum"}


def load(arg):
    member = f"kubernetes_validate/kubernetes-json-schema/{VERSION}/_definitions.json"
    if arg and arg.endswith(".json"):
        return json.load(open(arg))
    if not arg:
        tmp = tempfile.mkdtemp()
        subprocess.check_call([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, WHEEL])
        arg = os.path.join(tmp, os.listdir(tmp)[0])
    with zipfile.ZipFile(arg) as z:
        return json.loads(z.read(member))


def strip(node):
    if isinstance(node, list):
        return [strip(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k == "properties":
            out[k] = {name: strip(p) for name, p in v.items()}
        elif k.startswith("x-kubernetes-"):
            out[k] = v
        elif k in KEEP:
            out[k] = strip(v)
        elif k in ("oneOf", "anyOf", "allOf"):
            out[k] = strip(v)
    # "$ref": "#/$defs/X" -> "X"
    if "$ref" in out:
        out["$ref"] = out["$ref"].rsplit("/", 1)[-1]
    return out


def main():
    doc = load(sys.argv[1] if len(sys.argv) > 1 else None)
    defs = {name: strip(d) for name, d in sorted(doc["$defs"].items())}
    with open(OUT, "w") as f:
        for name, d in defs.items():
            f.write(name + " " + json.dumps(d, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"wrote {len(defs)} definitions to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
