"""The architecture as a test: layers only point down, and no module imports itself through others.

Every ``import`` in the package counts, also those inside functions: a deferred import is still a
dependency. A package may import its own modules and any package of a lower layer.
"""

import ast
from pathlib import Path

import proxygap

SRC = Path(proxygap.__file__).resolve().parent

# Lowest first. Packages on one line are peers: neither may import the other.
LAYERS = [
    ["errors", "config", "fileio", "__init__"],  # foundations every layer may use
    ["world"],  # the truth and its language
    ["envs", "tasks"],  # text environments and their demonstrators; prompt sets and splits
    ["lm"],  # tokenizer, model, pretraining, sampling, KL
    ["oversight"],  # judges, detectors, reward models, approval
    ["corpus", "measure"],  # the internet written from the world; statistics, estimators, the probe
    ["train"],  # one file per regime over shared loops
    ["pipeline"],  # shared steps: the base model of a world at a size, a reward model on a judge's labels
    ["report", "integrations"],  # draws from results.json alone; bridges to other libraries' trainers
    ["experiments"],  # specs, units of work, the runner and its executors
    ["cli"],
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(("proxygap", *parts))
        out[name.removesuffix(".__init__")] = path
    return out


def _lazy_api_bodies(tree: ast.Module, module: str) -> set[int]:
    """Nodes inside the root package's module-level ``__getattr__`` (PEP 562): the public API it
    re-exports on first use, not a dependency of the package on its layers."""
    if module != "proxygap":
        return set()
    return {id(n) for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "__getattr__" for n in ast.walk(f)}


def _imports(path: Path, module: str, is_package: bool) -> set[str]:
    found = set()
    tree = ast.parse(path.read_text())
    skip = _lazy_api_bodies(tree, module)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("proxygap"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("proxygap"):
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        targets = {t for t in _imports(path, name, path.name == "__init__.py") if t in modules}
        graph[name] = targets - {name}
    return graph


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_package_has_a_layer():
    missing = {_top(m) for m in _graph()} - set(RANK)
    assert not missing, f"packages without a layer in tests/test_layers.py: {sorted(missing)}"


def test_no_package_imports_one_above_it_or_a_peer():
    bad = []
    for module, targets in _graph().items():
        for target in targets:
            a, b = _top(module), _top(target)
            if a != b and RANK[b] >= RANK[a] and RANK[b] > 0:
                bad.append(f"{module} ({a}, layer {RANK[a]}) imports {target} ({b}, layer {RANK[b]})")
    assert not bad, "\n".join(sorted(bad))


def test_no_import_circles():
    graph = _graph()
    # A package's __init__ re-exporting its own submodules is not a circle of dependencies.
    edges = {m: {t for t in ts if not (m in t and t.startswith(m + "."))} for m, ts in graph.items()}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not cycles, f"import circles: {cycles}"


def test_no_experiment_imports_another():
    experiments = {m for m in _graph() if _top(m) == "experiments"}
    shared = {"proxygap.experiments", "proxygap.experiments.spec", "proxygap.experiments.catalogue",
              "proxygap.experiments.runner", "proxygap.experiments.executors"}
    bad = [(m, t) for m in experiments - shared for t in _graph()[m] if t in experiments and t != "proxygap.experiments.spec"]
    assert not bad, bad


def test_the_public_api_resolves_every_name():
    import importlib

    for name, (module, attr) in proxygap._API.items():
        assert hasattr(importlib.import_module(module), attr), name
    assert proxygap.Judge is importlib.import_module("proxygap.oversight.judges").Judge
