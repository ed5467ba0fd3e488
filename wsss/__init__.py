"""wsss: weak labels (image tags, scribbles) to pseudo-labels and a trained segmentation network."""
import os
import sys

# Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning, which otherwise makes
# torch up to 10x slower whenever jobs share the cores (snakemake --cores N runs several at once).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# In a log (stderr not a terminal) progress bars write a line at most every 10 s (wsss/joblog.py); tqdm
# reads this when it is imported.
if not sys.stderr.isatty():
    os.environ.setdefault("TQDM_MININTERVAL", "10")

__version__ = "0.1.0"
IGNORE = 255  # the void label of VOC's masks: pixels that no loss and no score counts
