"""Writers of prediction outputs: each streams and appears under its final name only when complete."""
