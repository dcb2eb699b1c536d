"""cellseg: few-shot cell segmentation with a fully convolutional GoogLeNet."""

__version__ = "0.1.0"
