"""The package's cover image and its README.md."""

from __future__ import annotations

import numpy as np

from cellseg.export.architectures import ARCHITECTURES
from cellseg.export.weights import INPUT_ID, OPSET, OUTPUT_ID


def cover_image(normalized: np.ndarray, prob: np.ndarray, labels: np.ndarray, size: int = 256) -> np.ndarray:
    """A 2:1 RGB picture: the package's output over the sample (interior green, edge magenta),
    and the cells cellseg makes of it outlined (``size`` px high, well under bioimage.io's 500 kB)."""
    from skimage.transform import resize

    from cellseg.visualize import grey_rgb, outline_overlay

    if normalized.shape[0] != size:
        normalized = resize(normalized, (size, size), order=1, anti_aliasing=True).astype(np.float32)
        prob = resize(prob, (prob.shape[0], size, size), order=1, anti_aliasing=True)
        labels = resize(labels, (size, size), order=0, preserve_range=True, anti_aliasing=False).astype(labels.dtype)
    grey = grey_rgb(normalized).astype(np.float32) * 0.4
    colour = np.stack([prob[1], prob[0], prob[1]], axis=-1) * 0.6 * 255
    left = np.clip(grey + colour, 0, 255).astype(np.uint8)
    return np.concatenate([left, outline_overlay(normalized, labels)], axis=1)


def documentation(name: str, config: dict, side: int, checks: dict[str, float]) -> str:
    """The package's README.md."""
    norm, post, t = config["normalization"], config["postprocess"], config["threshold"]
    rows = "\n".join(f"| `{k}` | {v:.3f} |" for k, v in config["validation"].items())
    validation = (
        f"Validation metrics of the checkpoint (step {config['trained_steps']}). Validation chose this checkpoint "
        f"and its threshold, so these are not test results.\n\n| metric | value |\n|---|---|\n{rows}\n"
        if rows
        else "The checkpoint holds no validation metrics.\n"
    )
    call = ", ".join(f"{k}={v!r}" for k, v in post.items())
    method = post.get("method", "threshold")
    splitting = (
        "These four steps are the whole instance step of this checkpoint (`method: threshold`)."
        if method == "threshold"
        else f"This checkpoint's `method: {method}` also splits merged neighbours between steps 2 and 3 "
        "(see `cellseg/postprocess.py`); steps 1-4 alone are the plain `threshold` method."
    )
    net_name = config["network"].rsplit(".", 1)[-1]
    return f"""# {name}

A cellseg model: {ARCHITECTURES[config["network"]].phrase} (`{net_name}`) that gives, for every
pixel of a 2-D one-channel frame, the probability of **cell interior** and of **cell edge**.
Exported by cellseg {config["version"]} from `{config["checkpoint"]["file"]}` (sha256
`{config["checkpoint"]["sha256"][:16]}...`, {config["trained_steps"]} training steps).

## Input and output

- Input `{INPUT_ID}`: axes (batch, channel, y, x), one channel, float32 raw intensities; y and x
  any multiple of 32 (32, 64, 96, ...): pad or crop other sizes to a multiple of 32.
- Preprocessing (in the package): `scale_range` over y and x of each image, mapping percentile
  {norm["low"]:g} to 0 and percentile {norm["high"]:g} to 1, **not clipped**:
  `(x - p_low) / (p_high - p_low + 1e-6)`. That is cellseg's own normalization (which has
  no 1e-6), where the percentiles are those of the whole frame; bioimageio.core also takes
  them over the whole image before it tiles, other tools may take them per tile.
- Output `{OUTPUT_ID}`: axes (batch, channel, y, x), float32 in [0, 1]; channel 0 `interior`,
  channel 1 `edge`. The sigmoid is inside the weights.
- Weights: TorchScript (`torch.jit.trace`) and ONNX (opset {OPSET}; batch, y and x dynamic), the
  function cellseg's predictor computes (largest difference at export: TorchScript
  {checks["torchscript"]:.1e}, ONNX {checks["onnx"]:.1e}).

## What deepImageJ, ilastik or QuPath give you

Probabilities, not cells: a two-channel 32-bit image (interior, edge) of the size of the
input (deepImageJ: *Install Model* from this zip, then *Run*; ilastik: the Neural Network
Classification workflow; QuPath: the bioimage.io extension, as a pixel classifier). Turning
them into cells is cellseg's step, below.

The package declares no halo, so a tool that tiles a frame runs each tile without its
neighbours' context, and the probabilities change near tile borders. Give the model whole
frames where memory allows (cellseg itself predicts 1024-px tiles overlapping by 128 px),
else tiles of 512 px or more, overlapping if the tool offers it.

## From probabilities to cells

cellseg's instance step with this checkpoint's options (`config.cellseg` in `rdf.yaml`):

1. threshold the interior: `interior > {t:.4f}` (the threshold validation chose);
2. fill holes, then connected components (4-connected): one component per cell interior;
3. grow each component by up to {post.get("expand")} px into the foreground `interior + edge > {t:.4f}`
   (the network separates touching cells by the edge band between them);
4. drop objects smaller than {post.get("min_size")} px.

{splitting}
In Fiji: threshold channel 0 at {t:.4f}, *Fill Holes*, *Analyze Particles* with size
{post.get("min_size")}-Infinity (steps 1, 2 and 4). In Python, with `prob` the (2, H, W) output of one frame:

```python
from cellseg.postprocess import probabilities_to_labels
labels = probabilities_to_labels(prob, threshold={t:.4f}, {call})
```

Or let cellseg do all of it from the checkpoint, which holds these options:
`python predict.py ckpt={config["checkpoint"]["file"]} input=frames/` (labels, outlines, measurements).

## Validation

{validation}
To validate on your own annotated frames, run cellseg with the checkpoint and your masks
(`python predict.py ckpt=... input=frames/ gt=masks/` writes SEG, AP50, merges and misses to
`metrics.json`), or compare the cells of the steps above with your annotations. The test
input is the {side}x{side} centre crop of a real frame; `bioimageio test <package>` reproduces
the test output with both weight formats.
"""
