"""Open every page of the built docs site in headless Chromium (Debian's package): each page
loads, has a heading, and no internal link or anchor is broken.

    python tools/docs_check.py [site]        # after `mkdocs build` (make docs-check does both)

The site is served on loopback and each page's DOM is read after Chromium has loaded it (its
scripts ran), so what is checked is what a reader's browser shows. Exit code 1 lists every
problem; 2 when no Chromium can be found (GPUQUEUE_REQUIRE_CHROMIUM=1, as CI sets, makes that
an error rather than a skip).
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


class Page(HTMLParser):
    """What a check needs of one rendered page: its headings, element ids and links."""

    def __init__(self) -> None:
        super().__init__()
        self.h1: list[str] = []
        self.ids: set[str] = set()
        self.links: list[str] = []
        self._in_h1 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(str(values["id"]))
        if tag == "a" and values.get("href"):
            self.links.append(str(values["href"]))
        if tag == "h1":
            self._in_h1 = True
            self.h1.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "h1":
            self._in_h1 = False

    def handle_data(self, data: str) -> None:
        if self._in_h1:
            self.h1[-1] += data


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(site: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def dump_dom(chromium: str, url: str, profile: str) -> str:
    done = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True, text=True, timeout=90,
    )
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr.strip()[-300:]}")
    return done.stdout


def page_path(site: Path, base: str, url: str) -> Path | None:
    """The file a site URL serves, or None when it is not this site's."""
    if not url.startswith(base):
        return None
    rel = urlsplit(url).path.lstrip("/")
    target = site / rel
    return target / "index.html" if rel == "" or rel.endswith("/") or target.is_dir() else target


def check(site: Path, chromium: str) -> list[str]:
    pages = sorted(p for p in site.rglob("*.html") if p.name != "404.html")
    server, base = serve(site)
    problems: list[str] = []
    seen: dict[Path, Page] = {}
    try:
        with tempfile.TemporaryDirectory() as profile:
            for path in pages:
                url = urljoin(base, path.relative_to(site).as_posix())
                try:
                    dom = dump_dom(chromium, url, profile)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    problems.append(f"{url}: did not load: {exc}")
                    continue
                page = Page()
                page.feed(dom)
                seen[path] = page
                if not any(text.strip() for text in page.h1):
                    problems.append(f"{url}: no heading (h1)")
    finally:
        server.shutdown()
    for path, page in seen.items():
        url = urljoin(base, path.relative_to(site).as_posix())
        for href in page.links:
            target_url, fragment = urldefrag(urljoin(url, href))
            target = page_path(site, base, target_url)
            if target is None:
                continue  # another site
            if not target.is_file():
                problems.append(f"{url}: broken link {href!r}")
            elif fragment and target in seen and fragment not in seen[target].ids:
                problems.append(f"{url}: link {href!r} names no anchor #{fragment}")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    site = Path(args[0] if args else "site")
    chromium = find_chromium()
    if chromium is None:
        message = ("docs-check: no Chromium (Debian: apt-get install chromium); the rendered site "
                   "was not opened")
        print(message, file=sys.stderr)
        return 2 if os.environ.get("GPUQUEUE_REQUIRE_CHROMIUM") == "1" else 0
    if not (site / "index.html").is_file():
        print(f"docs-check: no built site at {site} (run mkdocs build)", file=sys.stderr)
        return 1
    problems = check(site, chromium)
    for problem in problems:
        print(f"docs-check: {problem}", file=sys.stderr)
    pages = sum(1 for p in site.rglob("*.html") if p.name != "404.html")
    print(f"docs-check: {pages} pages opened in {Path(chromium).name}, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
