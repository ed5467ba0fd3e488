"""CDSP (Zhang et al., AAAI 2024, "Scribble Hides Class"): pseudo-labels from scribble classes, LoRM, distance
entropy, and the scribble shrink / drop robustness protocol."""
