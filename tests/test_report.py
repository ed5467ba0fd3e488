"""The report's run-time table: shards summed per rule, benchmarks of another `shards` count left out."""
from wsss.pipeline import report


def _bench(file, seconds):
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(f"s\th:m:s\n{seconds}\t0:00:00\n")


def test_run_times_sum_the_current_shards_only(tmp_path):
    _bench(tmp_path / "train_cam.tsv", 100.0)
    _bench(tmp_path / "make_cam" / "1-of-2.tsv", 10.0)
    _bench(tmp_path / "make_cam" / "2-of-2.tsv", 12.0)
    _bench(tmp_path / "make_cam" / "1-of-1.tsv", 50.0)  # an earlier run with shards: 1
    _bench(tmp_path / "gather_shards" / "cam" / "maps.tsv", 1.5)
    times = report.run_times(tmp_path, shards=2).set_index("rule")["seconds"]
    assert times.to_dict() == {"gather_shards": 1.5, "make_cam": 22.0, "train_cam": 100.0}
