"""`wsss predict`: a trained segmentation network's labels for your own images (any JPEG or PNG).

    wsss predict --model results/demo/seg_irnet/model.pt --images photos/ --out predictions/
    wsss predict --model results/demo/dsrg/model.pt --images a.jpg b.png --out predictions/ --crf

For each image <name>.<ext>: <out>/<name>.png, the class indices in the VOC palette (0 background, the
network's classes in its training order), and <out>/<name>.overlay.jpg, the labels over the image. Inference
as the workflow's infer_seg (multi-scale and mirrored logits summed, optional dense CRF)."""
import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from wsss.crf import dense_crf
from wsss.datasets import voc
from wsss.errors import DataError
from wsss.io import atomic_path, save_png
from wsss.models import deeplab, read_checkpoint
from wsss.runtime import device
from wsss.seg.infer_seg import predict as network_probs
from wsss.visual import labels_over

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def image_files(paths: list[str]) -> list[Path]:
    """The JPEG/PNG files named, or found (sorted) in a named folder; DataError for a missing path, a folder
    without images, or two images that would write the same output name."""
    files = []
    for name in map(Path, paths):
        if name.is_dir():
            found = sorted(f for f in name.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
            if not found:
                raise DataError(f"{name}: no .jpg/.jpeg/.png images in this folder")
            files += found
        elif name.is_file():
            files.append(name)
        else:
            raise DataError(f"{name}: no such image or folder")
    stems = {}
    for f in files:
        if f.stem in stems:
            raise DataError(f"{f} and {stems[f.stem]} would both write {f.stem}.png; rename one")
        stems[f.stem] = f
    return files


def predict_images(model, images: list[str], out, scales=(1.0,), flip=True, crf=False, device_name="auto"):
    dev = device(device_name)
    net = deeplab.load(model, dev)
    palette = voc.voc_palette()
    out = Path(out)
    for file in tqdm(image_files(images), desc="predict", unit="image"):
        image = voc.load_image(file)
        probs = network_probs(net, image, scales, flip, dev)
        if crf:
            probs = dense_crf(image, probs)
        labels = probs.argmax(0).astype(np.uint8)
        save_png(out / f"{file.stem}.png", labels, palette)
        with atomic_path(out / f"{file.stem}.overlay.jpg") as tmp:
            Image.fromarray(labels_over(image, labels, palette.astype(np.uint8))).save(tmp, format="JPEG", quality=90)


def main(argv: list[str]):
    ap = argparse.ArgumentParser(prog="wsss predict", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a segmentation network's model.pt (train_seg, train_dsrg)")
    ap.add_argument("--images", required=True, nargs="+", help="image files and/or folders of them")
    ap.add_argument("--out", required=True, help="folder for <name>.png and <name>.overlay.jpg")
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0], help="inference scales (default 1.0)")
    ap.add_argument("--no-flip", dest="flip", action="store_false", help="skip the mirrored image")
    ap.add_argument("--crf", action="store_true", help="dense-CRF post-processing")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = ap.parse_args(argv)
    try:
        names = read_checkpoint(args.model)["params"].get("class_names")
        if names:
            print(f"classes: {', '.join(f'{i} {n}' for i, n in enumerate(names))}", file=sys.stderr)
        predict_images(args.model, args.images, args.out, args.scales, args.flip, args.crf, args.device)
    except DataError as e:
        sys.exit(f"wsss predict: error: {e}")
