"""Feeds written by hand, one per case the wild web throws at us, each with the cards it must
make. Served over loopback HTTP by test_cards.py; bodies are bytes so encodings are exact."""

from __future__ import annotations

import json
from dataclasses import dataclass

RSS = "application/rss+xml; charset=utf-8"
ATOM = "application/atom+xml"
XML = "application/xml"
JSON = "application/feed+json"


@dataclass(frozen=True)
class Fixture:
    name: str
    body: bytes
    content_type: str = RSS
    path: str = ""  # served at /<path or name>.xml


def rss(items: str, extra_ns: str = "", encoding: str = "utf-8") -> bytes:
    return (f'<?xml version="1.0" encoding="{encoding}"?>'
            f'<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/" '
            f'xmlns:content="http://purl.org/rss/1.0/modules/content/"{extra_ns}>'
            f"<channel><title>T</title><link>https://example.com/</link>{items}"
            "</channel></rss>").encode(encoding)


HOSTILE = (
    '<p onclick="steal()">Read <a href="javascript:alert(1)">this</a> now.</p>'
    "<script>alert('x')</script><style>body{display:none}</style>"
    '<iframe src="https://evil.example/"></iframe><form action="https://evil.example/">'
    '<input name="password"></form><svg onload="alert(2)"><circle r="1"/></svg>'
    '<img src="x" onerror="alert(3)"><object data="evil.swf"></object>'
    '<a href="vbscript:msgbox(1)">vb</a><a href="data:text/html,<script>alert(4)</script>">d</a>'
    '<meta http-equiv="refresh" content="0;url=https://evil.example/">'
    '<link rel="stylesheet" href="https://evil.example/x.css">End.'
)

