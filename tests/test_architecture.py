"""The package's structure: layers import only downwards, no import cycles, no borrowed private names.

Read from the source with `ast` (nothing is imported), so a failure names the file and line to fix.
The layers, bottom to top, are the map of README.md's "Layout" section.
"""

import ast
import collections
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = "inpainting"

# Bottom to top. A module may import modules of lower layers and of its own package; packages of
# one layer do not import each other.
LAYERS = (
    ("errors", "extras", "files"),
    ("config", "imageio", "locks", "metrics", "classical", "cli"),
    ("model",),
    ("data",),
    ("checkpoints",),
    ("training", "export"),
    ("inference",),
    ("inpaint", "evaluate", "serve", "demo"),
)
LEVEL = {part: level for level, parts in enumerate(LAYERS) for part in parts}


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources():
    """{module name: (path, syntax tree)} of the package, the entry scripts and bench/."""
    paths = sorted((ROOT / PACKAGE).rglob("*.py")) + sorted(ROOT.glob("*.py"))
    paths += sorted((ROOT / "bench").glob("*.py"))
    return {module_name(path): (path, ast.parse(path.read_text(), str(path))) for path in paths
            if path.name != "setup.py"}


def imports(module, tree, known):
    """(line, imported module) of every import of a module in `known`, at any depth of the code."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name in known]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                target = candidate if candidate in known else node.module
                if target in known:
                    found.append((node.lineno, target))
    return [(line, target) for line, target in found if target != module]


def top_part(module):
    """The layer entry of a package module: `inpainting.model.generator` -> "model"."""
    parts = module.split(".")
    return parts[1] if parts[0] == PACKAGE and len(parts) > 1 else None


@pytest.fixture(scope="module")
def code():
    return sources()


def test_every_package_module_has_a_layer(code):
    missing = sorted(m for m in code if top_part(m) is not None and top_part(m) not in LEVEL)
    assert not missing, f"add these modules to LAYERS (and README's Layout section): {missing}"


def test_package_modules_import_only_lower_layers_or_their_own_package(code):
    wrong = []
    for module, (path, tree) in code.items():
        part = top_part(module)
        if part is None:
            continue
        for line, target in imports(module, tree, code):
            other = top_part(target)
            if other is None or other == part:
                continue
            if LEVEL[other] >= LEVEL[part]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target} ({other} is not below {part})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles(code):
    graph = collections.defaultdict(set)
    for module, (_, tree) in code.items():
        graph[module] |= {target for _, target in imports(module, tree, code)}
    # Tarjan's strongly connected components, iteratively.
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(start):
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        cycles.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter[0]
                counter[0] += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])

    for module in sorted(graph):
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"


def private_definitions(code):
    """{private name: modules defining it}: module-level and class-level `_names`, `self._names`."""
    defined = collections.defaultdict(set)
    for module, (_, tree) in code.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined[node.name].add(module)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                defined[node.id].add(module)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                defined[node.attr].add(module)
    return {name: modules for name, modules in defined.items()
            if name.startswith("_") and not name.startswith("__")}


def test_no_module_uses_another_modules_private_names(code):
    private = private_definitions(code)
    wrong = []
    for module, (path, tree) in code.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in code:
                wrong += [f"{path.relative_to(ROOT)}:{node.lineno} imports {node.module}.{alias.name}"
                          for alias in node.names if alias.name.startswith("_")]
            elif (isinstance(node, ast.Attribute) and node.attr in private
                  and module not in private[node.attr]
                  and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                owners = ", ".join(sorted(private[node.attr]))
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} uses {node.attr} of {owners}")
    assert not wrong, "\n".join(wrong)
