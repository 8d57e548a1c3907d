#!/usr/bin/env python3
"""Checks the crate graph and each crate's module graph (scripts/test.sh runs it).

1. Crates use each other in one direction (README, "Crate map"):
       cli -> sim -> {batch, stream, delivery, serve} -> casework -> core -> {regulation, models, schemas}
   Every workspace dependency (normal, build and dev) must point to a lower layer; crates of
   one layer never depend on each other (batch, stream, delivery and serve stay apart).
2. No crate holds an import circle: the modules of a crate (`use crate::…`, `super::…`) form no
   cycle, so no module imports one that imports it back.

Reads `cargo metadata --no-deps`; exits 1 naming every forbidden edge and circle.
"""
import json
import os
import re
import subprocess
import sys

# Layer of each workspace crate: a crate may depend only on crates of a lower layer.
LAYERS = {
    "pharmwatch-schemas": 0,
    "pharmwatch-models": 0,
    "pharmwatch-regulation": 1,
    "pharmwatch-core": 2,
    "pharmwatch-casework": 3,
    "pharmwatch-batch": 4,
    "pharmwatch-stream": 4,
    "pharmwatch-delivery": 4,
    "pharmwatch-serve": 4,
    "pharmwatch-sim": 5,
    "pharmwatch": 6,
    "pharmwatch-tests": 7,
}

USE = re.compile(r"\b(?:crate|super)::([A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*)")
USE_GROUP = re.compile(r"\buse\s+crate::\{([^;]*)\}", re.S)


def crate_edges(meta):
    members = {p["name"]: p for p in meta["packages"] if p["id"] in meta["workspace_members"]}
    problems = []
    for name, pkg in sorted(members.items()):
        if name not in LAYERS:
            problems.append(f"crate {name} has no layer in scripts/check_crate_graph.py")
            continue
        for dep in pkg["dependencies"]:
            target = dep["name"]
            if target not in members:
                continue
            kind = dep.get("kind") or "normal"
            if LAYERS.get(target, 99) >= LAYERS[name]:
                problems.append(
                    f"forbidden {kind} dependency {name} -> {target} "
                    f"(layer {LAYERS[name]} -> {LAYERS.get(target)})"
                )
    return members, problems


def module_of(src, path):
    """The module path of a source file: src/a/b.rs -> a::b; lib.rs/main.rs -> ''."""
    rel = os.path.relpath(path, src)[:-3].replace(os.sep, "::")
    if rel in ("lib", "main"):
        return ""
    if rel.endswith("::mod"):
        rel = rel[: -len("::mod")]
    return rel


def strip_tests(text):
    """The file's code without comments and `#[cfg(test)]` items (tests may import anything;
    a doc link is not an import)."""
    i = text.find("#[cfg(test)]")
    text = text if i < 0 else text[:i]
    return "\n".join(re.sub(r"//.*$", "", line) for line in text.split("\n"))


def module_edges(src):
    files = []
    for d, _, names in os.walk(src):
        if os.path.basename(d) in ("tests", "benches"):
            continue
        for n in names:
            if n.endswith(".rs") and n != "tests.rs":
                files.append(os.path.join(d, n))
    modules = {module_of(src, f): f for f in files}
    edges = {m: set() for m in modules}
    for m, f in modules.items():
        text = strip_tests(open(f, encoding="utf-8").read())
        targets = set()
        for g in USE_GROUP.finditer(text):
            for part in re.split(r"[,\s]+", g.group(1)):
                head = part.split("::")[0].strip("{} ")
                if head:
                    targets.add(head)
        for u in USE.finditer(text):
            segments = u.group(1).split("::")
            if u.group(0).startswith("super::"):
                parent = m.split("::")[:-1]
                segments = parent + segments
            # The longest prefix that names a module of the crate.
            for k in range(len(segments), 0, -1):
                cand = "::".join(segments[:k])
                if cand in modules:
                    targets.add(cand)
                    break
        for t in targets:
            t = t if t in modules else None
            # A module importing its own submodule (parent -> child) is how Rust declares
            # them; only imports between different modules count.
            if t is not None and t != m and not t.startswith(m + "::" if m else "\0"):
                edges[m].add(t)
    return edges


def cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--no-deps"],
            cwd=root,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    members, problems = crate_edges(meta)
    for name, pkg in sorted(members.items()):
        src = os.path.join(os.path.dirname(pkg["manifest_path"]), "src")
        if not os.path.isdir(src):
            continue
        for comp in cycles(module_edges(src)):
            problems.append(f"import circle in {name}: " + " <-> ".join(comp))
    if problems:
        for p in problems:
            print(f"crate graph: {p}", file=sys.stderr)
        sys.exit(1)
    print(f"crate graph: {len(members)} crates in one direction, no import circle")


if __name__ == "__main__":
    main()
