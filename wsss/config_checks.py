"""Checks of config values that only make sense together, run when the workflow starts (after the schema
has checked each value on its own), so that a bad combination stops the run at once with the key named
instead of as an error deep inside a stage hours later. What depends on the data set's files (class names
vs label values, image and mask sizes) is checked by the validate_data stage."""
from wsss.datasets import demo_dataset, photos_dataset
from wsss.errors import DataError


class ConfigError(ValueError):
    """A config value that contradicts another; the message starts with the key."""


def check(config: dict):
    """Raises ConfigError naming the first key whose value contradicts another."""
    if config["run_dir"].strip().rstrip("/") == "":
        raise ConfigError(f"run_dir: {config['run_dir']!r} would put the run's outputs under the file system root")
    for key in ("cam.resize_long", "irn.scale", "seg.scale", "dsrg.scale"):
        _check_range(config, key)
    cam = config["cam"]
    if cam["crop"] > cam["resize_long"][1]:
        raise ConfigError(f"cam.crop: {cam['crop']} is larger than every training image (cam.resize_long "
                          f"{cam['resize_long']} scales the long side to at most {cam['resize_long'][1]})")
    if config["dataset"]["demo"]:
        _check_demo(config, {True: "shapes"}.get(config["dataset"]["demo"], config["dataset"]["demo"]))


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
