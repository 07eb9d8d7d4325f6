# ruff: noqa: E501  (the table holds source lines as they are)
"""Each image-input guard removed in turn: the test that covers it must then fail.

    .venv/bin/python tools/image_guards_check.py [NAME-FRAGMENT ...]

Patches one source file at a time, runs the guard's test, and restores the file (also when
interrupted). Prints one line per guard; exits 1 when a test still passes without its guard.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

R = str(Path(__file__).resolve().parent.parent)
MUTATIONS = [
    ("private/loopback address check", "worker/images/policy.py",
     "        return is_public(address)\n", "        return True\n",
     "tests/worker/images/test_images_fetch.py::test_loopback_refused_without_the_network_setting"),
    ("URL host allow-list", "worker/images/policy.py",
     "        if not any(p.matches(scheme, host, port) for p in self.url_patterns):",
     "        if False:",
     "tests/worker/images/test_images_fetch.py::test_host_not_on_the_allow_list_refused"),
    ("redirects re-checked", "worker/images/http_fetch.py",
     "            target = self.policy.check_url(url)\n",
     "            target = self.policy.check_url(url) if _ == 0 else _unchecked(url)\n",
     "tests/worker/images/test_images_fetch.py::test_redirect_to_a_disallowed_host_refused"),
    ("connect to the checked address (no second resolution)", "worker/images/http_fetch.py",
     "        self.sock = socket.create_connection((self._address, self.port), self.timeout)",
     "        self.sock = socket.create_connection((self.host, self.port), self.timeout)",
     "tests/worker/images/test_images_fetch.py::test_the_name_is_resolved_once_and_the_checked_address_connected_to"),
    ("TLS verified against the host name", "worker/images/http_fetch.py",
     "        self._tls = tls or ssl.create_default_context()",
     "        self._tls = tls or ssl.create_default_context()\n        self._tls.check_hostname = False",
     "tests/worker/images/test_images_https.py::test_a_certificate_for_another_name_is_refused_for_good"),
    ("every resolved address checked", "worker/images/policy.py",
     "        refused = [a for a in parsed if not self.address_allowed(a)]",
     "        refused = [a for a in parsed[:1] if not self.address_allowed(a)]",
     "tests/worker/images/test_images_fetch.py::test_a_name_with_any_refused_address_is_refused"),
    ("S3 bucket allow-list", "worker/images/s3_fetch.py",
     "        self.policy.check_bucket(bucket)\n", "",
     "tests/worker/images/test_images_fetch.py::test_s3_reads_allowed_buckets_only"),
    ("byte limit (URL)", "worker/images/http_fetch.py",
     "            if size > self.max_bytes:", "            if False:",
     "tests/worker/images/test_images_fetch.py::test_byte_limit"),
    ("byte limit (URL, declared Content-Length)", "worker/images/http_fetch.py",
     "            if declared and declared.isdigit() and int(declared) > self.max_bytes:",
     "            if False:",
     "tests/worker/images/test_images_fetch.py::test_byte_limit"),
    ("byte limit (S3, both the ContentLength check and the bounded read)", "worker/images/s3_fetch.py",
     "                if length > self.max_bytes:", "                if False:",
     "tests/worker/images/test_images_fetch.py::test_s3_missing_key_is_final_and_too_large_refused"),
    ("pixel limit (header check and Pillow's guard)", "worker/images/decode.py",
     "    Image.MAX_IMAGE_PIXELS = max_pixels", "    Image.MAX_IMAGE_PIXELS = None",
     "tests/worker/images/test_images_malformed.py"),
    ("format allow-list", "worker/images/decode.py",
     "image = Image.open(io.BytesIO(data), formats=FORMATS)", "image = Image.open(io.BytesIO(data))",
     "tests/worker/images/test_images_malformed.py::test_formats_outside_the_list_are_refused"),
    ("truncated files refused", "worker/images/decode.py",
     "            image.load()\n", "            __import__('PIL.ImageFile').ImageFile.LOAD_TRUNCATED_IMAGES = True; image.load()\n",
     "tests/worker/images/test_images_malformed.py"),
    ("text tasks refuse image objects", "worker/contract/request.py",
     "            if not isinstance(value, str):\n                kind", "            if False:\n                kind",
     "tests/worker/images/test_images_contract.py"),
    ("a request with one bad image fails whole (its good ones never run)", "worker/images/loader.py",
     '            return ImageRejected(exc.error_type, f"input {index}: {exc}")', "            continue",
     "tests/worker/images/test_images_malformed.py"),
    ("5xx transient, not final", "worker/images/http_fetch.py",
     "            if status >= 500 or status == 429:", "            if False:",
     "tests/worker/images/test_images_fetch.py::test_status_codes_final_or_transient"),
]
EXTRA = {
    "byte limit (S3, both the ContentLength check and the bounded read)": [
        ("        if len(data) > self.max_bytes:", "        if False:"),
        ("data: bytes = body.read(self.max_bytes + 1)", "data: bytes = body.read()"),
    ],
    "pixel limit (header check and Pillow's guard)": [
        ("    if width * height > max_pixels:", "    if False:"),
    ],
}
ONLY = sys.argv[1:]
survivors = 0
for name, path, old, new, test in MUTATIONS:
    if ONLY and not any(o in name for o in ONLY):
        continue
    full = f"{R}/{path}"
    original = Path(full).read_text()
    assert old in original, (name, old)
    patched = original.replace(old, new)
    for extra_old, extra_new in EXTRA.get(name, []):
        assert extra_old in patched, (name, extra_old)
        patched = patched.replace(extra_old, extra_new)
    if "_unchecked" in new:
        patched += ("\n\ndef _unchecked(url):\n    from urllib.parse import urlsplit\n    p = urlsplit(url)\n"
                    "    return Target(p.scheme, p.hostname, p.port or 80, p.path or '/')\n")
    Path(full).write_text(patched)
    try:
        done = subprocess.run([f"{R}/.venv/bin/pytest", "-q", "-x", "-p", "no:cacheprovider", test],
                              cwd=R, env={**os.environ, "PYTHONPATH": R},
                              capture_output=True, text=True, timeout=300)
        verdict = "FAILS without the guard (good)" if done.returncode != 0 else "STILL PASSES (bad)"
        survivors += done.returncode == 0
        print(f"{name}: {verdict}", flush=True)
    finally:
        Path(full).write_text(original)
sys.exit(1 if survivors else 0)
