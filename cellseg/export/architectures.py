"""How an exported package names the network it holds, by the checkpoint's class name."""

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
    "GoogLeNetFCN": Architecture(
        "a fully convolutional GoogLeNet",
        "GoogLeNet FCN",
        "torchvision's GoogLeNet without pooling and classifier as the encoder, a transposed-convolution "
        "head back to full resolution",
        GOOGLENET_TAGS,
    ),
    "GoogLeNetSkip": Architecture(
        "a fully convolutional GoogLeNet with a skip decoder",
        "GoogLeNet FCN",
        "torchvision's GoogLeNet without pooling and classifier as the encoder, a decoder fusing its "
        "stride-16 to stride-2 features, a transposed-convolution head back to full resolution",
        GOOGLENET_TAGS,
    ),
}


def architecture(network: str) -> Architecture:
    """The :class:`Architecture` of a checkpoint's ``_target_`` name."""
    return ARCHITECTURES[network.rsplit(".", 1)[-1]]
