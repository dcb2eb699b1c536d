"""Fully convolutional networks on a GoogLeNet encoder."""
