"""Listing and decoding a user's folder of images for the ``imagefolder:PATH`` data source.

Two layouts are accepted: a flat folder of image files (no labels), or a folder of class
subfolders, one level deep, each holding image files (label = index of the subfolder in sorted
order). Every image is converted to 8-bit gray or RGB, transparency is composited onto a solid
background, and the centred square crop is resized to the training size with Lanczos filtering.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm import tqdm

log = logging.getLogger(__name__)

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
LAYOUTS = (
    "a flat folder of image files, or a folder of class subfolders (one level deep) "
    "that hold the image files"
)
PROGRESS_MIN_FILES = 500  # a progress bar is shown when decoding more files than this
MAX_LOGGED_PATHS = 20  # the warning about unreadable files names at most this many

# Pillow modes that store 16-bit (or 32-bit integer) gray values. They are scaled, not clipped.
_WIDE_GRAY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_BACKGROUNDS = {"white": (255, 255, 255, 255), "black": (0, 0, 0, 255)}

# Errors Pillow raises for a file it cannot decode: UnidentifiedImageError (an OSError) for
# non-images and empty files, OSError for truncated data, SyntaxError and ValueError for broken
# headers, DecompressionBombError for images above Pillow's pixel limit.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


@dataclass
class FolderListing:
    """Image files found in a folder, in the order they are loaded."""

    files: list[Path]
    labels: list[int] | None  # class index per file, or None for a flat folder
    classes: list[str] = field(default_factory=list)  # class subfolder names, sorted
    ignored_dirs: list[Path] = field(default_factory=list)  # subfolders skipped in a flat folder


def _is_image_file(path: Path) -> bool:
    # Hidden files are skipped because they are usually editor or macOS metadata ("._name.png").
    return not path.name.startswith(".") and path.suffix.lower() in EXTENSIONS and path.is_file()


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if _is_image_file(p))


def list_images(folder: Path) -> FolderListing:
    """List the image files of ``folder`` without opening them.

    A folder that contains image files directly is a flat folder. Its subfolders are then
    ignored and reported in ``ignored_dirs``. Otherwise every non-hidden subfolder that contains
    image files is a class. Files are sorted by name within each class, and classes by folder name.
    """
    flat = _image_files(folder)
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if flat:
        ignored = [d for d in subdirs if _image_files(d)]
        return FolderListing(files=flat, labels=None, ignored_dirs=ignored)

    files: list[Path] = []
    labels: list[int] = []
    classes: list[str] = []
    for subdir in subdirs:
        members = _image_files(subdir)
        if not members:
            continue
        files += members
        labels += [len(classes)] * len(members)
        classes.append(subdir.name)
    return FolderListing(files=files, labels=labels, classes=classes)


def _to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16-bit gray (0..65535) to 8 bits so that 65535 becomes 255, keeping a tRNS key."""
    if image.mode not in _WIDE_GRAY_MODES:
        return image
    values = np.asarray(image).astype(np.float64)
    gray = np.clip(np.round(values * (255 / 65535)), 0, 255).astype(np.uint8)
    key = image.info.get("transparency")
    if isinstance(key, int):
        alpha = np.where(values == key, 0, 255).astype(np.uint8)
        return Image.fromarray(np.stack([gray, alpha], axis=-1))  # (H, W, 2) uint8 is LA
    return Image.fromarray(gray)


def _flatten_alpha(image: Image.Image, background: str) -> Image.Image:
    """Composite an image with an alpha channel or a transparent colour onto ``background``."""
    if image.mode not in _ALPHA_MODES and "transparency" not in image.info:
        return image
    canvas = Image.new("RGBA", image.size, _BACKGROUNDS[background])
    return Image.alpha_composite(canvas, image.convert("RGBA")).convert("RGB")


def decode_image(path: Path, size: int, channels: int, background: str) -> np.ndarray:
    """Decode one image file into a uint8 array of shape (channels, size, size).

    The EXIF orientation is applied, the largest centred square is cropped and resized with
    Lanczos filtering (antialiased when shrinking; small images are enlarged). CMYK and other
    modes are converted by Pillow without colour management, so embedded ICC profiles are ignored.

    Raises:
        OSError, ValueError, SyntaxError, EOFError, PIL.Image.DecompressionBombError: the file is
            not a readable image.
    """
    with Image.open(path) as opened:
        opened.load()
        image = ImageOps.exif_transpose(opened)
    image = _flatten_alpha(_to_8bit(image), background)
    image = image.convert("L" if channels == 1 else "RGB")

    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    box = (left, top, left + side, top + side)
    image = image.resize((size, size), Image.Resampling.LANCZOS, box=box)

    pixels = np.array(image, dtype=np.uint8)  # a writable copy, as torch.from_numpy expects
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


def _try_decode(path: Path, size: int, channels: int, background: str) -> np.ndarray | str:
    """Return the decoded image, or the reason it could not be read."""
    try:
        return decode_image(path, size, channels, background)
    except _DECODE_ERRORS as error:
        return f"{type(error).__name__}: {error}"


def decode_files(
    files: list[Path], size: int, channels: int, background: str
) -> tuple[torch.Tensor, list[int], list[str]]:
    """Decode ``files`` into one uint8 tensor, skipping unreadable ones.

    Files are decoded on a thread pool because Pillow decodes and resizes outside the GIL: two
    threads decoded 200 PNGs of 512x512 1.9 times as fast as one thread on a 2-core machine.
    The output order follows ``files``.

    Returns:
        ``(images, kept, skipped)``: images of shape (len(kept), channels, size, size), the
        indices into ``files`` of the decoded files, and the paths of the unreadable ones.
    """
    images = torch.empty((len(files), channels, size, size), dtype=torch.uint8)
    kept: list[int] = []
    skipped: list[str] = []
    reasons: list[str] = []
    workers = min(8, os.cpu_count() or 1)

    def work(path: Path) -> np.ndarray | str:
        return _try_decode(path, size, channels, background)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(work, files)
        bar = tqdm(results, total=len(files), desc="decoding images", unit="img",
                   disable=len(files) <= PROGRESS_MIN_FILES)
        for index, result in enumerate(bar):
            if isinstance(result, str):
                skipped.append(str(files[index]))
                reasons.append(f"{files[index]} ({result})")
                continue
            images[len(kept)] = torch.from_numpy(result)
            kept.append(index)

    if skipped:
        shown = "; ".join(reasons[:MAX_LOGGED_PATHS])
        more = f"; and {len(skipped) - MAX_LOGGED_PATHS} more" if len(skipped) > MAX_LOGGED_PATHS else ""
        log.warning("skipped %d unreadable image files: %s%s", len(skipped), shown, more)
    if skipped:
        images = images[: len(kept)].clone()  # a copy, so the unused rows are freed
    return images, kept, skipped
