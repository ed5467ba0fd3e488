"""Class activation maps (IRNet Sec. 3, Eq. 1): the CAM network (net), its training (train_cam),
multi-scale inference (make_cam) and the threshold sweep against the masks (eval_cam)."""
