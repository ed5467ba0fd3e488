"""RPNet (Liu et al.): the pipeline's RPNet-only stages. The network itself is a CAM network, in
wsss/cam/rpnet.py (trained by train_cam with method rpnet); its chain is workflow/rules/rpnet.smk."""
