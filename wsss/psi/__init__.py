"""PSI (Xu et al., ICCV 2021): scribble-supervised segmentation with contextual pattern propagation (net.py,
Sec. 3.2), semantic label diffusion (sld.py, Sec. 3.3), their losses (losses.py, Sec. 4) and the alternating
training (train_psi.py)."""
