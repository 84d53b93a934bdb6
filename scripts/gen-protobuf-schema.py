#!/usr/bin/env python3
"""Generates crates/api/schema/protobuf.txt: the field tables the protobuf decoder walks.

Three sources are merged:
  * the k8s-pb 0.9 crate (kube-rs' prost bindings): messages, field numbers, wire kinds,
    repeated/map and the message type of every message field;
  * the Go types of kubernetes/api, apimachinery, apiextensions-apiserver and kube-aggregator
    at v0.33.0 (git mirrors):
    each field's JSON name, `omitempty`, pointer-ness and `json:",inline"`, keyed by the
    proto field number in its `protobuf:"..."` struct tag;
  * crates/api/schema/k8s-v1.33.defs: group/version/kind of top-level types, and JSON names
    (and `required`) for packages whose Go sources are not at hand.

Usage: gen-protobuf-schema.py K8S_PB_SRC MIRRORS OUT
  K8S_PB_SRC is ~/.cargo/registry/src/*/k8s-pb-0.9.0/src; MIRRORS holds bare clones named
  kubernetes+api/repo, kubernetes+apimachinery/repo, kubernetes+apiextensions-apiserver/repo
  and kubernetes+kube-aggregator/repo.

Output format, one record per line:
  K <apiVersion> <kind> <message>          a top-level kind
  M <message>                              starts a message
  F <tag> <json, or - when inline> <card> <kind> <presence> [<message>]
      card: one | rep | map (map keys are strings; kind is the value kind)
      kind: string | bool | int32 | int64 | double | bytes | message
      presence: ptr (emit whenever present), omit (omitempty: drop zero values),
                keep (emit even zero), inline (message fields merged into the parent)
"""

import json
import os
import re
import subprocess
import sys

GO_TAG = "v0.33.0"

RUST_PKG_PREFIX = {
    "api": "k8s.io.api",
    "apimachinery": "k8s.io.apimachinery",
    "apiextensions_apiserver": "k8s.io.apiextensions-apiserver",
    "kube_aggregator": "k8s.io.kube-aggregator",
    "metrics": "k8s.io.metrics",
}


def rust_module_to_package(mod_path):
    """['api','apps','v1'] -> 'k8s.io.api.apps.v1'"""
    head = RUST_PKG_PREFIX[mod_path[0]]
    return ".".join([head] + mod_path[1:])


FIELD_ATTR = re.compile(r'#\[prost\((.*)\)\]')
STRUCT = re.compile(r'^pub struct (\w+) \{')
FIELD = re.compile(r'^\s*pub (r#)?(\w+):\s*(.*)$')


def parse_rust(src_root):
    """Returns {package: {RustName: [(tag, rust_field, card, kind, type_path_or_None, mod_path)]}}"""
    out = {}
    for dirpath, _, files in os.walk(src_root):
        if "mod.rs" not in files:
            continue
        rel = os.path.relpath(dirpath, src_root)
        if rel == ".":
            continue
        mod_path = rel.split(os.sep)
        if mod_path[0] not in RUST_PKG_PREFIX:
            continue
        text = open(os.path.join(dirpath, "mod.rs")).read()
        if "#[prost(" not in text:
            continue
        pkg = rust_module_to_package(mod_path)
        msgs = out.setdefault(pkg, {})
        lines = text.split("\n")
        cur = None
        i = 0
        while i < len(lines):
            line = lines[i]
            m = STRUCT.match(line)
            if m:
                cur = msgs.setdefault(m.group(1), [])
                i += 1
                continue
            if line.startswith("}"):
                cur = None
            am = FIELD_ATTR.search(line) if cur is not None else None
            if am:
                attr = am.group(1)
                # field declaration may span lines until ','
                j = i + 1
                decl = lines[j].strip()
                while not decl.endswith(",") or decl.count("<") != decl.count(">"):
                    j += 1
                    decl += " " + lines[j].strip()
                fm = FIELD.match(decl)
                name = fm.group(2)
                rtype = fm.group(3).rstrip(",").replace(" ", "")
                tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
                mm = re.match(r'btree_map = "string, (\w+)"', attr)
                if mm:
                    card, kind = "map", mm.group(1)
                else:
                    kind = attr.split(",")[0].split(" ")[0].strip()
                    card = "rep" if "repeated" in attr else "one"
                type_path = None
                if kind == "message":
                    # the last path in the type is the message: Option<Box<X>>, Vec<X>, BTreeMap<K, X>
                    inner = re.findall(r"[\w:]+", rtype)[-1]
                    type_path = inner
                cur.append((tag, name, card, kind, type_path, mod_path))
                i = j + 1
                continue
            i += 1
    return out


