import shutil

import pytest

from wsss import provenance

CACHES = (provenance._closure, provenance._imports, provenance._code)


@pytest.fixture
def repo_copy(tmp_path, monkeypatch):
    """A copy of wsss/ and kernels/ whose files a test may edit; provenance hashes the copy."""
    root = tmp_path / "repo"
    shutil.copytree(provenance.ROOT / "wsss", root / "wsss")
    shutil.copytree(provenance.ROOT / "kernels", root / "kernels")
    monkeypatch.setattr(provenance, "ROOT", root)
    for cached in CACHES:
        cached.cache_clear()
    yield root
    for cached in CACHES:
        cached.cache_clear()


def _edit(file, old, new):
    text = file.read_text()
    assert old in text
    file.write_text(text.replace(old, new, 1))
    for cached in CACHES:
        cached.cache_clear()


def test_closure_follows_project_imports_only():
    closure = provenance._closure("wsss.pipeline.report")
    assert {"wsss.pipeline.report", "wsss.datasets.voc", "wsss.io", "wsss.metrics"} <= closure
    assert all(name.split(".")[0] in ("wsss", "kernels") for name in closure)


def test_reexported_kernel_resolves_to_its_module():
    assert provenance._resolve("kernels", "random_walk") == "kernels.random_walk"
    assert provenance._resolve("wsss", "io") == "wsss.io"


def test_editing_a_module_changes_only_its_dependents(repo_copy):
    root = repo_copy
    before = {m: provenance.code_version(m) for m in ("wsss.pipeline.report", "wsss.metrics", "wsss.runtime")}
    with open(root / "wsss" / "metrics.py", "a") as f:
        f.write("\n_EDIT = 1\n")
    for cached in CACHES:
        cached.cache_clear()
    after = {m: provenance.code_version(m) for m in before}
    assert after["wsss.metrics"] != before["wsss.metrics"]
    assert after["wsss.pipeline.report"] != before["wsss.pipeline.report"]  # report imports metrics
    assert after["wsss.runtime"] == before["wsss.runtime"]


@pytest.mark.parametrize("old, new", [
    ("import numpy as np\n", "import numpy as np  # a comment\n# another\n\n"),  # comments, blank lines
    ('"""[n, n] counts', '"""A rewritten docstring.\n\n    [n, n] counts'),  # a function's docstring
    ("def ", "\n\ndef "),  # formatting
])
def test_comments_docstrings_and_formatting_rerun_nothing(repo_copy, old, new):
    """issue 24: hash what runs. wsss/io.py (imported by every stage) and wsss/metrics.py edited cosmetically."""
    before = {m: provenance.code_version(m) for m in ("wsss.metrics", "wsss.pipeline.report")}
    file = repo_copy / "wsss" / "metrics.py"
    _edit(file, old, new)
    module_doc = repo_copy / "wsss" / "io.py"
    _edit(module_doc, '"""', '"""Edited module docstring. ')
    assert {m: provenance.code_version(m) for m in before} == before


@pytest.mark.parametrize("old, new", [
    ('invalid="ignore"', 'invalid="warn"'),  # a value the code uses
    ("import numpy as np\n", "import numpy as np\nnp.seterr(all='ignore')\n"),  # a statement
    ('"""[n, n] counts', 'x = 1\n    """[n, n] counts'),  # a statement before the docstring
])
def test_any_code_change_reruns(repo_copy, old, new):
    before = provenance.code_version("wsss.pipeline.report")
    _edit(repo_copy / "wsss" / "metrics.py", old, new)
    assert provenance.code_version("wsss.pipeline.report") != before
