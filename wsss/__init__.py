"""wsss: weak labels (image tags, scribbles) to pseudo-labels and a trained segmentation network."""
import os

# Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning, which otherwise makes
# torch up to 10x slower whenever jobs share the cores (snakemake --cores N runs several at once).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
