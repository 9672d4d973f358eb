#!/usr/bin/env python3
"""The import graph of vikingsync's top-level modules, and any cycle in it.

Scans src/**/*.rs (the library and the binary) for `crate::<module>`, `use crate::{a, b::c}` and
`super::...` paths that leave a top-level module, maps every file to its top-level module
(`src/client/send.rs` -> client, `src/lib.rs` / `src/main.rs` -> the crate root, left out), and
prints `module -> dependencies`, then the cycles found. Exit 1 if there is a cycle.

Usage: python3 bench/modgraph.py [SRC_DIR]   (default: src next to this script's parent)
"""

import re
import sys
from pathlib import Path

ROOT_FILES = {"lib.rs", "main.rs"}


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def module_path(src, path):
    """`src/client/send.rs` -> ["client", "send"]; `src/source/mod.rs` -> ["source"]."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    if len(parts) == 1 and parts[0] + ".rs" in ROOT_FILES:
        return []
    return parts


def expand_use_group(body):
    """Top-level names in `{a, b::c, d::{e, f}}` (only the first segment of each item)."""
    names, depth, cur = [], 0, ""
    for ch in body:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            names.append(cur)
            cur = ""
        else:
            cur += ch
    names.append(cur)
    return [n.strip().split("::")[0].strip() for n in names if n.strip()]


def deps_of(text, modpath, top_modules):
    """Top-level modules `text` (a file at `modpath`) refers to."""
    found = set()
    for m in re.finditer(r"\bcrate::(\{[^;]*?\}|[A-Za-z_][A-Za-z0-9_]*)", text):
        target = m.group(1)
        names = expand_use_group(target[1:-1]) if target.startswith("{") else [target]
        found.update(n for n in names if n in top_modules)
    # `super::` (possibly repeated) climbs from the file's module; a path that climbs to the
    # crate root and names another top-level module is a dependency on it.
    for m in re.finditer(r"\b((?:super::)+)(\{[^;]*?\}|[A-Za-z_][A-Za-z0-9_]*)", text):
        ups = m.group(1).count("super::")
        # A file's own items live in `modpath`; `#[cfg(test)] mod tests` inside it climbs one
        # more, which is approximated by also allowing one extra level.
        for extra in (0, 1):
            base = modpath[: max(len(modpath) + extra - ups, 0)] if ups <= len(modpath) + extra else None
            if base is None:
                continue
            if base == []:
                target = m.group(2)
                names = expand_use_group(target[1:-1]) if target.startswith("{") else [target]
                found.update(n for n in names if n in top_modules)
    return found


def find_cycles(graph):
    """Every elementary cycle, each reported once (rotated to start at its smallest name)."""
    cycles = set()

    def walk(start, node, path, on_path):
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                cyc = path[:]
                i = cyc.index(min(cyc))
                cycles.add(tuple(cyc[i:] + cyc[:i]))
            elif nxt not in on_path and nxt > start:
                on_path.add(nxt)
                walk(start, nxt, path + [nxt], on_path)
                on_path.discard(nxt)

    for start in sorted(graph):
        walk(start, start, [start], {start})
    return sorted(cycles)


def main():
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "src"
    files = sorted(src.rglob("*.rs"))
    top_modules = {module_path(src, f)[0] for f in files if module_path(src, f)}
    graph = {m: set() for m in sorted(top_modules)}
    for f in files:
        modpath = module_path(src, f)
        if not modpath:
            continue
        me = modpath[0]
        deps = deps_of(strip_comments(f.read_text(encoding="utf-8")), modpath, top_modules)
        graph[me].update(d for d in deps if d != me)
    for m in sorted(graph):
        print(f"{m:<12} -> {', '.join(sorted(graph[m])) or '(none)'}")
    cycles = find_cycles(graph)
    if cycles:
        for c in cycles:
            print("cycle: " + " -> ".join(c + (c[0],)))
        return 1
    print("no cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
