"""ImageNet weights of the ResNet backbones: which torchvision file, where it is published, its sha256.

The workflow checks `model.pretrained` / `seg.pretrained` before any job (workflow/Snakefile): a ResNet
without a weights file would silently train from scratch, far below the papers. `download` (opt-in)
fetches the file into torch.hub's cache (`$TORCH_HOME/hub/checkpoints`); every file is checked against
the published sha256 before the run starts."""
import hashlib
from pathlib import Path
from typing import NamedTuple

DOWNLOAD = "download"


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


def describe(backbone: str) -> str:
    w = TORCHVISION[backbone]
    return f"torchvision's {w.file} (published at {w.url}, sha256 {w.sha256})"


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
    if backbone not in TORCHVISION:
        return None if pretrained is None else (f"{key}: the {backbone!r} backbone trains from scratch; "
                                                f"set {key}: null")
    if pretrained is None:
        return (f"{key} is required for {backbone}: download {describe(backbone)} and set {key} to its path, "
                f"or set {key}: {DOWNLOAD} to fetch it into torch.hub's cache")
    if pretrained != DOWNLOAD and not Path(pretrained).is_file():
        return f"{key}: {pretrained} not found; it should be {describe(backbone)}"
    return None


def prepare(backbone: str, pretrained, key: str):
    """Before any job: fetches a `download` file and checks the file's sha256; raises ValueError."""
    message = problem(backbone, pretrained, key)
    if message:
        raise ValueError(message)
    if backbone not in TORCHVISION:
        return
    file = Path(resolve(backbone, pretrained))
    if pretrained == DOWNLOAD and not file.is_file():
        import torch.hub

        file.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(TORCHVISION[backbone].url, str(file), hash_prefix=TORCHVISION[backbone].sha256)
    digest = sha256(file)
    if digest != TORCHVISION[backbone].sha256:
        raise ValueError(f"{key}: {file} has sha256 {digest}; expected {describe(backbone)}")


def sha256(file) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
