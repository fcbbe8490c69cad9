"""The package's imports flow one way: every module imports only from its own layer or the
layers below it (imports inside functions included), and no two files import each other,
directly or round a loop. Read from the source with ``ast``: nothing is imported."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "ganforge"

# lowest first; a module's layer is that of the longest prefix listed
LAYERS = [
    ["ganforge.errors"],
    ["ganforge.utils"],
    ["ganforge.config", "ganforge.schedules", "ganforge.losses", "ganforge.regularizers",
     "ganforge.augment", "ganforge.ada", "ganforge.plot"],
    ["ganforge.data"],  # loading data: sources, caches, pairs, patches, vectors
    ["ganforge.nets"],  # plain modules, built from a ModelConfig
    ["ganforge.metrics"],  # pure metrics and feature spaces
    ["ganforge.recipes"],  # training schemes: nets, optimisers, phases, losses
    ["ganforge.options"],  # a run's config: which keys it reads, the names it uses
    ["ganforge.checkpoint", "ganforge.hub_folder"],  # run / Hub folder I/O, below use
    ["ganforge.transfer"],  # starting a run from another run's weights (--init)
    ["ganforge.train", "ganforge.generate"],  # training a run; using one
    # applications over a trained run: eval reports, projection, latent directions, export,
    # the Hub folder and push, the web demo
    ["ganforge.evaluate", "ganforge.project", "ganforge.directions", "ganforge.export",
     "ganforge.hub", "ganforge.demo"],
    ["ganforge.cli", "ganforge.__main__", "ganforge"],
]


def _modules() -> dict[str, Path]:
    mods = {}
    for p in SRC.rglob("*.py"):
        parts = list(p.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The ganforge modules ``name`` imports (at any depth of its code)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # `from pkg import module` imports the module
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def layer(name: str) -> int:
    best, depth = None, -1
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (name == p or name.startswith(p + ".")) and p.count(".") > depth:
                best, depth = i, p.count(".")
    assert best is not None, f"{name} has no layer: add it to LAYERS"
    return best


def test_every_module_has_a_layer_and_the_walk_sees_the_imports():
    for name in MODULES:
        layer(name)
    assert "ganforge.config" in GRAPH["ganforge.nets.dcgan"]
    assert "ganforge.recipes.base" in GRAPH["ganforge.recipes.gan"]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_import_reaches_a_higher_layer(name):
    up = [m for m in GRAPH[name] if layer(m) > layer(name)]
    assert not up, f"{name} (layer {layer(name)}) imports {up} from higher layers"


def test_no_import_circle_between_files():
    index, low, stack, on, circles = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
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
                circles.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_the_checks_can_fail():
    assert layer("ganforge.config") < layer("ganforge.nets.dcgan")
    assert layer("ganforge.train.loop") > layer("ganforge.checkpoint")


def test_the_training_loop_does_not_branch_on_the_kind_of_data_or_the_recipe():
    """train/loop.py drives every recipe through the one contract (recipes/base.py): no test
    of the data's kind, no ``hasattr`` of the recipe."""
    tree = ast.parse((SRC / "train" / "loop.py").read_text())
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "hasattr":
            bad.append(f"line {node.lineno}: hasattr({ast.unparse(node.args[0])}, ...)")
        if isinstance(node, ast.Name) and node.id in ("is_pairs", "is_patches"):
            bad.append(f"line {node.lineno}: {node.id}")
        if isinstance(node, ast.Attribute) and node.attr in ("img2img", "vector"):
            bad.append(f"line {node.lineno}: .{node.attr}")
    assert not bad, bad


def test_a_function_over_60_lines_says_why():
    """Long functions are split, or carry a ``# long: ...`` comment just above them saying
    why they read better in one piece."""
    silent = []
    for name, path in MODULES.items():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.end_lineno - node.lineno + 1 <= 60:
                    continue
                top = min([node.lineno] + [d.lineno for d in node.decorator_list])
                above = "\n".join(lines[max(0, top - 4):top - 1]
                                  + lines[max(0, node.lineno - 4):node.lineno - 1])
                if "# long:" not in above:
                    silent.append(f"{name}.{node.name} ({node.end_lineno - node.lineno + 1})")
    assert not silent, f"functions over 60 lines without a '# long:' comment: {silent}"
