"""Code versions of stages, so that editing a stage's code reruns that stage and what follows, only.

`code_version("wsss.train_cam")` hashes the code of the module and of every project module it imports,
transitively (wsss.* and kernels.*; names re-exported by a package resolve to the module that defines them).
It hashes what runs, the module's syntax tree without docstrings (`_code`), so a comment, a docstring or a
reformat reruns nothing while any change of code reruns the stages that import it. The Snakefile passes it to
each rule as the param `code`, and Snakemake's params rerun trigger does the rest."""
import ast
import functools
import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("wsss", "kernels")


def code_version(module: str) -> str:
    digest = hashlib.sha256()
    for name in sorted(_closure(module)):
        digest.update(name.encode() + b"\0" + _code(name).encode())
    return digest.hexdigest()[:16]


@functools.cache
def _code(module: str) -> str:
    """The module's syntax tree without docstrings, as text: comments and formatting are not in the tree."""
    tree = ast.parse(_file(module).read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False)


@functools.cache
def _closure(module: str) -> frozenset:
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += _imports(name)
    return frozenset(seen)


def _file(module: str) -> Path:
    path = ROOT.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _is_module(name: str) -> bool:
    return name.split(".")[0] in PACKAGES and _file(name).exists()


@functools.cache
def _imports(module: str) -> tuple:
    """Project modules that `module` imports (parents of a submodule are not needed: they are usually
    empty or re-export, and a re-exported name is followed to its defining module)."""
    found = []
    for node in ast.walk(ast.parse(_file(module).read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if _is_module(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                found.append(_resolve(node.module, alias.name))
    return tuple(n for n in found if n)


def _resolve(package: str, name: str) -> str | None:
    """`from package import name`: the submodule `name`, or the module inside `package` that defines it."""
    if _is_module(f"{package}.{name}"):
        return f"{package}.{name}"
    if not _is_module(package):
        return None
    if _file(package).name != "__init__.py":
        return package
    for node in ast.parse(_file(package).read_text()).body:  # follow a re-export in __init__.py
        if isinstance(node, ast.ImportFrom) and node.module and any((a.asname or a.name) == name for a in node.names):
            return node.module if _is_module(node.module) else None
    return package
