"""Checks of the config when the workflow starts, so that a bad setting stops the run at once with the key
named instead of as an error deep inside a stage hours later: `validate` (the schema, each value on its own; a
failure is one line naming the key), then `check` (values that only make sense together, paths Snakemake or
wsss cannot use). What depends on the data set's files (class names vs label values, image and mask sizes) is
checked by the validate_data stage."""
import difflib
from pathlib import Path

import yaml

from wsss import run_config
from wsss.datasets import demo_dataset, photos_dataset, voc
from wsss.errors import DataError


class ConfigError(ValueError):
    """A config value that contradicts another; the message starts with the key."""


def validate(config: dict, schema_file):
    """Snakemake's validation, which fills in the schema's defaults; a failure is a ConfigError of one line
    naming the key (Snakemake's own message dumps the schema: ~180 lines for a typo)."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate as validate_and_fill

    try:
        validate_and_fill(config, str(schema_file))
    except WorkflowError:
        raise ConfigError(schema_problem(config, yaml.safe_load(Path(schema_file).read_text()))) from None


def schema_problem(config: dict, schema: dict) -> str:
    """The most relevant schema violation of `config` as `<key>: <problem>` (an unknown key with the closest
    known one)."""
    import jsonschema

    errors = jsonschema.validators.validator_for(schema)(schema).iter_errors(config)
    error = jsonschema.exceptions.best_match(errors)
    where = ".".join(map(str, error.absolute_path))
    if error.validator == "additionalProperties":
        known = list(error.schema.get("properties", {}))
        name = next(k for k in error.instance if k not in known)
        close = difflib.get_close_matches(name, known, 1)
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
        return f"{where + '.' if where else ''}{name}: unknown key ({hint})"
    message = error.message if len(error.message) < 200 else error.message[:200] + "..."
    return f"{where or 'config'}: {message}"


# Config values that are paths: Snakemake reads `{...}` in a path as a wildcard.
PATHS = ("run_dir", "dataset.root", "dataset.sbd_root", "dataset.context_root", "dataset.voc2010_root",
         "dataset.coco_root", "dsrg.saliency_dir", "model.pretrained", "seg.pretrained")
SPLITS = ("dataset.train_split", "dataset.label_split", "dataset.eval_split")


def check(config: dict, configfiles=()):
    """Raises ConfigError naming the first key whose value contradicts another or cannot be used. `configfiles`:
    the config files the run reads (the run's record of its configuration must not replace one)."""
    for path in configfiles:
        check_unique_keys(path)
    _check_paths(config, configfiles)
    for key in SPLITS:
        name = _get(config, key)
        if "+" in name:
            raise ConfigError(f"{key}: {name!r} holds '+', which wsss reads as the union of two splits; rename the "
                              "split file")
        try:
            voc.check_id(name, key, "split name")
        except DataError as e:
            raise ConfigError(str(e)) from None
    names = config["dataset"]["class_names"]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"dataset.class_names: {twice[0]!r} is listed twice; each class needs its own name (tags "
                          "and scribbles name classes)")
    for key in ("cam.resize_long", "irn.scale", "seg.scale", "dsrg.scale"):
        _check_range(config, key)
    cam = config["cam"]
    if cam["crop"] > cam["resize_long"][1]:
        raise ConfigError(f"cam.crop: {cam['crop']} is larger than every training image (cam.resize_long "
                          f"{cam['resize_long']} scales the long side to at most {cam['resize_long'][1]})")
    if config["dataset"]["demo"]:
        _check_demo(config, {True: "shapes"}.get(config["dataset"]["demo"], config["dataset"]["demo"]))


class _UniqueKeyLoader(yaml.SafeLoader):
    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"{self.name} line {key_node.start_mark.line + 1}: {key!r} is given twice in one "
                                  "block; YAML would keep only the last one's values. Merge the two")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def check_unique_keys(path):
    """PyYAML (and so Snakemake) keeps the last of two equal keys silently: a second `psi:` block would hide the
    first one's values."""
    with open(path) as f:
        yaml.load(f, Loader=_UniqueKeyLoader)


def _check_paths(config: dict, configfiles):
    run_dir = config["run_dir"]
    if not run_dir.strip() or Path(run_dir).resolve() == Path("/"):
        raise ConfigError(f"run_dir: {run_dir!r} would put the run's outputs under the file system root")
    for key in PATHS:
        value = _get(config, key)
        if value is not None and ("{" in value or "}" in value):
            raise ConfigError(f"{key}: {value!r} holds {{ or }}, which Snakemake reads as a wildcard; rename the folder")
    if Path(run_dir).exists() and not Path(run_dir).is_dir():
        raise ConfigError(f"run_dir: {run_dir!r} is a file, not a folder")
    root = config["dataset"]["root"]
    if not root.strip():
        raise ConfigError("dataset.root: empty; set the data set's folder")
    if Path(root).exists() and not Path(root).is_dir():
        raise ConfigError(f"dataset.root: {root!r} is a file, not a folder")
    try:
        run_config.check_record(Path(run_dir) / "config.yaml", configfiles)
    except DataError as e:
        raise ConfigError(str(e)) from None


def _get(config: dict, key: str):
    value = config
    for part in key.split("."):
        value = (value or {}).get(part)
    return value


def _check_range(config: dict, key: str):
    """A [low, high] pair: low must not exceed high."""
    pair = _get(config, key)
    if pair is None:
        return
    if len(pair) != 2:
        raise ConfigError(f"{key}: {pair} must be [low, high]")
    if pair[0] > pair[1]:
        raise ConfigError(f"{key}: the lower end {pair[0]} is above the upper end {pair[1]}")


# A built-in data set (dataset.demo): its generator and config section.
GENERATORS = {"shapes": (demo_dataset, "demo"), "photos": (photos_dataset, "photos")}


def _check_demo(config: dict, kind: str):
    """A built-in data set's images are known before they exist: their class names and size."""
    generator, section = GENERATORS[kind]
    params = {**config.get(section, {}), "class_names": config["dataset"]["class_names"]}
    try:
        generator.check_params(params)
    except (ValueError, DataError) as e:
        raise ConfigError(f"{section} / dataset.class_names: {e}") from e
    size = params.get("size", generator.PARAMS["size"].default)
    largest = {"irn.crop": size * config["irn"]["input_scale"] * config["irn"]["scale"][1],
               "seg.crop": size * config["seg"]["scale"][1]}
    for key, side in largest.items():
        if _get(config, key) > side:
            raise ConfigError(f"{key}: {_get(config, key)} is larger than every training image (demo.size {size}, "
                              f"at most {side:g} px after rescaling)")
