"""One image reader for training, prediction and the health check.

:func:`read_image` turns any readable image file into an ``(H, W, 3)`` uint8 RGB array,
converting unusual modes instead of dropping the file: CMYK JPEG, 16-bit / palette / RGBA /
grayscale PNG, BMP, the first frame of a GIF, WebP. Alpha is dropped (not composited), the same
as ``tf.io.decode_image(channels=3)`` does, so the fast tf.data path and this reader agree.

Every failure is an :class:`ImageReadError` (a :class:`~kerasclf.errors.DataError`) whose
one-line message names the file and the reason — zero-byte, truncated, not an image, too large
(the ``max_pixels`` guard against decompression bombs) — never a PIL traceback.

Example:
    >>> import numpy as np, tempfile, os
    >>> from PIL import Image
    >>> p = os.path.join(tempfile.mkdtemp(), "g.png")
    >>> Image.fromarray(np.zeros((4, 5), "uint8")).save(p)
    >>> read_image(p).shape
    (4, 5, 3)
    >>> inspect_image(p).converted_from
    'L'
"""
from __future__ import annotations

import os
import re
import struct
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from kerasclf.errors import DataError

__all__ = ["IMAGE_EXTENSIONS", "DEFAULT_MAX_PIXELS", "DEFAULT_MAX_FRAMES", "MIN_SIDE", "ImageReadError",
           "ImageInfo", "read_image", "probe_image", "inspect_image", "is_image_file", "collect_image_paths"]

#: File extensions (lower case, with the dot) that sources and prediction treat as images.
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")

#: Default pixel limit (width × height) above which a file is refused as a possible
#: decompression bomb. Pass ``max_pixels=`` to change it per call, or set the
#: ``KERASCLF_MAX_PIXELS`` environment variable.
DEFAULT_MAX_PIXELS: int = int(float(os.environ.get("KERASCLF_MAX_PIXELS", 50e6)))

#: An animated image (GIF, APNG, WebP) with more frames than this is refused; one with fewer is
#: read as its first frame only. ``KERASCLF_MAX_FRAMES`` changes it.
DEFAULT_MAX_FRAMES: int = int(os.environ.get("KERASCLF_MAX_FRAMES", 1000))

#: Images with a side shorter than this many pixels (1x1 trackers, 2xN slivers) are refused.
MIN_SIDE: int = 4


class ImageReadError(DataError):
    """An image file cannot be read; the message names the file and the reason.

    Attributes:
        path: the file.
        reason: a short reason (``zero-byte file``, ``truncated image`` ...).
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass
class ImageInfo:
    """What :func:`inspect_image` found about one file.

    Attributes:
        path: the file.
        ok: whether :func:`read_image` can read it.
        reason: why not (empty when ``ok``).
        width, height: pixel size (0 when unknown).
        mode: the PIL mode as stored (``RGB``, ``CMYK``, ``I;16``, ``P`` ...).
        format: the PIL format (``JPEG``, ``PNG`` ...), empty when not an image.
        bytes: file size.
        converted_from: the original mode when the reader converted it to RGB, else ``None``.
        frames: frames in the file (animated GIF / APNG / WebP); only the first is read.
    """

    path: str
    ok: bool
    reason: str = ""
    width: int = 0
    height: int = 0
    mode: str = ""
    format: str = ""
    bytes: int = 0
    converted_from: str | None = None
    frames: int = 1

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (for JSON reports)."""
        return asdict(self)