def resolve_type(type_path, mod_path):
    parts = type_path.split("::")
    base = list(mod_path)
    while parts and parts[0] == "super":
        parts.pop(0)
        base.pop()
    full = base + parts
    return rust_module_to_package(full[:-1]), full[-1]


# ---- Go types -------------------------------------------------------------------------

GO_STRUCT = re.compile(r'^type (\w+) struct \{')
GO_FIELD = re.compile(r'^\s*(?:(\w+)\s+)?(\S+)\s+`([^`]*)`')


def git_files(git_dir, tag, prefix):
    ls = subprocess.run(["git", "--git-dir", git_dir, "ls-tree", "-r", "--name-only", tag, prefix],
                        check=True, capture_output=True, text=True).stdout.split()
    return ls


def git_show(git_dir, tag, path):
    return subprocess.run(["git", "--git-dir", git_dir, "show", f"{tag}:{path}"],
                          check=True, capture_output=True, text=True).stdout


def parse_go_package(git_dir, tag, pkg_dir):
    """Returns {StructName: {proto_tag: (json, presence)}} plus the set of slice types."""
    structs = {}
    for path in git_files(git_dir, tag, pkg_dir + "/"):
        if os.path.dirname(path) != pkg_dir or not path.endswith(".go") or path.endswith("_test.go"):
            continue
        if "generated" in os.path.basename(path):
            continue
        cur = None
        depth = 0
        for line in git_show(git_dir, tag, path).split("\n"):
            m = GO_STRUCT.match(line)
            if m:
                cur = structs.setdefault(m.group(1), {})
                depth = 1
                continue
            if cur is None:
                continue
            depth += line.count("{") - line.count("}")
            if depth <= 0:
                cur = None
                continue
            if depth != 1:
                continue
            fm = GO_FIELD.match(line)
            if not fm:
                continue
            tags = fm.group(3)
            pm = re.search(r'protobuf:"[^"]*?,(\d+),', tags)
            jm = re.search(r'json:"([^"]*)"', tags)
            if not pm or not jm:
                continue
            jparts = jm.group(1).split(",")
            jname = jparts[0]
            if jname == "-":
                continue
            gotype = fm.group(2)
            if "inline" in jparts[1:]:
                presence = "inline"
            elif gotype.startswith("*"):
                presence = "ptr"
            elif "omitempty" in jparts[1:]:
                presence = "omit"
            else:
                presence = "keep"
            cur[int(pm.group(1))] = (jname, presence)
    return structs


def go_dir_for(pkg):
    """Maps a proto package to (repo, dir) for the Go sources at hand, or None."""
    if pkg.startswith("k8s.io.api."):
        return "api", "/".join(pkg.split(".")[3:])
    for repo in ("apimachinery", "apiextensions-apiserver", "kube-aggregator"):
        if pkg.startswith(f"k8s.io.{repo}."):
            return repo, "/".join(pkg.split(".")[3:])
    return None


def load_definitions(path):
    """The definitions of gen-schema.py's output: a name, a space, the schema's JSON per line."""
    defs = {}
    for line in open(path):
        name, schema = line.rstrip("\n").split(" ", 1)
        defs[name] = json.loads(schema)
    return defs


