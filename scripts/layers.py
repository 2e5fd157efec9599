#!/usr/bin/env python3
"""Checks the proxy's layering: which top-level module of `proxy/src` names which.

Every `crate::<module>` path in code (comments and doc links are not code) is an edge
from the file's top-level module (its directory, or the file itself) to <module>. The
layers below are the order the README's architecture section draws, bottom up: a
module may use modules of lower layers and, within its own layer, only the edges
listed in SAME_LAYER. Any other edge, and any cycle, fails the check.

Usage: scripts/layers.py [--graph]   (--graph also prints every edge)
"""

import re
import sys
from collections import defaultdict
from pathlib import Path

LAYERS = [
    ("leaves", ["alloc_count", "clock", "shard", "background", "metrics", "deadline", "net", "logsink", "logging", "trace", "overload"]),
    ("error", ["error"]),
    ("body", ["body"]),
    ("config", ["config"]),
    ("host, upstream and tls", ["host", "upstream", "tls"]),
    ("snapshot", ["snapshot"]),
    ("exchange", ["exchange"]),
    ("server", ["server"]),
    ("tooling", ["reload", "admin", "app", "bundle", "build", "control", "runner", "bench", "cli"]),
]

# Edges allowed inside a layer (everything else there must go through a lower layer).
SAME_LAYER = {
    ("upstream", "tls"),
    ("metrics", "shard"),
    ("logsink", "metrics"),
    ("trace", "metrics"),
    ("admin", "reload"),
    ("admin", "control"),
    ("app", "reload"),
    ("app", "admin"),
    ("control", "bundle"),
    ("control", "reload"),
    ("control", "background"),
    ("cli", "app"),
    ("cli", "admin"),
    ("cli", "reload"),
    ("cli", "bundle"),
    ("cli", "build"),
    ("cli", "control"),
    ("cli", "bench"),
    ("cli", "runner"),
    ("runner", "app"),
    ("bench", "runner"),
}

ROOT = Path(__file__).resolve().parent.parent / "proxy" / "src"


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def module_of(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0].removesuffix(".rs")


def main() -> int:
    layer_of = {m: i for i, (_, mods) in enumerate(LAYERS) for m in mods}
    edges = defaultdict(set)  # (from, to) -> files
    for path in sorted(ROOT.rglob("*.rs")):
        src = module_of(path)
        if src in ("lib", "main"):
            continue
        code = strip_comments(path.read_text())
        # `use crate::{a, b}` and `crate::a::...` alike.
        names = set(re.findall(r"\bcrate::(\w+)", code))
        for group in re.findall(r"\bcrate::\{([^}]*)\}", code):
            names.update(re.findall(r"(?:^|,)\s*(\w+)", group))
        for dst in names:
            if dst != src:
                edges[(src, dst)].add(str(path.relative_to(ROOT)))
    problems = []
    for (src, dst), files in sorted(edges.items()):
        if src not in layer_of or dst not in layer_of:
            problems.append(f"{src} -> {dst}: a module missing from LAYERS ({', '.join(sorted(files))})")
            continue
        ls, ld = layer_of[src], layer_of[dst]
        if ld > ls or (ld == ls and (src, dst) not in SAME_LAYER):
            problems.append(
                f"{src} ({LAYERS[ls][0]}) -> {dst} ({LAYERS[ld][0]}): not downward, in {', '.join(sorted(files))}"
            )
    # Cycles between modules (also catches allowed same-layer edges that loop).
    graph = defaultdict(set)
    for src, dst in edges:
        graph[src].add(dst)
    state = {}

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                problems.append("cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    if "--graph" in sys.argv:
        for (src, dst), files in sorted(edges.items()):
            print(f"{src} -> {dst}  ({len(files)} files)")
    if problems:
        print("layering problems:", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        return 1
    print(f"layers ok: {len(edges)} edges between {len(graph)} modules, all downward, no cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