def is_image_file(name: str | os.PathLike, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> bool:
    """Whether ``name`` has an image extension (case-insensitive) and is not hidden."""
    base = os.path.basename(str(name))
    return not base.startswith(".") and base.lower().endswith(tuple(e.lower() for e in extensions))


def _to_rgb(img: Any) -> np.ndarray:
    """Convert an opened, loaded PIL image of any mode to an (H, W, 3) uint8 array."""
    mode = img.mode
    if mode == "RGB":
        arr = np.asarray(img)
    elif mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(img)
        if a.ndim == 3:
            a = a[..., 0]
        a = a.astype(np.float64)
        if mode.startswith("I;16") or (mode == "I" and a.max(initial=0) > 255):
            a = a / 257.0  # 16-bit range to 8-bit
        arr = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        arr = np.repeat(arr[..., None], 3, axis=-1)
    elif mode in ("RGB;16", "RGBA;16", "RGBX"):
        arr = np.asarray(img.convert("RGB"))
    elif mode == "P":
        arr = np.asarray(img.convert("RGBA").convert("RGB"))
    elif mode == "1":
        arr = np.asarray(img.convert("L").convert("RGB"))
    else:  # L, LA, RGBA, CMYK, YCbCr, LAB, HSV, PA ...
        try:
            arr = np.asarray(img.convert("RGB"))
        except (ValueError, OSError) as e:
            raise ValueError(f"cannot convert mode {mode} to RGB ({e})") from None
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.shape[-1] != 3:
        arr = np.asarray(Image.fromarray(arr).convert("RGB"))
    return arr


def _open_checked(path: str, max_pixels: int | None) -> tuple[Any, int]:
    """Open ``path`` with PIL after the cheap checks; return (image, file size)."""
    if not os.path.exists(path):
        raise ImageReadError(path, "no such file")
    if os.path.isdir(path):
        raise ImageReadError(path, "is a folder, not an image file")
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise ImageReadError(path, f"cannot stat file ({e.strerror or e})") from None
    if size == 0:
        raise ImageReadError(path, "zero-byte file")
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image (unrecognised file format)") from None
    except Image.DecompressionBombError as e:  # PIL's own guard (twice Image.MAX_IMAGE_PIXELS)
        declared = re.search(r"\((\d+) pixels\)", str(e))
        size_text = f"{int(declared.group(1)):,} pixels" if declared else "PIL's decompression-bomb limit"
        raise ImageReadError(path, f"too large ({size_text} > max_pixels {limit:,}; "
                                   f"raise max_pixels (KERASCLF_MAX_PIXELS) if it is genuine)") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError) as e:
        if "truncated" in str(e).lower():
            raise ImageReadError(path, "truncated image (file ends before the image data does)") from None
        raise ImageReadError(path, f"cannot open image ({_short(e)})") from None
    w, h = img.size
    if limit and w * h > limit:
        img.close()
        raise ImageReadError(path, f"too large ({w}x{h} = {w * h:,} pixels > max_pixels {limit:,}; "
                                   f"raise max_pixels (KERASCLF_MAX_PIXELS) if it is genuine)")
    if w == 0 or h == 0:
        img.close()
        raise ImageReadError(path, f"empty image ({w}x{h})")
    if min(w, h) < MIN_SIDE:
        img.close()
        raise ImageReadError(path, f"too small ({w}x{h}; an image needs at least {MIN_SIDE} pixels a side)")
    if getattr(img, "is_animated", False):
        try:
            frames = int(img.n_frames)  # GIF: walks the frame headers, decodes nothing
        except (OSError, ValueError, SyntaxError, EOFError, struct.error) as e:
            img.close()
            raise ImageReadError(path, f"corrupt animation ({_short(e)})") from None
        if DEFAULT_MAX_FRAMES and frames > DEFAULT_MAX_FRAMES:
            img.close()
            raise ImageReadError(path, f"animated image with {frames:,} frames (over {DEFAULT_MAX_FRAMES:,}; "
                                       f"save the frame you want as a still image)")
    return img, size


