"""Hosted pictures: a card's picture, downloaded once by collect, is cut to the layout's two
shapes around its centre, sized for 2× screens and re-encoded under a size budget into the
state folder; `digest serve` serves the files at /img/<content hash>.<ext>. A file is named
by a hash of its bytes, so its URL never changes meaning and may be cached for ever.

Re-encoding leaves everything but the pixels behind: EXIF (camera, place, time), comments,
colour profiles. The camera's orientation is applied first, so a phone photo stands upright.

A picture is hostile input like the rest of a feed: only four formats are decoded (never
PostScript, TIFF and the like, whose decoders are large and rarely met in feeds), and one
with more pixels than MAX_PIXELS is refused from its header, before anything is decoded,
however small the file (a decompression bomb: a 30 KB PNG can declare 400 million pixels).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import threading
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from digest.config import PACKAGE
from digest.records import Rendition

# The lead story's picture (600×315 on the page, Open Graph's own shape) and a compact
# card's square thumbnail (120×120), each at twice those pixels for high-density screens.
WIDE = (1200, 630)
SQUARE = (240, 240)
# The most bytes each cut may take; a busy photo is encoded again at lower quality until it
# fits (the lowest is kept even when it does not).
BUDGET = {WIDE: 160_000, SQUARE: 24_000}
QUALITIES = (82, 72, 62, 52, 42)
FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
# 40 megapixels: more than any camera photo a feed links to; decoding it takes ~120 MB.
MAX_PIXELS = 40_000_000
# A side shorter than this is an icon or a spacer, not a picture for a card.
MIN_SIDE = 16
# The masthead's logo: at most 40 px high and the column's 600 px wide, at twice that; drawn,
# not photographed, so kept as PNG with its transparency (it sits on the masthead's colour).
LOGO = (1200, 80)
LOGO_BUDGET = 60_000
EXTENSIONS = {"jpeg": "jpg", "webp": "webp", "png": "png"}
MEDIA_TYPES = {"jpg": "image/jpeg", "webp": "image/webp", "png": "image/png"}
_NAME = re.compile(r"[0-9a-f]{32}\.(?:jpg|webp|png)")
# The bundled sample feed's pictures live at this (reserved, never resolving) address; the
# package carries them, so the demo shows pictures with no network.
SAMPLE = "https://chronicle.example.com/images/"
_SAMPLE_NAME = re.compile(r"[a-z-]+\.jpg")

# Between its limit and twice that Pillow only warns; a bomb must stop, not warn.
warnings.simplefilter("error", Image.DecompressionBombWarning)


class NotAPicture(Exception):
    """Why downloaded bytes make no picture for a card, in words for the operator."""


def host(data: bytes, folder: Path, encoding: str = "jpeg") -> tuple[Rendition, Rendition]:
    """The picture in `data`, cut wide and square and written into `folder` (if a file of
    the same bytes is not there yet)."""
    wide, square = cuts(data, encoding)
    return _keep(wide, folder, encoding), _keep(square, folder, encoding)


def cuts(data: bytes, encoding: str = "jpeg") -> tuple[tuple[bytes, int, int], ...]:
    """The wide and the square cut of the picture in `data`: (bytes, width, height) each.
    Never larger than the original: a small picture is cropped, not blown up."""
    picture = _opaque(_decoded(data))
    return tuple(_encoded(_cut(picture, box), encoding, BUDGET[box]) for box in (WIDE, SQUARE))


def logo(data: bytes, folder: Path) -> Rendition:
    """The logo in `data` scaled to fit LOGO, whole (a logo cropped is a broken logo) and
    never blown up, written into `folder` as PNG."""
    picture = _decoded(data)
    clear = picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info
    picture = picture.convert("RGBA" if clear else "RGB")
    picture.thumbnail(LOGO, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    picture.save(out, "PNG", optimize=True)
    if out.tell() > LOGO_BUDGET:  # a photographic logo: 256 colours are plenty at 80 px
        out = io.BytesIO()
        picture.quantize(256, dither=Image.Dither.NONE).save(out, "PNG", optimize=True)
    return _keep((out.getvalue(), *picture.size), folder, "png")


def _decoded(data: bytes) -> Image.Image:
    """The picture in `data`, upright, or NotAPicture: checked from its header (format, pixel
    count, size) before anything is decoded."""
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as opened:
            width, height = opened.size
            if width * height > MAX_PIXELS:
                raise NotAPicture(f"{width}×{height} pixels, more than {MAX_PIXELS:,}")
            if min(width, height) < MIN_SIDE:
                raise NotAPicture(f"only {width}×{height} pixels")
            # A JPEG decodes at a fraction of its size when that still covers the cuts.
            opened.draft("RGB", (WIDE[0], WIDE[0]))
            return ImageOps.exif_transpose(opened)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own limit (89 million pixels), met as the header is read, before ours.
        raise NotAPicture(f"more than {MAX_PIXELS:,} pixels") from None
    except UnidentifiedImageError:
        raise NotAPicture("not a JPEG, PNG, WebP or GIF picture") from None
    except (OSError, SyntaxError, ValueError) as error:  # what Pillow raises on broken data
        raise NotAPicture(f"a damaged picture ({error})") from None


def _opaque(picture: Image.Image) -> Image.Image:
    """RGB pixels; what was transparent shows the white of a card."""
    if picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info:
        rgba = picture.convert("RGBA")
        flat = Image.new("RGB", rgba.size, "white")
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return picture.convert("RGB")


def _cut(picture: Image.Image, box: tuple[int, int]) -> Image.Image:
    """The largest part of the picture in the shape of `box`, around its centre, scaled
    down to `box` (never up)."""
    width, height = picture.size
    scale = min(1.0, width / box[0], height / box[1])
    size = (max(1, round(box[0] * scale)), max(1, round(box[1] * scale)))
    return ImageOps.fit(picture, size, Image.Resampling.LANCZOS, centering=(0.5, 0.5))


def _encoded(picture: Image.Image, encoding: str, budget: int) -> tuple[bytes, int, int]:
    for quality in QUALITIES:
        out = io.BytesIO()
        if encoding == "webp":
            picture.save(out, "WEBP", quality=quality, method=4)
        else:
            picture.save(out, "JPEG", quality=quality, optimize=True, progressive=True)
        if out.tell() <= budget:
            break
    return out.getvalue(), *picture.size


def _keep(cut: tuple[bytes, int, int], folder: Path, encoding: str) -> Rendition:
    data, width, height = cut
    name = f"{hashlib.sha256(data).hexdigest()[:32]}.{EXTENSIONS[encoding]}"
    path = folder / name
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        # Written aside and renamed: `digest serve` never sends half a file.
        draft = folder / f".{name}.{os.getpid()}-{threading.get_ident()}"
        draft.write_bytes(data)
        os.replace(draft, path)
    return Rendition(name, width, height)


def file(folder: Path, name: str) -> Path | None:
    """The hosted file of that name, if it is one: nothing else in the folder is served."""
    path = folder / name
    return path if _NAME.fullmatch(name) and path.is_file() else None


def bundled(url: str) -> bytes | None:
    """The package's copy of a picture of the bundled sample feed, or None for any other."""
    name = url.removeprefix(SAMPLE)
    if name == url or not _SAMPLE_NAME.fullmatch(name):
        return None
    path = PACKAGE / "sample" / name
    return path.read_bytes() if path.is_file() else None
