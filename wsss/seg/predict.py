"""`wsss predict`: a trained segmentation network's labels for your own images (any JPEG or PNG).

    wsss predict --model results/demo/seg_irnet/model.pt --images photos/ --out predictions/
    wsss predict --model results/demo/psi/model.pt --images a.jpg b.png --out predictions/ --crf

Every segmentation network the pipeline trains can predict: seg_irnet, seg_rpnet, dsrg, dsrg_nogrowth,
dsrg_retrain, psi, cdsp (and the ablations' networks). For each image <name>.<ext>: <out>/<name>.png, the
class indices in the VOC palette (0 background, the network's classes in its training order), and
<out>/<name>.overlay.jpg, the labels over the image. Inference as the workflow's infer_seg (multi-scale and
mirrored logits summed, optional dense CRF).

Nothing of yours is replaced: predict refuses (before it reads the network) an output that is one of its
input images, a folder, or a file it did not write itself (its files carry a "wsss predict" tag)."""
import argparse
import math
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from wsss.crf import dense_crf
from wsss.datasets import voc
from wsss.errors import DataError
from wsss.io import atomic_path, save_png
from wsss.models import load_segmenter, read_checkpoint
from wsss.runtime import device
from wsss.seg.infer_seg import predict as network_probs
from wsss.visual import labels_over

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
TAG = "wsss predict"  # PNG text chunk "Software" and JPEG comment of every file predict writes


def image_files(paths: list[str]) -> list[Path]:
    """The JPEG/PNG files named, or found (sorted, hidden ones skipped) in a named folder; DataError for a
    missing path, a folder without images, a name starting with `.` or `-`, or two
    images that would write the same output name."""
    files = []
    for name in map(Path, paths):
        if name.is_dir():
            found = sorted(f for f in name.iterdir()
                           if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file() and not f.name.startswith("."))
            if not found:
                raise DataError(f"{name}: no .jpg/.jpeg/.png images in this folder")
            files += found
        elif name.is_file():
            files.append(name)
        else:
            raise DataError(f"{name}: no such image or folder")
    stems = {}
    for f in files:
        # any name a folder can hold (spaces, brackets: your own photos), but no hidden or option-like output
        if f.name.startswith((".", "-")):
            raise DataError(f"{f}: image name {f.name!r} starts with '.' or '-' (its outputs would be hidden or read "
                            "as an option); rename it")
        if f.stem in stems:
            raise DataError(f"{f} and {stems[f.stem]} would both write {f.stem}.png; rename one")
        stems[f.stem] = f
    return files


def outputs(files: list[Path], out: Path) -> list[tuple[Path, Path]]:
    """(labels PNG, overlay JPEG) of each image under `out`, checked before anything is read or written:
    `out` must be a folder one can write to, and no output may be an input image, a folder or a file that
    predict did not write."""
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: is a file, not a folder")
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise DataError(f"{out}: cannot write there ({existing} is not a folder you can write to)")
    inputs = {f.resolve() for f in files}
    pairs = [(out / f"{f.stem}.png", out / f"{f.stem}.overlay.jpg") for f in files]
    for target in (t for pair in pairs for t in pair):
        if target.resolve() in inputs:
            raise DataError(f"{target}: is one of the input images; predict never writes over its inputs: choose "
                            "another --out")
        if target.is_dir() and not target.is_symlink():
            raise DataError(f"{target}: is a folder; predict never replaces a folder with a file")
        if (target.exists() or target.is_symlink()) and not written_by_predict(target):
            raise DataError(f"{target}: exists and was not written by wsss predict, which replaces only its own "
                            "outputs: move it, or choose another --out")
    return pairs


def written_by_predict(file: Path) -> bool:
    if file.is_symlink():
        return False
    try:
        with Image.open(file) as img:
            return img.info.get("Software") == TAG or img.info.get("comment") == TAG.encode()
    except Exception:  # not an image: not ours
        return False


def check_scales(scales):
    if not scales or not all(math.isfinite(s) and s > 0 for s in scales):
        raise DataError(f"--scales: each scale must be a positive number, got {scales}")


def predict_images(model, images: list[str], out, scales=(1.0,), flip=True, crf=False, device_name="auto"):
    """Writes the labels and overlay of every image (image_files) to `out`; every check comes before the
    network is read."""
    check_scales(scales)
    dev = device(device_name)
    files = image_files(images)
    pairs = outputs(files, Path(out))
    names = read_checkpoint(model)["params"].get("class_names")
    net = load_segmenter(model, dev)
    if names:
        print(f"classes: {', '.join(f'{i} {n}' for i, n in enumerate(names))}", file=sys.stderr)
    palette = voc.voc_palette()
    for file, (png, overlay) in zip(tqdm(files, desc="predict", unit="image"), pairs):
        image = voc.load_image(file)
        probs = network_probs(net, image, scales, flip, dev)
        if crf:
            probs = dense_crf(image, probs)
        labels = probs.argmax(0).astype(np.uint8)
        save_png(png, labels, palette, text={"Software": TAG})
        with atomic_path(overlay) as tmp:
            Image.fromarray(labels_over(image, labels, palette.astype(np.uint8))).save(
                tmp, format="JPEG", quality=90, comment=TAG.encode())


def main(argv: list[str]):
    ap = argparse.ArgumentParser(prog="wsss predict", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a segmentation network's model.pt (seg_irnet, dsrg, psi, cdsp, ...)")
    ap.add_argument("--images", required=True, nargs="+", help="image files and/or folders of them")
    ap.add_argument("--out", required=True, help="folder for <name>.png and <name>.overlay.jpg")
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0], help="inference scales (default 1.0)")
    ap.add_argument("--no-flip", dest="flip", action="store_false", help="skip the mirrored image")
    ap.add_argument("--crf", action="store_true", help="dense-CRF post-processing")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = ap.parse_args(argv)
    try:
        predict_images(args.model, args.images, args.out, args.scales, args.flip, args.crf, args.device)
    except DataError as e:
        sys.exit(f"wsss predict: error: {e}")