def lower_camel(snake):
    parts = snake.split("_")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def main():
    src, mirrors, out_path = sys.argv[1:4]
    schema = load_definitions(os.path.join(os.path.dirname(out_path), "k8s-v1.33.defs"))
    rust = parse_rust(src)
    gits = {r: os.path.join(mirrors, f"kubernetes+{r}", "repo")
            for r in ("api", "apimachinery", "apiextensions-apiserver", "kube-aggregator")}
    go_cache = {}

    def go_structs(pkg):
        loc = go_dir_for(pkg)
        if loc is None:
            return {}
        if pkg not in go_cache:
            go_cache[pkg] = parse_go_package(gits[loc[0]], GO_TAG, loc[1])
        return go_cache[pkg]

    # Proto message names: prost renames JSONSchemaProps -> JsonSchemaProps; recover the
    # original from the Go structs or the JSON schema definitions (case-insensitive).
    def proto_name(pkg, rust_name):
        cands = list(go_structs(pkg).keys())
        defprefix = "io.k8s." + pkg[len("k8s.io."):] + "."
        cands += [d[len(defprefix):] for d in schema if d.startswith(defprefix)]
        for c in cands:
            if c.lower() == rust_name.lower():
                return c
        return rust_name

    names = {}
    for pkg, msgs in rust.items():
        for rname in msgs:
            names[(pkg, rname)] = proto_name(pkg, rname)

    lines = ["# generated by scripts/gen-protobuf-schema.py from k8s-pb 0.9, kubernetes/{api,"
             "apimachinery,apiextensions-apiserver,kube-aggregator} " + GO_TAG + "; do not edit"]
    for d, v in sorted(schema.items()):
        for gvk in v.get("x-kubernetes-group-version-kind", []):
            if not d.startswith("io.k8s."):
                continue
            pkg, _, msg = d[len("io.k8s."):].rpartition(".")
            full = "k8s.io." + pkg + "." + msg
            if not any(("k8s.io." + pkg) == p and names[(p, r)] == msg for (p, r) in names):
                continue
            av = gvk["version"] if not gvk["group"] else gvk["group"] + "/" + gvk["version"]
            if gvk["kind"] == "WatchEvent":
                continue
            lines.append(f"K {av} {gvk['kind']} {full}")

    stats = {"go": 0, "schema": 0, "camel": 0}
    camel_fields = []
    for pkg in sorted(rust):
        for rname in sorted(rust[pkg]):
            pname = names[(pkg, rname)]
            lines.append(f"M {pkg}.{pname}")
            go = go_structs(pkg).get(pname, {})
            d = schema.get("io.k8s." + pkg[len("k8s.io."):] + "." + pname, {})
            props = d.get("properties", {})
            required = set(d.get("required", []))
            for (tag, fname, card, kind, tpath, mod_path) in rust[pkg][rname]:
                mtype = ""
                if kind == "message":
                    tpkg, trname = resolve_type(tpath, mod_path)
                    mtype = " " + tpkg + "." + names[(tpkg, trname)]
                if tag in go:
                    jname, presence = go[tag]
                    stats["go"] += 1
                else:
                    key = fname.replace("_", "").lower()
                    match = [p for p in props if re.sub(r"[^a-z0-9]", "", p.lower()) == key]
                    if match:
                        jname = match[0]
                        stats["schema"] += 1
                    else:
                        jname = lower_camel(fname)
                        stats["camel"] += 1
                        camel_fields.append(f"{pkg}.{pname}.{jname}")
                    if kind in ("string", "bytes") and card == "one" and jname not in required:
                        presence = "omit"
                    else:
                        presence = "ptr"
                lines.append(f"F {tag} {jname or '-'} {card} {kind} {presence}{mtype}")
    with open(out_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(stats, file=sys.stderr)


if __name__ == "__main__":
    main()