def _short(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return msg[:200]


def _load(img: Any, path: str) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            old = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None  # our own max_pixels check already ran
            try:
                img.load()
            finally:
                Image.MAX_IMAGE_PIXELS = old
    except OSError as e:
        text = str(e).lower()
        if "truncated" in text or "broken data stream" in text or "unrecognized data stream" in text:
            raise ImageReadError(path, "truncated image (file ends before the image data does)") from None
        raise ImageReadError(path, f"corrupt image data ({_short(e)})") from None
    except (ValueError, SyntaxError, EOFError, MemoryError) as e:
        raise ImageReadError(path, f"corrupt image data ({_short(e)})") from None


def read_image(path: str | os.PathLike, *, max_pixels: int | None = None) -> np.ndarray:
    """Read any supported image file as an ``(H, W, 3)`` uint8 RGB array.

    Args:
        path: the image file.
        max_pixels: refuse images with more pixels than this (default
            :data:`DEFAULT_MAX_PIXELS`, 50 million); ``0`` disables the guard.

    Returns:
        The pixels, RGB, uint8, C-contiguous.

    Raises:
        ImageReadError: zero-byte, truncated, not an image, too large, or otherwise unreadable;
            the message is one line naming the file and the reason.

    Example:
        >>> read_image("photo.jpg").dtype  # doctest: +SKIP
        dtype('uint8')
    """
    path = os.fspath(path)
    img, _ = _open_checked(path, max_pixels)
    try:
        _load(img, path)
        try:
            return _to_rgb(img)
        except (ValueError, OSError) as e:
            raise ImageReadError(path, _short(e)) from None
    finally:
        img.close()


def probe_image(path: str | os.PathLike, *, max_pixels: int | None = None) -> ImageInfo:
    """Check a file from its header only (no pixel is decoded): size, mode, format, frames.

    The guards every reader shares run here, before any decoder (PIL's or TensorFlow's) sees the
    file: zero-byte, not an image, more than ``max_pixels`` pixels (decompression bombs), a side
    under :data:`MIN_SIDE`, more than :data:`DEFAULT_MAX_FRAMES` frames.

    Raises:
        ImageReadError: the file fails one of the guards; one line naming it and the reason.

    Example:
        >>> probe_image("bomb.png")  # doctest: +SKIP
        ImageReadError: bomb.png: too large (40000x40000 = 1,600,000,000 pixels > max_pixels 50,000,000; ...)
    """
    path = os.fspath(path)
    img, size = _open_checked(path, max_pixels)
    try:
        frames = int(getattr(img, "n_frames", 1)) if getattr(img, "is_animated", False) else 1
        return ImageInfo(path=path, ok=True, width=img.size[0], height=img.size[1], mode=img.mode,
                         format=img.format or "", bytes=size, frames=frames)
    finally:
        img.close()


def inspect_image(path: str | os.PathLike, *, max_pixels: int | None = None) -> ImageInfo:
    """Read ``path`` once and describe it, without raising.

    Args:
        path: the image file.
        max_pixels: as in :func:`read_image`.

    Returns:
        An :class:`ImageInfo`; ``ok`` is ``False`` with ``reason`` set when the file cannot be read.

    Example:
        >>> info = inspect_image("scan.jpg")  # doctest: +SKIP
        >>> info.ok, info.mode, info.converted_from  # doctest: +SKIP
        (True, 'CMYK', 'CMYK')
    """
    path = os.fspath(path)
    info = ImageInfo(path=path, ok=False)
    try:
        info.bytes = os.path.getsize(path) if os.path.isfile(path) else 0
    except OSError:
        pass
    try:
        img, _ = _open_checked(path, max_pixels)
    except ImageReadError as e:
        info.reason = e.reason
        try:  # still report the size of a too-large image
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                old = Image.MAX_IMAGE_PIXELS
                Image.MAX_IMAGE_PIXELS = None
                try:
                    with Image.open(path) as im:
                        info.width, info.height = im.size
                        info.mode, info.format = im.mode, im.format or ""
                finally:
                    Image.MAX_IMAGE_PIXELS = old
        except Exception:  # noqa: BLE001 - best effort only
            pass
        return info
    try:
        info.width, info.height = img.size
        info.mode, info.format = img.mode, img.format or ""
        try:
            _load(img, path)
            _to_rgb(img)
        except ImageReadError as e:
            info.reason = e.reason
            return info
        except (ValueError, OSError) as e:
            info.reason = _short(e)
            return info
        info.ok = True
        if info.mode != "RGB":
            info.converted_from = info.mode
        return info
    finally:
        img.close()


def collect_image_paths(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Image files named directly or found (recursively, sorted) under the given folders.

    Hidden files and folders are left out; symlinked folders are not followed (no loops).

    Example:
        >>> collect_image_paths(["photos/", "extra.jpg"])  # doctest: +SKIP
        [PosixPath('photos/a.jpg'), PosixPath('photos/sub/b.png'), PosixPath('extra.jpg')]
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(paths)
    out: list[Path] = []
    for p in map(_as_path, paths):
        if p.is_dir():
            found = []
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found += [Path(root) / f for f in files if not f.startswith(".") and is_image_file(f)]
            out += sorted(found)
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"{p}: no such file or folder; check the path")
    if not out:
        raise DataError(f"no image files found in {', '.join(map(str, paths))}; "
                        f"supported: {', '.join(IMAGE_EXTENSIONS)}")
    return out


def _as_path(p: str | os.PathLike) -> Path:  # small helper shared with sources
    return Path(os.fspath(p))
