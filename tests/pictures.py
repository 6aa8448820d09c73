"""Real pictures and article pages made by the tests: encoded by Pillow, served by FeedServer."""

from __future__ import annotations

import io
import json
import struct
import zlib
from html.parser import HTMLParser
from typing import Any

from PIL import Image

JPEG = "image/jpeg"


def picture(size: tuple[int, int] = (1600, 900), kind: str = "JPEG", **options: Any) -> bytes:
    """A smooth picture (gradients, as photos mostly are) encoded as `kind`."""
    width, height = size
    across = Image.linear_gradient("L").resize(size)
    down = Image.linear_gradient("L").rotate(90).resize(size)
    image = Image.merge("RGB", (across, down, Image.new("L", size, 140)))
    if kind in ("PNG", "WEBP", "GIF") and options.pop("transparent", False):
        image = image.convert("RGBA")
        image.putalpha(Image.new("L", size, 0).crop((0, 0, width, height)))
    out = io.BytesIO()
    image.save(out, kind, **options)
    return out.getvalue()


def halves(size: tuple[int, int], orientation: int) -> bytes:
    """A JPEG whose left half is red and right half blue, with an EXIF orientation, the camera
    and a place: what a phone writes."""
    image = Image.new("RGB", size, (220, 0, 0))
    image.paste((0, 0, 220), (size[0] // 2, 0, size[0], size[1]))
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 0.0)}  # GPSInfo: latitude
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif, quality=95)
    return out.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares `width` × `height` pixels in a few hundred bytes: its header is
    real, its image data a few rows (a decoder would fail on it, but only after allocating
    what the header asked for)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    rows = zlib.compress(b"\0" * (width + 1) * 4)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows)
            + chunk(b"IEND", b""))


def page(head: str = "", body: str = "") -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>A story</title>{head}"
            f"</head><body><article>{body}<p>The story itself.</p></article></body></html>")


def ld_json(data: Any) -> str:
    return f'<script type="application/ld+json">{json.dumps(data)}</script>'


class Images(HTMLParser):
    """The <img> tags of a rendered edition, their attributes by name, and under "link" the
    href of the link around each (a card's picture links to its story)."""

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.found: list[dict[str, str | None]] = []
        self.link: str | None = None
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.link = dict(attrs).get("href")
        elif tag == "img":
            self.found.append({**dict(attrs), "link": self.link})

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self.link = None


def images_in(markup: str) -> list[dict[str, str | None]]:
    return Images(markup).found
