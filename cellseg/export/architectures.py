"""How an exported package names the network it holds, by the checkpoint's ``_target_`` name
(the names :data:`cellseg.models.registry.NETS` builds)."""

from __future__ import annotations

from dataclasses import dataclass

GOOGLENET_TAGS = ("inception", "googlenet", "fcn")


@dataclass(frozen=True)
class Architecture:
    """How the package names a network: a phrase, bioimage.io's type and description, tags."""

    phrase: str
    kind: str
    details: str
    tags: tuple[str, ...]


ARCHITECTURES = {
    "cellseg.models.nets.googlenet_fcn.GoogLeNetFCN": Architecture(
        "a fully convolutional GoogLeNet",
        "GoogLeNet FCN",
        "torchvision's GoogLeNet without pooling and classifier as the encoder, a transposed-convolution "
        "head back to full resolution",
        GOOGLENET_TAGS,
    ),
    "cellseg.models.nets.googlenet_skip.GoogLeNetSkip": Architecture(
        "a fully convolutional GoogLeNet with a skip decoder",
        "GoogLeNet FCN",
        "torchvision's GoogLeNet without pooling and classifier as the encoder, a decoder fusing its "
        "stride-16 to stride-2 features, a transposed-convolution head back to full resolution",
        GOOGLENET_TAGS,
    ),
}
