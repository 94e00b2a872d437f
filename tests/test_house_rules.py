"""House rules a reviewer would otherwise check by hand, read from the source with ``ast``:
no ``_private`` name is imported from another module, ``let_core`` has no import circle, and
every ``LET_*`` environment variable is read in ``let_core/config.py`` only."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = sorted(p.parent.name for p in REPO.glob("*/__init__.py") if p.parent.name not in ("tests", "bench"))




def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _lazy_exports(path: Path) -> dict[str, str]:
    """A package's ``_EXPORTS = {name: defining module}`` (``let_core._lazy``): what
    ``from package import name`` really imports, though only as a string in the package."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets)
                and isinstance(node.value, ast.Dict)):
            return {ast.literal_eval(k): ast.literal_eval(v) for k, v in zip(node.value.keys, node.value.values)
                    if k is not None}
    return {}


def _imports(name: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) of every import outside TYPE_CHECKING,
    at module level or inside a function alike: an import moved into a function to dodge a
    circle is still one."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(block.test) for node in ast.walk(block)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.append((base, [alias.name for alias in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, [], node.lineno) for alias in node.names)
        elif (isinstance(node, ast.Call) and ast.unparse(node.func) in ("importlib.import_module", "import_module")
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.args[0].value, [], node.lineno))
    return found


def _import_graph(package: str) -> dict[str, dict[str, int]]:
    """module -> {module it imports: line}, within one top-level package. ``from pkg import
    name`` of a lazily exported name is an edge to the module defining it."""
    modules = {n: p for n, p in _modules().items() if n.split(".")[0] == package}
    exports = {n: _lazy_exports(p) for n, p in modules.items() if p.name == "__init__.py"}
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        edges = graph.setdefault(name, {})
        for module, names, line in _imports(name, path):
            targets = []
            for imported in names or [""]:
                submodule = f"{module}.{imported}"
                if imported and submodule in modules:
                    targets.append(submodule)
                elif imported in exports.get(module, {}):
                    targets.append(exports[module][imported])
                else:
                    targets.append(module)
            for target in targets:
                # A package imports its own submodules to re-export them; that is no circle.
                if target in modules and target != name and not target.startswith(name + "."):
                    edges.setdefault(target, line)
    return graph


def _circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, {})):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def test_no_private_name_is_imported_from_another_module():
    modules = _modules()
    offences = []
    for name, path in modules.items():
        for module, names, _line in _imports(name, path):
            if module == name or module.split(".")[0] not in PACKAGES:
                continue
            for imported in names:
                submodule = f"{module}.{imported}"
                if imported.startswith("_") and not imported.startswith("__") and submodule not in modules:
                    offences.append(f"{path.relative_to(REPO)}: {imported} from {module}")
    assert sorted(set(offences)) == [], "private names imported across modules"


def test_no_private_name_of_another_module_is_used_through_it():
    """``from let_core import store; store._helper()`` is a private import too."""
    modules = _modules()
    offences = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases = {}
        for module, names, _line in _imports(name, path):
            for imported in names:
                if f"{module}.{imported}" in modules:
                    aliases[imported] = f"{module}.{imported}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                aliases.update({(a.asname or a.name): a.name for a in node.names if a.name in modules})
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and aliases.get(ast.unparse(node.value), name) != name):
                offences.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)}")
    assert offences == [], "private names of other modules used"


def test_let_core_has_no_import_circle():
    graph = _import_graph("let_core")
    described = [" <-> ".join(group) + ": " + "; ".join(
        f"{a} -> {b} (line {line})" for a in group for b, line in sorted(graph[a].items()) if b in group)
        for group in _circles(graph)]
    assert described == [], "import circles in let_core:\n" + "\n".join(described)


def test_the_circle_check_can_fail():
    """The checker itself: a circle through a function-level import and a lazy export is found."""
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 4}}
    assert _circles(graph) == [["a", "b", "c"]]
    assert _circles({"a": {"b": 1}, "b": {}}) == []
    source = ast.parse("def f():\n    from let_core.results import load_results\n")
    assert any(isinstance(n, ast.ImportFrom) for n in ast.walk(source))  # walked, not only module level
    assert _lazy_exports(REPO / "let_core" / "results" / "__init__.py")["load_results"] == "let_core.results.loading"
    # a module importing the package's lazy name depends on the defining module
    assert "let_core.results.loading" in _import_graph("let_core")["let_core.cli"]


