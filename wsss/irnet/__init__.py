"""IRNet (Ahn et al., CVPR 2019): inter-pixel relation labels from CAMs (cam_to_ir_label, relations), the
boundary and displacement network (net, losses, train_irn), random-walk semantic labels
(make_sem_seg_labels), instance labels (make_ins_seg_labels) and their evaluation (eval_sem_seg, eval_ins_seg)."""
