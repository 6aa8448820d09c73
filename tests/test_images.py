"""Hosted images: real pictures of every format a feed links to, re-encoded by Pillow, cut for
the layout, refused when they are bombs; then served by a real `digest serve`."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from pictures import JPEG, halves, images_in, picture, png_header
from PIL import Image
from playwright.sync_api import Page
from servers import FeedServer
from support import Item, Site, digest, rows, rss, serving

from digest import config, images
from digest.web import public as web_app

pytestmark = pytest.mark.backends

INPUTS = {
    "jpeg": picture((3000, 2000), "JPEG", quality=95),
    "png": picture((1600, 1200), "PNG"),
    "transparent png": picture((1600, 1200), "PNG", transparent=True),
    "webp": picture((1400, 1400), "WEBP", quality=90),
    "gif": picture((1280, 720), "GIF"),
}


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize("kind", INPUTS)
def test_every_format_is_cut_wide_and_square_as_jpeg_within_budget(kind: str) -> None:
    wide, square = images.cuts(INPUTS[kind])
    for (data, width, height), box in ((wide, images.WIDE), (square, images.SQUARE)):
        copy = opened(data)
        assert copy.format == "JPEG" and copy.mode == "RGB"
        assert copy.size == (width, height) == box
        assert len(data) <= images.BUDGET[box]


def test_a_transparent_picture_shows_the_card_white_where_it_was_clear() -> None:
    (data, _, _), _ = images.cuts(INPUTS["transparent png"])
    assert all(value > 245 for value in opened(data).getpixel((600, 315)))


def test_webp_is_made_when_asked() -> None:
    for data, _, _ in images.cuts(INPUTS["jpeg"], "webp"):
        assert opened(data).format == "WEBP"


def test_a_small_picture_is_cropped_never_blown_up() -> None:
    wide, square = images.cuts(picture((300, 200)))
    assert (wide[1:], square[1:]) == ((300, 158), (200, 200))


def test_the_cut_is_around_the_centre() -> None:
    # Left third red, middle green, right third blue: the square keeps the green middle.
    image = Image.new("RGB", (900, 300), (255, 0, 0))
    image.paste((0, 255, 0), (300, 0, 600, 300))
    image.paste((0, 0, 255), (600, 0, 900, 300))
    out = io.BytesIO()
    image.save(out, "PNG")
    _, (data, _, _) = images.cuts(out.getvalue())
    square = opened(data)
    assert square.size == (240, 240)
    red, green, blue = square.getpixel((120, 120))
    assert green > 200 and red < 40 and blue < 40
    assert square.getpixel((5, 120))[1] > 200 and square.getpixel((234, 120))[1] > 200


def test_exif_is_left_behind_and_the_camera_orientation_applied() -> None:
    # Orientation 6: the camera was turned; shown upright, the red left half is on top.
    source = halves((1600, 1200), orientation=6)
    assert opened(source).getexif()[0x010F] == "PhoneMaker"
    for data, _, _ in images.cuts(source):
        copy = opened(data)
        assert not copy.getexif() and "exif" not in copy.info
        top, bottom = copy.getpixel((copy.width // 2, 2)), copy.getpixel(
            (copy.width // 2, copy.height - 3))
        assert top[0] > 150 > top[2] and bottom[2] > 150 > bottom[0]


@pytest.mark.parametrize("size", [(8000, 6000), (20000, 20000), (100000, 100000)])
def test_a_pixel_bomb_is_refused_from_its_header(size: tuple[int, int]) -> None:
    bomb = png_header(*size)
    assert len(bomb) < 2000
    with pytest.raises(images.NotAPicture, match="pixels"):
        images.cuts(bomb)


@pytest.mark.parametrize("data, words", [
    (b"<!DOCTYPE html><html><body>Not found</body></html>", "not a JPEG, PNG, WebP or GIF"),
    (INPUTS["jpeg"][:5000], "damaged"),
    (picture((12, 400)), "only 12×400 pixels"),
    # A TIFF decodes in Pillow, but it is no format a card's picture comes in.
    (picture((400, 400), "TIFF"), "not a JPEG, PNG, WebP or GIF"),
])
def test_what_is_no_picture_is_refused_in_words(data: bytes, words: str) -> None:
    with pytest.raises(images.NotAPicture, match=words):
        images.cuts(data)


def test_a_logo_is_scaled_whole_into_the_masthead_as_png_keeping_its_transparency(
        tmp_path: Path) -> None:
    drawn = picture((800, 200), "PNG", transparent=True)
    hosted = images.logo(drawn, tmp_path)
    copy = opened((tmp_path / hosted.name).read_bytes())
    assert hosted.name.endswith(".png") and copy.format == "PNG" and copy.mode == "RGBA"
    assert (hosted.width, hosted.height) == copy.size == (320, 80)  # whole, not cropped
    assert copy.getpixel((160, 40))[3] == 0  # still clear where it was
    wide = images.logo(picture((3000, 300), "JPEG"), tmp_path)
    assert (wide.width, wide.height) == (800, 80) and opened(
        (tmp_path / wide.name).read_bytes()).mode == "RGB"
    small = images.logo(picture((100, 20), "GIF"), tmp_path)
    assert (small.width, small.height) == (100, 20)  # never blown up
    photo = images.logo(picture((1200, 80), "JPEG", quality=95), tmp_path)
    assert (tmp_path / photo.name).stat().st_size <= images.LOGO_BUDGET
    with pytest.raises(images.NotAPicture, match="more than"):
        images.logo(png_header(20000, 20000), tmp_path)


# -- collected, hosted and served ------------------------------------------------------------

def feed_of_pictures(web: FeedServer) -> None:
    served = {"/p/photo.jpg": (INPUTS["jpeg"], JPEG), "/p/chart.png": (INPUTS["png"], "image/png"),
              "/p/logo.webp": (INPUTS["webp"], "image/webp"),
              "/p/anim.gif": (INPUTS["gif"], "image/gif"),
              "/p/bomb.png": (png_header(20000, 20000), "image/png"),
              "/p/page.jpg": (b"<html>not a picture</html>", "text/html")}
    for path, (body, kind) in served.items():
        web.serve(path, body, content_type=kind)
    names = [*served, "/p/missing.jpg"]  # the last one answers 404
    web.serve("/feed.xml", rss(*(
        Item(f"Story {n}", f"https://example.com/{n}", f"s{n}", "Words.",
             extra=f'<media:thumbnail url="{web.url(path)}" width="640" height="480"/>')
        for n, path in enumerate(names))))


def hosting_pictures(site: Site, web: FeedServer) -> None:
    """A site hosting the pictures of `feed_of_pictures`, every story mailed, to one reader."""
    feed_of_pictures(web)
    site.feeds = [("Pictures", web.url("/feed.xml"))]
    site.hosting = True
    site.extra = "[collect]\nfirst_run = 0\n"
    site.write()
    site.subscribers("email\nann@example.com\n")


def test_collect_hosts_each_picture_once_and_serve_serves_it(site: Site, web: FeedServer) -> None:
    hosting_pictures(site, web)
    for _ in range(2):
        assert digest("collect").exit_code == 0
    assert all(len(web.requests_to(path)) == 1 for path in ("/p/photo.jpg", "/p/bomb.png"))
    assert digest("render", "--out", "next.html").exit_code == 0
    # Each card's picture by the story it links to.
    tags = {str(tag["link"]).rsplit("/", 1)[-1]: tag
            for tag in images_in(Path("next.html").read_text())}
    # The bomb and the page are no pictures: no image. The 404 keeps its link and size.
    assert set(tags) == {"0", "1", "2", "3", "6"}
    assert tags["6"]["src"] == web.url("/p/missing.jpg")
    assert rows(site.database, "SELECT url, fate FROM images WHERE fate != 'hosted' "
                               "ORDER BY url") == [(web.url("/p/bomb.png"), "dropped"),
                                                   (web.url("/p/missing.jpg"), "kept"),
                                                   (web.url("/p/page.jpg"), "dropped")]
    public = "https://news.example.com"
    with serving(web_app.app(config.load(site.config))) as base:
        for story in ("0", "1", "2", "3"):
            tag = tags[story]
            assert tag["src"].startswith(f"{public}/img/")
            answer = httpx.get(base + tag["src"].removeprefix(public))
            assert answer.status_code == 200
            assert answer.headers["content-type"] == "image/jpeg"
            assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
            copy = opened(answer.content)
            # Declared in the mail as the file is: the same shape, at most its pixels.
            assert int(tag["width"]) <= copy.width
            assert round(copy.height * int(tag["width"]) / copy.width) == int(tag["height"])
        for wrong in ("/img/../digest.db", "/img/digest.db", "/img/" + "0" * 32 + ".jpg",
                      "/img/%2e%2e%2fdigest.db"):
            assert httpx.get(base + wrong).status_code == 404


def test_the_logo_is_hosted_once_and_mailed_with_its_size(site: Site, web: FeedServer) -> None:
    hosting_pictures(site, web)
    web.serve("/brand/logo.png", picture((800, 200), "PNG", transparent=True),
              content_type="image/png")
    site.logo = web.url("/brand/logo.png")
    site.write()
    for _ in range(2):
        assert digest("collect").exit_code == 0
    assert len(web.requests_to("/brand/logo.png")) == 1
    assert digest("render", "--out", "next.html").exit_code == 0
    logo = next(tag for tag in images_in(Path("next.html").read_text())
                if tag.get("class") == "logo")
    assert logo["src"].startswith("https://news.example.com/img/")
    assert (logo["width"], logo["height"], logo["alt"]) == ("160", "40", "")
    with serving(web_app.app(config.load(site.config))) as base:
        answer = httpx.get(base + logo["src"].removeprefix("https://news.example.com"))
    assert answer.headers["content-type"] == "image/png"
    assert opened(answer.content).size == (320, 80)


def test_a_logo_that_cannot_be_had_is_a_warning_and_the_mail_links_it_as_configured(
        site: Site, web: FeedServer) -> None:
    hosting_pictures(site, web)
    site.logo = web.url("/brand/missing.png")  # answers 404
    site.write()
    collected = digest("collect")
    assert collected.exit_code == 0
    assert f"WARNING collect newsletter.logo {site.logo}: HTTP 404" in collected.output
    assert digest("render", "--out", "next.html").exit_code == 0
    logo = next(tag for tag in images_in(Path("next.html").read_text())
                if tag.get("class") == "logo")
    assert (logo["src"], logo["height"]) == (site.logo, "40") and "width" not in logo


LOADED = """[...document.images].map(i => ({complete: i.complete, natural: [i.naturalWidth,
    i.naturalHeight], declared: [+i.getAttribute('width'), +i.getAttribute('height')],
    shown: [i.clientWidth, i.clientHeight]}))"""


def assert_loaded_as_declared(page: Page, count: int) -> None:
    shown = page.evaluate(LOADED)
    assert len(shown) == count
    for image in shown:
        (width, height), (declared_width, declared_height) = image["natural"], image["declared"]
        assert image["complete"] and width > 0, image
        assert abs(width / height - declared_width / declared_height) < 0.01, image
        assert abs(image["shown"][0] / image["shown"][1] - width / height) < 0.02, image
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


@pytest.mark.parametrize("width", [320, 375, 600])
def test_hosted_pictures_load_in_a_browser_as_the_mail_declares_them(
        site: Site, web: FeedServer, page: Page, artifacts: Path, width: int) -> None:
    hosting_pictures(site, web)
    # A wide logo: 400 px at 1×, so on a phone it must shrink in proportion.
    web.serve("/brand/logo.jpg", picture((3000, 300)), content_type=JPEG)
    site.logo = web.url("/brand/logo.jpg")
    site.write()
    assert digest("collect").exit_code == 0
    assert digest("render", "--out", "next.html").exit_code == 0
    web.remove("/p/missing.jpg")  # no longer even answers: its card keeps its size
    with serving(web_app.app(config.load(site.config))) as base:
        # The mail as a reader's client fetches it, from where `digest serve` answers.
        markup = Path("next.html").read_text().replace("https://news.example.com", base)
        edition = site.root / "served.html"
        edition.write_text(markup)
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(edition.as_uri())
        page.wait_for_load_state("networkidle")
        shown = page.evaluate(LOADED)
        assert len(shown) == 6
        hosted = [image for image in shown if image["complete"] and image["natural"][0]]
        assert len(hosted) == 5
        for image in shown:
            declared_width, declared_height = image["declared"]
            # Loaded or not, each picture takes the room it declares (within a pixel's
            # rounding: relative, as a logo is ten times wider than high).
            assert abs(image["shown"][0] / image["shown"][1]
                       / (declared_width / declared_height) - 1) < 0.02, image
        for image in hosted:
            natural_width, natural_height = image["natural"]
            assert abs(natural_width / natural_height
                       - image["declared"][0] / image["declared"][1]) < 0.01, image
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        page.screenshot(path=str(artifacts / f"hosted-{width}.png"), full_page=True)


def test_the_demo_shows_its_pictures_with_no_network(site: Site, page: Page,
                                                     artifacts: Path) -> None:
    assert digest("demo").exit_code == 0
    edition = site.root / "digest-demo" / "edition-1.html"
    tags = images_in(edition.read_text(encoding="utf-8"))
    assert len(tags) == 6 and all(tag["src"].startswith("file://") for tag in tags)
    page.set_viewport_size({"width": 375, "height": 900})
    page.goto(edition.as_uri())  # every http(s) request past loopback fails in these tests
    assert_loaded_as_declared(page, 6)
    page.screenshot(path=str(artifacts / "demo-375.png"), full_page=True)


@pytest.mark.parametrize("public, host, hosted", [
    ("https://news.example.com", None, True), ("http://127.0.0.1:8080", None, False),
    ("http://127.0.0.1:8080", True, True), ("https://news.example.com", False, False)])
def test_pictures_are_hosted_by_default_behind_https(
        tmp_path: Path, public: str, host: bool | None, hosted: bool) -> None:
    path = tmp_path / "digest.toml"
    path.write_text(f"[newsletter]\npublic_url = {public!r}\n"
                    + ("" if host is None else f"[images]\nhost = {str(host).lower()}\n"))
    settings = config.load(path)
    assert settings.hosting is hosted
    assert settings.images_url == f"{public}/img/"


@pytest.mark.parametrize("table, words", [
    ("[images]\nurl = 'https://cdn.example.com/img'\n",
     "images.url must be an absolute http(s) URL ending in \"/\""),
    ("[images]\nurl = 'file:///srv/img/'\n", "images.url must be an absolute http(s) URL"),
    ("[images]\nformat = 'avif'\n", "images.format must be one of jpeg, webp, not 'avif'"),
    ("[images]\nmax_bytes = 0\n", "images.max_bytes must be at least 1"),
    ("[[feeds]]\nurl = 'https://example.com/feed.xml'\nenrich = 'no'\n",
     "feeds[1].enrich must be true or false, not 'no'"),
])
def test_a_wrong_images_setting_is_one_line_naming_it(tmp_path: Path, table: str,
                                                      words: str) -> None:
    (tmp_path / "digest.toml").write_text(table)
    result = digest("--config", str(tmp_path / "digest.toml"), "status")
    assert result.exit_code == 2
    assert words in result.output and "Traceback" not in result.output
