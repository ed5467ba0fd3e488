"""Stage folder_dataset: your own images (a folder) and a tags file -> a PASCAL VOC 2012 layout root wsss owns.

Input (config `dataset`): `images`, a folder of JPEG / PNG files (nested folders, any file names); `tags`, a CSV
file with a row per image: its path relative to `images`, its classes separated by `;` (`photos/a.jpg,cat;dog`)
and optionally `train` or `val` (of the rows without one, `val_fraction` go to val, drawn with the run's seed);
a first row `path,classes[,split]` is a header. Optional: `masks` and `scribbles_dir`, folders holding
`<path without its extension>.png` (masks: VOC palette or class indices, 255 void; scribbles: the same, 255
unlabelled) or, for scribbles, `.xml` (ScribbleSup). The class names are `dataset.class_names`, else the tags
file's classes sorted, background first.

Output, at dataset.root (default {run_dir}/dataset; refused unless missing, empty or marked MARKER):
JPEGImages/<id>.jpg, symbolic links to the user's images (a PNG too: the loaders read by content);
SegmentationClass/<id>.png, links to the masks; Annotations/<id>.xml, each image's tags as VOC objects (the
loaders' tags_from: xml); pascal_2012_scribble/<id>.png, links to PNG scribbles or drawn from the XML;
`ids.csv` (id, path, split: the map both ways) and, written last, ImageSets/Segmentation/<list>.txt (LISTS).
Nothing is written into, renamed or copied from the user's folders.

An image id (voc.IMAGE_ID) is the path without its extension, each `/` as `__` and every other character
outside [A-Za-z0-9_.+-] as `_`; where two paths give one id, the later (in path order) gets `-2`, `-3` ...

The workflow reads the tags file when it starts (`configure`): the class names, the lists and the splits are
known before any job, and a bad row stops the run at once with the file and the row named."""
import csv
import hashlib
import io as _io
import json
import os
import re
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from tqdm import tqdm

from wsss import io
from wsss.datasets import voc
from wsss.errors import DataError
from wsss.params import Param, resolve
from wsss.runtime import threads

PARAMS = {
    "class_names": voc.CLASS_NAMES,
    "seed": Param(int, 0, "draws the val images of the rows without a split"),
    "val_fraction": Param(float, 0.1, "share of the rows without a split that go to val"),
}
MARKER = ".wsss-folder-dataset"  # a root this stage owns: it replaces its folders there
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
HEADER = ("path", "classes")
IDS = "ids.csv"  # id, path (relative to dataset.images), split
# The lists, each written when it has an image: the networks train on `train`, are scored on `val_masked` (else
# only predicted on `val`, else on `train`); every label stage covers `all`; pseudo-labels are scored on `masked`.
LISTS = ("train", "val", "all", "masked", "val_masked")
SCORED_LISTS = ("masked", "val_masked")
FOLDERS = ("JPEGImages", "SegmentationClass", "Annotations", "pascal_2012_scribble")
MAX_ID = 180  # characters; longer ids (deep paths) end in a hash, so `<id>.png` stays a valid file name


@dataclass(frozen=True)
class Row:
    """One image of the tags file."""
    number: int  # the row in the file (1 is the first line)
    path: str  # relative to the images folder, '/'-separated, normalised
    classes: tuple  # object class names, in the file's order
    split: str  # train | val (drawn when the file leaves it empty)
    image_id: str = ""
    mask: Path | None = None
    scribble: Path | None = None


