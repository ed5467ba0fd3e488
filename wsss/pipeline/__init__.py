"""The pipeline's own stages: merging sharded outputs (gather_shards), the metrics table (metrics) and the
report (report)."""
