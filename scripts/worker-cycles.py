#!/usr/bin/env python3
"""Fails if the Worker's modules import each other in a cycle (issue 13 §1: the Worker is
adapters over core, each module using core and the ones below it, never back).

Reads `crate::a::b` and `super::x` paths in worker/src (comments removed), builds the graph of
modules (a submodule's use of its own parent does not count) and prints every strongly
connected component of more than one module. Usage: python3 scripts/worker-cycles.py [ROOT]
"""
import os
import re
import sys


def modules(src_root):
    found = {}
    for dirpath, _, files in os.walk(src_root):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(dirpath, name)
            parts = os.path.relpath(path, src_root)[:-3].split(os.sep)
            if parts[-1] == "mod":
                parts = parts[:-1]
            module = "crate" if parts == ["lib"] else "::".join(parts)
            with open(path, encoding="utf-8") as f:
                found[module] = re.sub(r"//[^\n]*", "", f.read())
    return found


def graph(found):
    edges = {m: set() for m in found}
    for m, src in found.items():
        for target in re.findall(r"crate::([a-z_]+(?:::[a-z_]+)?)", src):
            for c in (target, target.split("::")[0]):
                if c in found and c != m and not (m.startswith(c + "::") or c.startswith(m + "::")):
                    edges[m].add(c)
                    break
        if "::" in m:
            parent = m.rsplit("::", 1)[0]
            for t in re.findall(r"super::([a-z_]+)", src):
                c = parent + "::" + t
                if c in found and c != m:
                    edges[m].add(c)
    return edges


def cycles(edges):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
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

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    found = cycles(graph(modules(os.path.join(root, "worker", "src"))))
    for comp in found:
        print("import cycle among worker modules: " + " <-> ".join(comp))
    if found:
        sys.exit(1)
    print("worker modules: no import cycle")


if __name__ == "__main__":
    main()