def test_let_environment_variables_are_read_in_config_only():
    offences = []
    for _name, path in _modules().items():
        relative = str(path.relative_to(REPO))
        if relative == "let_core/config.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in (
                    "os.environ.get", "os.getenv", "environ.get", "getenv", "os.environ.setdefault"):
                reads = node.args[:1]
            elif isinstance(node, ast.Subscript) and ast.unparse(node.value) in ("os.environ", "environ"):
                reads = [node.slice]
            else:
                continue
            for argument in reads:
                text = ast.unparse(argument)
                if "LET_" in text or text.endswith("_ENV"):
                    offences.append(f"{relative}:{node.lineno}: {ast.unparse(node)}")
    assert offences == [], "LET_* read outside let_core/config.py:\n" + "\n".join(offences)


def test_the_counting_rule_is_standard_library_only():
    """``results/rule.py`` is what both readers (row by row and vectorised) apply: it may import
    nothing but the standard library, so that it stays one small module anyone can read."""
    import sys

    path = REPO / "let_core" / "results" / "rule.py"
    imported = {module.split(".")[0] for module, _names, _line in _imports("let_core.results.rule", path)}
    assert sorted(imported - set(sys.stdlib_module_names) - {"__future__"}) == []


#: The CLI's commands, as a message or docstring names them: "`lett doctor`", never "`let doctor`"
#: (``let`` is a bash builtin; the alias exists for old habits, not for LET's own texts).
_OLD_COMMAND = re.compile(r"`let (?:[a-z]|-)|\blet (?:doctor|results|merge|delete|demo|plot|cite|calibration|gt|"
                          r"plugins|statement|collect|compact|dataset|export|ui)\b")


def test_texts_name_the_lett_command():
    offences = []
    for _name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and _OLD_COMMAND.search(node.value):
                offences.append(f"{path.relative_to(REPO)}:{node.lineno}: {_OLD_COMMAND.search(node.value)[0]!r}")
    assert offences == [], "texts that name the bash builtin `let` instead of `lett`:\n" + "\n".join(offences)


def test_every_check_fails_on_the_fault_it_names(tmp_path, monkeypatch):
    """Each check above, run on a made-up tree holding exactly its fault, fails."""
    import sys

    import pytest

    sources = {
        "let_core/__init__.py": "",
        "let_core/config.py": "import os\nHOME = os.environ.get('LET_HOME')\n",
        # reads a LET_ variable itself, takes a private name, and is half of a circle
        "let_core/a.py": "import os\nfrom let_core.b import _hidden\nSECRET = os.environ.get('LET_SECRET')\n",
        # the other half, through a function-level import of a lazily exported name
        "let_core/b.py": "_hidden = 1\n\ndef later():\n    from let_core.results import thing\n    return thing\n",
        "let_core/results/__init__.py": "_EXPORTS = {'thing': 'let_core.results.loading'}\n",
        "let_core/results/loading.py": "from let_core import a\nthing = a\n",
        "let_core/results/rule.py": "import numpy\nHELP = 'run `let doctor`'\n",
        # a private name used through the module, not imported by name
        "let_core/c.py": "from let_core import b\nVALUE = b._hidden\n",
    }
    for name, text in sources.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    here = sys.modules[__name__]
    monkeypatch.setattr(here, "REPO", tmp_path)
    monkeypatch.setattr(here, "PACKAGES", ["let_core"])
    monkeypatch.setattr(here, "ENV_MOVING_WITH_THE_SERVER", set(), raising=False)
    for check, fault in ((test_no_private_name_is_imported_from_another_module, "_hidden from let_core.b"),
                         (test_no_private_name_of_another_module_is_used_through_it, "b._hidden"),
                         (test_let_core_has_no_import_circle, "let_core.b -> let_core.results.loading"),
                         (test_let_environment_variables_are_read_in_config_only, "LET_SECRET"),
                         (test_the_counting_rule_is_standard_library_only, "numpy"),
                         (test_texts_name_the_lett_command, "`let d")):
        with pytest.raises(AssertionError) as failed:
            check()
        assert fault in str(failed.value), (check.__name__, str(failed.value))
