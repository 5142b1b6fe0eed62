"""Tiny stand-ins for what a paper-profile user puts in place: the datasets in their release layouts
(generated images, masks and VOC ids) and torchvision ImageNet weight files in a torch cache."""
from __future__ import annotations

from pathlib import Path

from posenc_utils.primitives.standin import make_downstream_datasets, make_probe_datasets  # noqa: F401 (the tests' import)


def write_imagenet_weights(torch_home: Path, archs: tuple[str, ...] = ("vgg16", "resnet152")) -> list[Path]:
    """torchvision state dicts (seeded random weights) under the file names of the ImageNet weights, in
    ``torch_home/hub/checkpoints``: the files load as a user's downloaded weights do."""
    import torch
    import torchvision

    from posenc_utils.models.networks import imagenet_weights_file

    out = []
    for arch in archs:
        path = imagenet_weights_file(arch)[0]
        path = Path(torch_home) / "hub" / "checkpoints" / path.name
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        torch.save(getattr(torchvision.models, arch)().state_dict(), path)
        out.append(path)
    return out
