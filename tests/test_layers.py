"""The package's layers, read from its source: imports point one way.

Layers, top to bottom: the public modules (and ``reporting``), ``_dask``, ``_dispatch``,
the backends ``_cpu`` and ``_cuda``, ``_reference``, ``_host``.  A module imports only
its own layer or those below; no import cycle, not even through an import inside a
function; imports inside functions only for optional dependencies or where a module
would otherwise load numba (or CUDA) with ``import numba_quant``; no module reads
another subpackage's private names.
"""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "numba_quant"

# Lower number: lower layer.
LAYERS = {"_host": 0, "_reference": 1, "_cpu": 2, "_cuda": 2, "_dispatch": 3, "_dask": 4}
TOP = 5  # public modules, reporting/, anything else
OPTIONAL = ("torch", "cupy", "dask", "distributed", "tqdm", "matplotlib", "ml_dtypes",
            "numba", "safetensors", "scipy", "gguf", "transformers")
# Modules that load numba or CUDA: a public module imports them inside functions so that
# `import numba_quant` stays free of numba (tests/test_dask.py checks that start-up).
LOADS_NUMBA = ("numba_quant._cpu", "numba_quant._cuda", "numba_quant._reference",
               "numba_quant._dask")


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def _layer(module):
    parts = module.split(".")
    return LAYERS.get(parts[1], TOP) if len(parts) > 1 else TOP


def _imports(module, path):
    """``(target, names, in_function, lineno)`` of every numba_quant import."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append((alias.name, (), in_function, child.lineno))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) -
                                    child.level + 1] + ([base] if base else []))
                found.append((base, tuple(a.name for a in child.names), in_function,
                              child.lineno))
            visit(child, inner)

    visit(tree, False)
    return found


MODULES = dict(_modules())

def _targets(base, names):
    """The package modules an import statement loads (submodules named in ``names``)."""
    out = []
    for name in names:
        if f"{base}.{name}" in MODULES:
            out.append(f"{base}.{name}")
    return out or ([base] if base in MODULES else [])


def test_imports_point_down_and_inside_functions_only_where_allowed():
    problems = []
    for module, path in MODULES.items():
        for base, names, in_function, line in _imports(module, path):
            where = f"{path.relative_to(PACKAGE.parent)}:{line}"
            if not base.startswith("numba_quant"):
                if in_function and base.split(".")[0] not in OPTIONAL and base not in (
                        "importlib",):
                    problems.append(f"{where}: import of {base} inside a function")
                continue
            for target in _targets(base, names):
                if _layer(target) > _layer(module) and not (
                        _layer(module) == TOP and target == "numba_quant"):
                    problems.append(f"{where}: {module} (layer {_layer(module)}) imports "
                                    f"{target} (layer {_layer(target)})")
                if in_function and not target.startswith(LOADS_NUMBA):
                    problems.append(f"{where}: {target} imported inside a function")
    assert not problems, "\n".join(problems)


def _graph():
    graph = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for base, names, _, _ in _imports(module, path):
            for target in _targets(base, names):
                if target != module:
                    graph[module].add(target)
                # importing a submodule runs its package's __init__ first
                parent = target.rpartition(".")[0]
                while parent and parent in MODULES and parent != module \
                        and not module.startswith(parent + "."):
                    graph[module].add(parent)
                    parent = parent.rpartition(".")[0]
    return graph


def test_no_import_cycle():
    graph = _graph()
    state, stack, cycles = {}, [], []

    def walk(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def _subpackage(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else ""


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_names_across_subpackages(module):
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    aliases = {}
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("numba_quant"):
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                if target in MODULES:
                    aliases[alias.asname or alias.name] = target
                elif alias.name.startswith("_") and \
                        _subpackage(node.module + ".x") != _subpackage(module):
                    problems.append(f"line {node.lineno}: {alias.name} from {node.module}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in aliases and node.attr.startswith("_") \
                and not node.attr.startswith("__"):
            target = aliases[node.value.id]
            if _subpackage(target) != _subpackage(module) or target.count(".") < 2:
                problems.append(f"line {node.lineno}: {node.value.id}.{node.attr} "
                                f"({target})")
    assert not problems, "\n".join(problems)
