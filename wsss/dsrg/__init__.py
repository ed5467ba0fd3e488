"""DSRG (Huang et al., CVPR 2018): seed cues from CAMs (dsrg_seeds) and training with the balanced seeding
and constrain losses while the seeds grow (train_dsrg, losses; growth in kernels.region_grow)."""
