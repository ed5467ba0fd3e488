"""wsss: weak labels (image tags, scribbles) to pseudo-labels and a trained segmentation network."""
__version__ = "0.1.0"