@dataclass
class Table:
    """What the tags file says, checked against the folders: the class names and every image's row."""
    images: Path
    tags: Path
    class_names: list
    rows: list = field(default_factory=list)

    def lists(self) -> dict[str, list[str]]:
        """list name -> ids, for every list of LISTS that has an image."""
        train = [r.image_id for r in self.rows if r.split == "train"]
        val = [r.image_id for r in self.rows if r.split == "val"]
        masked = {r.image_id for r in self.rows if r.mask}
        found = {"train": train, "val": val, "all": train + val, "masked": [i for i in train + val if i in masked],
                 "val_masked": [i for i in val if i in masked]}
        return {name: ids for name, ids in found.items() if ids}

    def splits(self) -> dict[str, str]:
        """The config's dataset splits: the networks train on train; pseudo-labels are scored on the images with
        masks, else (not scored) shown for all; networks are scored on the val images with masks, else shown on
        val, else on train."""
        lists = self.lists()
        evaluation = next(name for name in ("val_masked", "val", "train") if name in lists)
        return dict(train_split="train", label_split="masked" if "masked" in lists else "all", eval_split=evaluation)

    def digest(self) -> str:
        """A hash of the size and time of every file the conversion reads: a changed file reruns it."""
        h = hashlib.sha256()
        for r in self.rows:
            for file in (self.images / r.path, r.mask, r.scribble):
                if file is not None:
                    stat = file.stat()
                    h.update(f"{file}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return h.hexdigest()[:16]


class Problems:
    """Bad rows, collected so that the first is raised with a count of the others (each one a line)."""

    def __init__(self):
        self.lines = []

    def add(self, line: str):
        self.lines.append(line)

    def raise_any(self, log=None):
        if not self.lines:
            return
        if log is not None:
            for line in self.lines:
                log(line)
        more = f" (and {len(self.lines) - 1} more problems{', listed above' if log else ''})" if len(
            self.lines) > 1 else ""
        raise DataError(self.lines[0] + more)


# ---- the tags file ---------------------------------------------------------------------------------------------

def read_rows(tags: Path, problems: Problems) -> list[tuple[int, str, list[str], str]]:
    """(row number, path as written, class names, split) of every non-blank row; a header row is skipped."""
    if not tags.is_file():
        raise DataError(f"{tags}: tags file not found (dataset.tags)")
    try:
        text = tags.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark is not part of the path
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{tags}: unreadable tags file ({e})") from e
    reader = csv.reader(_io.StringIO(text))
    rows, first = [], True
    try:
        for cells in reader:
            cells = [c.strip() for c in cells]
            if not any(cells):
                continue
            if first and tuple(c.lower() for c in cells[:2]) == HEADER:
                first = False
                continue
            first = False
            if len(cells) > 3:
                problems.add(f"{tags}: row {reader.line_num}: {len(cells)} columns; expected path, classes and "
                             "optionally split (quote a path that holds a comma)")
                continue
            path, classes, split = (cells + ["", ""])[:3]
            rows.append((reader.line_num, path, [c.strip() for c in classes.split(";") if c.strip()], split))
    except csv.Error as e:
        raise DataError(f"{tags}: row {reader.line_num}: not CSV ({e})") from e
    if not rows:
        raise DataError(f"{tags}: the tags file lists no image (rows: path,class;class[,train|val])")
    return rows


def normalised(path: str) -> str | None:
    """The relative path without `.` parts, '/'-separated; None if it leaves the folder (absolute, `..`)."""
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or path.startswith("~"):
        return None
    parts = [p for p in pure.parts if p not in ("", ".")]
    return "/".join(parts) or None


def image_id(path: str) -> str:
    """The id of a relative image path (module docstring); it matches voc.IMAGE_ID."""
    stem = PurePosixPath(path).with_suffix("")
    name = "__".join(re.sub(r"[^A-Za-z0-9_.+-]", "_", part) for part in stem.parts)
    if not re.match(r"[A-Za-z0-9_+]", name):
        name = "_" + name
    if len(name) > MAX_ID:
        name = f"{name[:MAX_ID - 9]}-{hashlib.sha1(path.encode()).hexdigest()[:8]}"
    return name


def stem_file(folder, path: str, suffix: str) -> Path:
    """`folder`/<path without its extension><suffix>: where a mask or scribble of the image is."""
    return Path(folder) / PurePosixPath(path).with_suffix(suffix)


def read_table(images, tags, class_names=None, masks=None, scribbles=None, seed: int = 0,
               val_fraction: float = 0.1) -> Table:
    """The checked table of the tags file; DataError naming the file and the row of the first problem."""
    images, tags = Path(images), Path(tags)
    if not images.is_dir():
        raise DataError(f"{images}: images folder not found (dataset.images)")
    for folder, key in ((masks, "masks"), (scribbles, "scribbles_dir")):
        if folder is not None and not Path(folder).is_dir():
            raise DataError(f"{folder}: folder not found (dataset.{key})")
    problems = Problems()
    raw = read_rows(tags, problems)
    named = sorted({c for _, _, classes, _ in raw for c in classes if c != "background"})
    names = list(class_names) if class_names else ["background", *named]
    rows, seen, stems = [], {}, {}
    for number, written, classes, split in raw:
        where = f"{tags}: row {number}"
        path = normalised(written)
        if path is None:
            problems.add(f"{where}: path {written!r} is not inside the images folder {images} (a relative path "
                         "without '..')" if written else f"{where}: no image path")
            continue
        if path in seen:
            problems.add(f"{where}: {path} is listed twice (first on row {seen[path]})")
            continue
        seen[path] = number
        stem = str(PurePosixPath(path).with_suffix(""))
        if stem in stems:
            problems.add(f"{where}: {path} and {stems[stem][1]} (row {stems[stem][0]}) differ only in their "
                         "extension: their masks, scribbles and labels would be one file; rename one")
            continue
        stems[stem] = (number, path)
        if PurePosixPath(path).suffix.lower() not in IMAGE_SUFFIXES:
            problems.add(f"{where}: {path} is not a JPEG or PNG ({', '.join(IMAGE_SUFFIXES)})")
            continue
        unknown = [c for c in classes if c not in names]
        objects = [c for c in dict.fromkeys(classes) if c in names[1:]]
        if unknown:
            problems.add(f"{where}: class {unknown[0]!r} is not in dataset.class_names {names}")
        elif not objects:
            problems.add(f"{where}: {path} has no object class (write its classes as cat;dog)")
        elif split.lower() not in ("", "train", "val"):
            problems.add(f"{where}: split {split!r} must be train, val or empty")
        else:
            rows.append(Row(number, path, tuple(objects), split.lower()))
    present = [r for r in rows if (images / r.path).is_file()]
    if rows and not present:
        raise DataError(f"{tags}: none of its {len(rows)} images is in {images} (row {rows[0].number}: "
                        f"{rows[0].path}); dataset.images must be the folder the paths are relative to")
    for r in rows:
        if not (images / r.path).is_file():
            problems.add(f"{tags}: row {r.number}: image {images / r.path} not found")
    problems.raise_any()
    rows = _with_ids(sorted(rows, key=lambda r: r.path))
    rows = _with_files(rows, masks, scribbles, tags, problems)
    indexed = [r for r in rows if r.mask or (r.scribble and r.scribble.suffix == ".png")]
    if indexed and not class_names:
        what = "mask" if indexed[0].mask else "scribble PNG"
        raise DataError(f"{indexed[0].mask or indexed[0].scribble}: a {what} holds class indices, which mean something "
                        "only against a list of classes: set dataset.class_names (background first)")
    rows = _drawn(rows, seed, val_fraction)
    if not any(r.split == "train" for r in rows):
        problems.add(f"{tags}: no image is in train (every row says val); the networks need training images")
    for r in rows:
        if scribbles is not None and r.split == "train" and r.scribble is None:
            problems.add(f"{tags}: row {r.number}: no scribbles for {r.path} ({stem_file(scribbles, r.path, '.png')}"
                         " or .xml): PSI and CDSP train on the scribbles of every training image")
    problems.raise_any()
    return Table(images, tags, names, rows)


def _with_ids(rows: list[Row]) -> list[Row]:
    taken, out = set(), []
    for r in rows:
        base = candidate = image_id(r.path)
        k = 1
        while candidate in taken:
            k += 1
            candidate = f"{base}-{k}"
        taken.add(candidate)
        out.append(Row(r.number, r.path, r.classes, r.split, candidate))
    return out


def _with_files(rows: list[Row], masks, scribbles, tags, problems: Problems) -> list[Row]:
    """Each row with its mask and scribble files, where the folders hold them."""
    out = []
    for r in rows:
        mask = stem_file(masks, r.path, ".png") if masks is not None else None
        scribble = None
        if scribbles is not None:
            found = [f for f in (stem_file(scribbles, r.path, s) for s in (".png", ".xml")) if f.is_file()]
            if len(found) > 1:
                problems.add(f"{tags}: row {r.number}: two scribble files for {r.path}: {found[0]} and {found[1]}")
            scribble = found[0] if found else None
        out.append(Row(r.number, r.path, r.classes, r.split, r.image_id,
                       mask if mask is not None and mask.is_file() else None, scribble))
    return out


def _drawn(rows: list[Row], seed: int, val_fraction: float) -> list[Row]:
    """Rows without a split: val_fraction of them (at least one, at most all but one, when there are two or more
    and the fraction is positive) to val, drawn with `seed` from the rows in path order; the rest to train."""
    undecided = [i for i, r in enumerate(rows) if not r.split]
    n_val = round(val_fraction * len(undecided))
    if val_fraction > 0 and len(undecided) >= 2:
        n_val = min(max(n_val, 1), len(undecided) - 1)
    val = {undecided[k] for k in np.random.default_rng(seed).permutation(len(undecided))[:n_val]}
    return [r if r.split else Row(r.number, r.path, r.classes, "val" if i in val else "train", r.image_id, r.mask,
                                  r.scribble) for i, r in enumerate(rows)]


# ---- the workflow's view: the config filled in when it starts --------------------------------------------------

def configure(config: dict) -> Table | None:
    """For `dataset.images`: reads the tags file and fills the config's dataset section (root, class names,
    splits, tags_from: xml, instances: false); None for any other data set. DataError for a bad row or folder."""
    d = config["dataset"]
    if "images" in d and not d["images"] and not d.get("root"):
        raise DataError("dataset.images: not set; give your folder of images (and dataset.tags) in a second config "
                        "file, or dataset.root for a VOC-layout data set")
    if not d.get("images"):
        given = [k for k in ("tags", "masks", "scribbles_dir") if d.get(k)]
        if given:
            raise DataError(f"dataset.{given[0]}: only read with dataset.images (a folder of your own images)")
        return None
    others = [k for k in ("demo", "sbd_root", "scribbles", "context_root", "coco_root") if d.get(k)]
    if others:
        raise DataError(f"dataset.images: a folder of your own images is its own data set; unset dataset.{others[0]}")
    if not d.get("tags"):
        raise DataError("dataset.images: needs dataset.tags (a CSV file: path,class;class per image)")
    table = read_table(d["images"], d["tags"], d.get("class_names"), d.get("masks"), d.get("scribbles_dir"),
                       config["seed"], d["val_fraction"])
    root = d.get("root") or f"{config['run_dir'].rstrip('/')}/dataset"
    check_outside(d, {"run_dir": config["run_dir"], "dataset.root": root})
    d.update(root=root, class_names=table.class_names, tags_from="xml", instances=False, **table.splits())
    return table


def check_outside(dataset: dict, written: dict):
    """DataError when a folder wsss writes (`written`: what -> path) is inside one of the user's folders."""
    for key in ("images", "masks", "scribbles_dir"):
        if not dataset.get(key):
            continue
        theirs = Path(dataset[key]).resolve()
        for what, path in written.items():
            ours = Path(path).resolve()
            if ours == theirs or theirs in ours.parents:
                raise DataError(f"{what}: {path} is inside dataset.{key} {dataset[key]}; wsss writes nothing into "
                                "your folders: choose a folder outside it")


# ---- the stage ------------------------------------------------------------------------------------------------

def run(params: dict, *, images, tags, root, masks=None, scribbles=None):
    """Writes the VOC-layout root `root` for the images of folder `images` listed in the CSV `tags`."""
    params = resolve(params, PARAMS, "folder_dataset")
    table = read_table(images, tags, params["class_names"], masks, scribbles, params["seed"], params["val_fraction"])
    root = Path(root)
    check_outside(dict(images=images, masks=masks, scribbles_dir=scribbles), {"dataset.root": root})
    _check_owned(root)
    names = table.class_names
    with io.scratch(root) as tmp:
        with ThreadPoolExecutor(threads()) as pool:  # decoding releases the GIL
            found = list(tqdm(pool.map(lambda r: _write_row(tmp, table, r), table.rows), total=len(table.rows),
                              desc="folder_dataset"))
        problems = Problems()
        for line in found:
            if line:
                problems.add(line)
        problems.raise_any(tqdm.write)
        with open(tmp / IDS, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "path", "split"])
            writer.writerows([r.image_id, r.path, r.split] for r in table.rows)
        for name, ids in table.lists().items():
            voc.path(tmp, "split", name).parent.mkdir(parents=True, exist_ok=True)
            voc.path(tmp, "split", name).write_text("".join(f"{i}\n" for i in ids))
        root.mkdir(parents=True, exist_ok=True)
        (root / MARKER).write_text(json.dumps(dict(params, images=str(images), tags=str(tags)), sort_keys=True) + "\n")
        for top in (*FOLDERS, IDS, "ImageSets"):  # the lists last: their presence means done
            io.remove(root / top)
            if (tmp / top).exists():
                os.replace(tmp / top, root / top)
    print(f"{len(table.rows)} images, {len(names) - 1} classes {names[1:]}: "
          + ", ".join(f"{name} {len(ids)}" for name, ids in table.lists().items()))


