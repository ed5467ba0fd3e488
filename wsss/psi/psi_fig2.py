"""The psi_fig2 stage: PSI's Fig. 2, the supervision evolved by label diffusion, drawn for a few training
images: a row per image, the columns the image, its ground truth (where the images have masks; white where one
lacks it) and the supervision at t = 0 .. steps (train_psi's `supervision`/t<k>/<id>.png; t0 = the scribbles)
over the image in the VOC palette, unlabelled pixels grey (wsss.visual.labels_over, as the report's galleries).

Output: one PNG, a header row naming the columns, then panels of `panel` px square (each picture's long
side fills it; nearest-neighbour resizing keeps the labels sharp)."""
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from wsss.datasets import voc
from wsss.errors import DataError
from wsss.io import atomic_path
from wsss.params import Param, resolve
from wsss.visual import labels_over

PARAMS = {
    "class_names": Param(list, help="class names, background first"),
    "split": voc.SPLIT,
    "steps": Param(int, 3, "the last diffusion step drawn (columns t0 .. t<steps>)"),
    "n_images": Param(int, 4, "rows: the split's first n images"),
    "panel": Param(int, 128, "panel side, px"),
}
HEADER, GAP = 16, 2  # px: the column-name row, the white space between panels


def run(params: dict, *, root, supervision, out):
    params = resolve(params, PARAMS, "psi_fig2")
    folders = [Path(supervision) / f"t{k}" for k in range(params["steps"] + 1)]
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        raise DataError(f"psi_fig2: no supervision folder {missing[0]} (train_psi writes t0 .. t<steps>; "
                        f"was it trained with SLD and at least {params['steps']} steps?)")
    ids = voc.read_ids(root, params["split"])[: params["n_images"]]
    rows = [panels(root, image_id, folders, len(params["class_names"])) for image_id in ids]
    names = ["image", "ground truth", *(f"t{k}" for k in range(len(folders)))]
    if all(row[1] is None for row in rows):  # images without masks (your own): no ground-truth column
        names.pop(1)
        rows = [row[:1] + row[2:] for row in rows]
    rows = [[panel if panel is not None else np.full_like(row[0], 255) for panel in row] for row in rows]
    with atomic_path(out) as tmp:
        grid(rows, names, params["panel"]).save(tmp, format="png")


def panels(root, image_id: str, folders: list, n_classes: int) -> list[np.ndarray]:
    """RGB panels of one image: the image, its ground truth (None without a mask), then the supervision of each
    step over it."""
    image = voc.load_image(voc.path(root, "image", image_id))
    palette = voc.voc_palette().astype(np.uint8)
    mask = voc.path(root, "mask", image_id)
    truth = palette[voc.load_mask(mask, n_classes, image.shape[:2])] if mask.is_file() else None
    steps = []
    for folder in folders:
        png = folder / f"{image_id}.png"
        if not png.is_file():
            raise DataError(f"psi_fig2: {png} is missing (the supervision of a {len(folders) - 1}-step run?)")
        steps.append(labels_over(image, np.asarray(Image.open(png)), palette))
    return [image, truth, *steps]


def grid(rows: list, names: list, side: int) -> Image.Image:
    """The panels on a white canvas, a header of column names above them."""
    width = len(names) * (side + GAP) - GAP
    canvas = Image.new("RGB", (width, HEADER + len(rows) * (side + GAP)), "white")
    draw = ImageDraw.Draw(canvas)
    for j, name in enumerate(names):
        draw.text((j * (side + GAP) + 2, 2), name, fill="black")
    for i, row in enumerate(rows):
        for j, panel in enumerate(row):
            h, w = panel.shape[:2]
            scale = side / max(h, w)  # the long side fills the panel; labels stay sharp
            picture = Image.fromarray(panel).resize((round(w * scale), round(h * scale)), Image.NEAREST)
            canvas.paste(picture, (j * (side + GAP) + (side - picture.width) // 2,
                                   HEADER + GAP + i * (side + GAP) + (side - picture.height) // 2))
    return canvas
