"""Segmentation networks trained on pseudo-labels (train_seg), their inference (infer_seg) and evaluation
(eval_seg); DeepLab itself is in wsss.models.deeplab."""