def _write_row(root: Path, table: Table, r: Row) -> str | None:
    """Links, annotation and scribbles of one image under `root`; the problem as a line, or None."""
    try:
        image = voc.load_image(table.images / r.path)
        _link(table.images / r.path, voc.path(root, "image", r.image_id))
        if r.mask is not None:
            voc.load_mask(r.mask, len(table.class_names), image.shape[:2])
            _link(r.mask, voc.path(root, "mask", r.image_id))
        if r.scribble is not None and r.scribble.suffix == ".png":
            voc.load_scribble(r.scribble, len(table.class_names), image.shape[:2])
            _link(r.scribble, voc.path(root, "scribble", r.image_id))
        elif r.scribble is not None:
            strokes = voc.load_scribble_xml(r.scribble, table.class_names, image.shape[:2])
            io.save_png(voc.path(root, "scribble", r.image_id), strokes)
        _write_annotation(voc.path(root, "annotation", r.image_id), r, image.shape)
    except DataError as e:
        return f"{table.tags}: row {r.number}: {e}"
    return None


def _link(source: Path, target: Path):
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(Path(os.path.abspath(source)))


def _write_annotation(file: Path, r: Row, shape):
    """The image's tags as a VOC Annotations XML (object names only: the loaders' tags_from: xml)."""
    node = ET.Element("annotation")
    ET.SubElement(node, "filename").text = r.path
    size = ET.SubElement(node, "size")
    for key, value in (("width", shape[1]), ("height", shape[0]), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    for name in r.classes:
        ET.SubElement(ET.SubElement(node, "object"), "name").text = name
    ET.indent(node)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(ET.tostring(node, encoding="unicode") + "\n")


def _check_owned(root: Path):
    """DataError unless `root` is missing, holds no file (Snakemake makes the lists' folders before the job) or is
    this stage's (MARKER): it replaces folders there."""
    if not root.exists() or (root / MARKER).is_file():
        return
    if not root.is_dir() or any(not p.is_dir() or p.is_symlink() for p in root.rglob("*")):
        raise DataError(f"{root}: dataset.root holds files wsss did not write (no {MARKER}); the folder data set "
                        "is written only into a new or empty folder: set dataset.root to one, or leave it unset "
                        "({run_dir}/dataset)")


def id_map(root) -> dict[str, str]:
    """id -> the image's path relative to dataset.images, from the root's ids.csv."""
    file = Path(root) / IDS
    if not file.is_file():
        raise DataError(f"{file}: id map not found (rule folder_dataset writes it)")
    with open(file, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        if normalised(row["path"]) != row["path"] or not voc.IMAGE_ID.fullmatch(row["id"]):
            raise DataError(f"{file}: row {row} is not an id and a relative path inside the images folder")
    return {row["id"]: row["path"] for row in rows}
