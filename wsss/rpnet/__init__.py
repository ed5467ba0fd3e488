"""RPNet (Liu et al.): the network (net.py: region prototypes around the CAM network's main branch), its loss
(losses.py), its training groups (pairs.py), Table II (stage cam_vs_fraction) and its cost bench (bench.py).
Trained by wsss.cam.train_cam with method rpnet, which saves the main branch: make_cam and everything after it
read it as any CAM network; its chain is workflow/rules/rpnet.smk."""
