#!/usr/bin/env python3
"""Checks the source tree's shape: no import cycle between the top-level
modules of src/, none between sibling files of one module, no file over 450
lines. Exits non-zero and names what is wrong."""
import pathlib
import re
import sys

MAX_LINES = 450
SRC = pathlib.Path(__file__).resolve().parent.parent / "src"
PATH_RE = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
GROUP_RE = re.compile(r"\buse\s+(crate|super)::\{([^;]*)\};", re.S)


def module_path(path: pathlib.Path) -> list[str]:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "mod":
        parts = parts[:-1]
    return parts


TOKEN_RE = re.compile(
    r"""//[^\n]*|/\*.*?\*/|r(\#*)".*?"\1|b?"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])'"""
    , re.S)


def strip_comments(text: str) -> str:
    """Drops comments and the contents of string and char literals."""
    return TOKEN_RE.sub(lambda m: " " if m.group(0).startswith("/") else '""', text)


def referenced(path: pathlib.Path, text: str) -> set[tuple[str, ...]]:
    here = module_path(path)
    is_mod = path.name in ("mod.rs", "lib.rs")
    found = set()

    def add(root: str, rest: list[str]) -> None:
        if root == "crate":
            found.add(tuple(rest))
        else:
            base = here if is_mod else here[:-1]
            found.add(tuple(base[:-1] + rest) if False else tuple(base + rest))

    for m in GROUP_RE.finditer(text):
        for item in re.split(r",\s*(?![^{]*\})", m.group(2)):
            name = item.strip().split("::")[0].strip("{} ")
            if name and name != "self":
                add(m.group(1), [name])
    for m in PATH_RE.finditer(text):
        rest = [p for p in m.group(2).split("::") if p]
        add(m.group(1), rest)
    return found


def main() -> int:
    files = sorted(SRC.rglob("*.rs"))
    problems = []
    modules = {tuple(module_path(f)) for f in files}
    top_edges: dict[str, set[str]] = {}
    sub_edges: dict[tuple[str, str], set[str]] = {}
    for f in files:
        lines = f.read_text().count("\n")
        if lines > MAX_LINES:
            problems.append(f"{f.relative_to(SRC.parent)}: {lines} lines (at most {MAX_LINES})")
        here = module_path(f)
        if not here or here[0] in ("main", "lib"):
            continue
        text = strip_comments(f.read_text())
        for target in referenced(f, text):
            if not target:
                continue
            if target[0] != here[0]:
                top_edges.setdefault(here[0], set()).add(target[0])
                continue
            # Sibling files of one module: a file that is not the module's
            # own mod.rs, referring to another file of the same parent.
            if len(here) < 2 or f.name == "mod.rs":
                continue
            parent = here[:-1]
            if tuple(target[: len(parent)]) != tuple(parent) or len(target) <= len(parent):
                continue
            sibling = target[len(parent)]
            if sibling != here[len(parent)] and tuple(parent) + (sibling,) in modules:
                sub_edges.setdefault(("::".join(parent), here[len(parent)]), set()).add(sibling)
    problems += cycles({k: v for k, v in top_edges.items()}, "crate")
    by_parent: dict[str, dict[str, set[str]]] = {}
    for (parent, child), targets in sub_edges.items():
        by_parent.setdefault(parent, {})[child] = targets
    for parent, graph in sorted(by_parent.items()):
        problems += cycles(graph, parent)
    for p in problems:
        print(p)
    if "--graph" in sys.argv:
        for k in sorted(top_edges):
            print(f"{k} -> {', '.join(sorted(top_edges[k]))}")
    return 1 if problems else 0


def cycles(graph: dict[str, set[str]], scope: str) -> list[str]:
    """Strongly connected components with more than one member."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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
                out.append(f"import cycle in {scope}: {' <-> '.join(sorted(comp))}")

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    sys.exit(main())
