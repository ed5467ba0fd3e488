import shutil

from wsss import provenance


def test_closure_follows_project_imports_only():
    closure = provenance._closure("wsss.pipeline.report")
    assert {"wsss.pipeline.report", "wsss.datasets.voc", "wsss.io", "wsss.metrics"} <= closure
    assert all(name.split(".")[0] in ("wsss", "kernels") for name in closure)


def test_reexported_kernel_resolves_to_its_module():
    assert provenance._resolve("kernels", "random_walk") == "kernels.random_walk"
    assert provenance._resolve("wsss", "io") == "wsss.io"


def test_editing_a_module_changes_only_its_dependents(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    shutil.copytree(provenance.ROOT / "wsss", root / "wsss")
    shutil.copytree(provenance.ROOT / "kernels", root / "kernels")
    monkeypatch.setattr(provenance, "ROOT", root)
    for cached in (provenance._closure, provenance._imports):
        cached.cache_clear()
    before = {m: provenance.code_version(m) for m in ("wsss.pipeline.report", "wsss.metrics", "wsss.runtime")}
    with open(root / "wsss" / "metrics.py", "a") as f:
        f.write("\n# an edit\n")
    after = {m: provenance.code_version(m) for m in before}
    assert after["wsss.metrics"] != before["wsss.metrics"]
    assert after["wsss.pipeline.report"] != before["wsss.pipeline.report"]  # report imports metrics
    assert after["wsss.runtime"] == before["wsss.runtime"]
    for cached in (provenance._closure, provenance._imports):
        cached.cache_clear()
