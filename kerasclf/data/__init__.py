"""Data: sources → :class:`DataSpec` → splits (manifest) → tf.data pipeline.

Example:
    >>> from kerasclf.data import sources, splits, pipeline
    >>> spec = sources.digits()
    >>> parts = splits.split_indices(spec, (0.7, 0.1, 0.2), seed=42)
    >>> ds = pipeline.make_dataset(spec, parts["train"], image_size=(32, 32), batch_size=32)
"""
from kerasclf.data.reader import IMAGE_EXTENSIONS, ImageInfo, ImageReadError, inspect_image, read_image
from kerasclf.data.spec import DataSpec, infer_task

__all__ = ["DataSpec", "infer_task", "IMAGE_EXTENSIONS", "ImageInfo", "ImageReadError", "inspect_image",
           "read_image"]
