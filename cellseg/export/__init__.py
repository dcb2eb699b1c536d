"""A checkpoint as a bioimage.io model package: ``python -m cellseg.export ckpt=... output=... sample=...``.

The package (model description format 0.5) holds the network with its sigmoid inside, as
TorchScript and ONNX weights, so a consumer (deepImageJ, ilastik, QuPath, bioimageio.core)
gets the (interior, edge) probabilities that ``cellseg.inference.predictor.Predictor``
computes; the instance step (threshold, connected components, growth over the edge band)
stays in cellseg, and the checkpoint's threshold and post-processing options are stored
under ``config.cellseg`` and spelled out in the package's README.md.

Options:
    ckpt=PATH          a checkpoint written by train.py (required)
    output=PATH        ``NAME.zip`` for a zipped package, any other name for a folder (required)
    sample=IMAGE       a real 2-D frame; its centre crop is the test input, and cellseg's
                       probabilities of it the test output (required)
    crop=256           side of the square centre crop: a multiple of 32, reduced to the
                       frame's largest multiple of 32 where the frame is smaller
    name=...           the model's name (5 to 64 letters, digits, spaces and ``_+-()``)
    authors="A B;C D"  the people who trained the model, separated by ``;``
    description=...    one paragraph (at most 512 characters)
    tags=a,b           extra tags, e.g. ``tags=fluorescence-light-microscopy,nuclei``
    license=MIT        an SPDX licence identifier
    overwrite=false    replace an existing output
    test=true          run bioimageio.core's model test on the package before it gets its name

Example: ``python -m cellseg.export ckpt=logs/train/runs/<time>/checkpoints/best.ckpt
output=exports/nuclei.zip sample=data/synthetic/images/syn_006.tif authors="Jane Doe"``

The preprocessing is bioimage.io's ``scale_range`` over (y, x) of each sample with the
checkpoint's percentiles, ``(x - p_low) / (p_high - p_low + 1e-6)``, not clipped: cellseg's
``percentile_normalize`` up to that epsilon (cellseg divides by ``p_high - p_low``, and
where the two percentiles coincide it falls back to the frame's min and max).

Nothing is downloaded: the package has no URLs and no GitHub user names (bioimageio.spec
checks those online), and the exporter never asks bioimage.io for anything.
"""

from cellseg.export.cli import main
from cellseg.export.description import CITATIONS
from cellseg.export.options import parse
from cellseg.export.package import check_bioimageio, export, model_test
from cellseg.export.sample import center_crop
from cellseg.export.weights import quiet

# torch, bioimageio and the network are imported where they are needed, so a wrong option
# is answered at once.

__all__ = ["CITATIONS", "center_crop", "check_bioimageio", "export", "main", "model_test", "parse", "quiet"]