FIXTURES = [
    Fixture("rss20", rss(
        "<item><title>Harbour &amp; quay</title><link>https://example.com/harbour</link>"
        "<guid>h-1</guid><description>&lt;p&gt;Boats &lt;b&gt;return&lt;/b&gt; at "
        "dawn.&lt;/p&gt;&lt;p&gt;Crowds cheer.&lt;/p&gt;</description>"
        "<pubDate>Thu, 26 Nov 2026 09:00:00 +0100</pubDate>"
        '<media:thumbnail url="https://img.example.com/h.jpg" width="640" height="360"/>'
        "</item>")),
    Fixture("rss091", b'<?xml version="1.0"?><rss version="0.91"><channel><title>T</title>'
            b"<link>https://example.com/</link><language>en</language><item>"
            b"<title>Old school</title><link>https://example.com/old</link>"
            b"<description>Plain words.</description></item></channel></rss>"),
    Fixture("rss10", b'<?xml version="1.0"?><rdf:RDF '
            b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
            b'xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">'
            b'<channel rdf:about="https://example.com/"><title>T</title>'
            b"<link>https://example.com/</link><description>d</description></channel>"
            b'<item rdf:about="https://example.com/rdf"><title>Resource</title>'
            b"<link>https://example.com/rdf</link><description>Described.</description>"
            b"<dc:date>2026-11-25T08:30:00Z</dc:date></item></rdf:RDF>", XML),
    Fixture("atom10", b'<?xml version="1.0" encoding="utf-8"?>'
            b'<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://example.org/blog/">'
            b"<title>T</title><id>urn:feed</id><updated>2026-11-26T10:00:00Z</updated>"
            b'<entry xml:base="posts/"><title type="html">&lt;em&gt;Relative&lt;/em&gt; '
            b"paths</title><id>urn:entry:1</id>"
            b'<link rel="alternate" href="one.html"/><updated>2026-11-26T10:00:00Z</updated>'
            b'<content type="html">&lt;p&gt;See &lt;img src="../img/one.png" '
            b'alt="A dial" width="300" height="200"&gt; here.&lt;/p&gt;</content></entry>'
            b"</feed>", ATOM),
    Fixture("atom03", b'<?xml version="1.0"?><feed version="0.3" '
            b'xmlns="http://purl.org/atom/ns#"><title>T</title>'
            b'<link rel="alternate" type="text/html" href="https://example.com/"/>'
            b"<modified>2026-11-20T00:00:00Z</modified><entry><title>Early Atom</title>"
            b'<link rel="alternate" type="text/html" href="https://example.com/a03"/>'
            b"<id>tag:example.com,2026:a03</id><issued>2026-11-20T00:00:00Z</issued>"
            b"<modified>2026-11-20T00:00:00Z</modified>"
            b"<summary>Summed up.</summary></entry></feed>", ATOM),
    Fixture("json11", json.dumps({
        "version": "https://jsonfeed.org/version/1.1", "title": "T",
        "home_page_url": "https://example.com/", "items": [
            {"id": "j1", "url": "https://example.com/j1", "title": "Jason",
             "content_html": "<p>Hello <b>JSON</b> world.</p>",
             "date_published": "2026-11-24T12:00:00+02:00",
             "image": "https://img.example.com/j1.png"},
            {"id": 2, "url": "/j2", "content_text": "No title here, only some text <b>.",
             "attachments": [{"url": "https://img.example.com/j2.jpg",
                              "mime_type": "image/jpeg"}]},
        ]}).encode(), JSON),
    Fixture("json10", json.dumps({
        "version": "https://jsonfeed.org/version/1", "title": "T", "items": [
            {"id": "k1", "url": "https://example.com/k1", "title": "Kay",
             "summary": "Short & sweet.", "content_html": "<p>Long body</p>",
             "date_modified": "2026-11-23T00:00:00Z"}]}).encode(), "application/json"),
    Fixture("bozo", b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
            b"<item><title>Salt & pepper</title><link>https://example.com/salt</link>"
            b"<description>Seasoned <b>well</description></item></channel></rss>"),
    Fixture("latin1", rss("<item><title>Café crème</title><link>https://example.com/cafe</link>"
                          "<description>Naïve façade</description></item>",
                          encoding="iso-8859-1"), XML),
    # The server says UTF-8; the bytes and the XML declaration say windows-1252.
    Fixture("mislabelled", rss("<item><title>Smart “quotes”</title>"
                               "<link>https://example.com/quotes</link></item>",
                               encoding="windows-1252"), "text/xml; charset=utf-8"),
    Fixture("bom", b"\xef\xbb\xbf" + rss("<item><title>Byte order ✓</title>"
                                        "<link>https://example.com/bom</link></item>"), XML),
    Fixture("cdata", rss("<item><title><![CDATA[Tom & Jerry <3]]></title>"
                         "<link>https://example.com/tj</link><description><![CDATA["
                         "<p>Caf&eacute; &amp; cr&egrave;me &#8212; &#x1F600; &nbsp;done</p>"
                         "]]></description></item>")),
    Fixture("world", rss(
        "<item><title>東京の天気</title><link>https://example.jp/tenki</link><guid>jp</guid>"
        "<description>" + "今日は晴れです。" * 40 + "</description></item>"
        "<item><title>שלום עולם</title><link>https://example.il/shalom</link><guid>he</guid>"
        "<description>טקסט בעברית</description></item>"
        "<item><title>Party 🎉👩‍👩‍👧</title><link>https://example.com/emoji</link>"
        "<guid>emoji</guid><description>Fun 🎈</description></item>")),
    Fixture("identity", rss(
        # No guid: the link is the key. No guid and no link: a hash of title, date, link.
        "<item><title>Linked only</title><link>https://example.com/linked</link></item>"
        "<item><title>Nothing but a title</title>"
        "<pubDate>Wed, 25 Nov 2026 10:00:00 GMT</pubDate></item>"
        # Duplicate guids: one entry, the first listed.
        "<item><title>First of twins</title><link>https://example.com/twin-a</link>"
        "<guid>twin</guid></item>"
        "<item><title>Second of twins</title><link>https://example.com/twin-b</link>"
        "<guid>twin</guid></item>"
        # Shared link, different guids: two entries.
        "<item><title>Home one</title><link>https://example.com/</link><guid>home-1</guid>"
        "</item><item><title>Home two</title><link>https://example.com/</link>"
        "<guid>home-2</guid></item>")),
    Fixture("images", rss(
        '<item><title>Content image</title><link>https://example.com/i1</link><guid>i1</guid>'
        '<media:content url="https://img.example.com/video.mp4" medium="video"/>'
        '<media:content url="https://img.example.com/i1.jpg" type="image/jpeg" width="800"/>'
        "</item>"
        '<item><title>Enclosure</title><link>https://example.com/i2</link><guid>i2</guid>'
        '<enclosure url="https://img.example.com/i2.png" type="image/png" length="1"/>'
        "</item>"
        '<item><title>Inline</title><link>https://example.com/i3</link><guid>i3</guid>'
        '<description>&lt;img src="https://t.example.com/p.gif" width="1" height="1"&gt;'
        '&lt;img src="data:image/png;base64,AAAA"&gt;'
        '&lt;img src="/pics/i3.webp" alt="Three &amp;amp; more"&gt;Text.</description>'
        "</item>"
        '<item><title>Script image</title><link>https://example.com/i4</link><guid>i4</guid>'
        '<media:thumbnail url="javascript:alert(1)"/></item>')),
    Fixture("hostile", rss(
        '<item><title>&lt;script&gt;alert("t")&lt;/script&gt;Click &lt;b '
        'onmouseover="x()"&gt;me&lt;/b&gt;</title>'
        "<link>javascript:alert('link')</link><guid>bad-1</guid>"
        f"<description>{HOSTILE.replace('&', '&amp;').replace('<', '&lt;')}</description>"
        "</item>"
        '<item><title>Style attack</title><link>https://example.com/style"onclick="x</link>'
        "<guid>bad-2</guid>"
        f"<content:encoded><![CDATA[{HOSTILE}]]></content:encoded></item>")),
    Fixture("wordpress", rss(
        "<item><title>WP post</title><link>https://blog.example.com/wp</link><guid>wp</guid>"
        "<description><![CDATA[<p>Real words here. [&#8230;]</p>"
        '<p>The post <a href="https://blog.example.com/wp">WP post</a> appeared first on '
        '<a href="https://blog.example.com">Example Blog</a>.</p>]]></description></item>'
        "<item><title></title><link>https://blog.example.com/untitled</link><guid>wp2</guid>"
        "<description>An entry without a headline still reads well enough to be listed "
        "among the others</description></item>")),
    Fixture("dates", rss(
        "<item><title>From the future</title><link>https://example.com/future</link>"
        "<pubDate>Sat, 01 Jan 2099 00:00:00 GMT</pubDate></item>"
        "<item><title>Updated only</title><link>https://example.com/upd</link>"
        "<atom:updated xmlns:atom=\"http://www.w3.org/2005/Atom\">2026-11-22T07:00:00Z"
        "</atom:updated></item>"
        "<item><title>Undated</title><link>https://example.com/undated</link></item>")),
]
