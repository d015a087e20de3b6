#!/usr/bin/env python3
"""A small, standards-following Python package index for tests (a source index).

Usage:
  scripts/pyindex.py --dir WHEELDIR --listen 127.0.0.1:PORT
                     [--no-json] [--no-metadata] [--yank FILE]... [--corrupt FILE]...
                     [--watch-stdin] [--quiet]

Serves every *.whl, *.tar.gz and *.zip in WHEELDIR (read once at start):
  GET /simple/                 the project list
  GET /simple/<project>/       the project's files; a name that is not normalised
                               (PEP 503) is redirected (301) to the normalised URL;
                               an unknown project is 404
  GET /files/<filename>        the file, with Content-Length and Range (HEAD too)
  GET /files/<filename>.metadata   the wheel's METADATA (PEP 658)
Content negotiation (PEP 691): PEP 691 JSON (`application/vnd.pypi.simple.v1+json`)
when the Accept header prefers it, else PEP 503 HTML: `text/html`, or
`application/vnd.pypi.simple.v1+html` when that is what was asked for. HTML links carry
`#sha256=` fragments, `data-requires-python` (HTML-escaped), `data-yanked`,
`data-core-metadata` and `data-dist-info-metadata` (PEP 658/714); HTML file links are
relative (`../../files/F`), JSON ones absolute (`http://HOST/files/F`), so a client must
handle both. JSON is API version 1.1 (`versions`, `size`).

  --no-json        an HTML-only index (a JSON request gets HTML)
  --no-metadata    no PEP 658 metadata: no data-core-metadata, `.metadata` is 404
  --yank FILE      list FILE as yanked (reason "yanked by pyindex.py")
  --corrupt FILE   serve different bytes (same length, still a valid wheel) for FILE
                   than the hash the index lists
  --watch-stdin    exit when standard input reaches end of file (the parent is gone)
  --quiet          do not log requests on stderr

Prints `listening on http://HOST:PORT` on stdout once it accepts connections (PORT 0
picks a free port), and exits on SIGTERM or SIGINT. Python 3 stdlib only.
"""

import argparse
import hashlib
import html
import json
import os
import re
import signal
import sys
import tarfile
import threading
import zipfile
from email.parser import HeaderParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote, urlsplit

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_V1_TYPE = "application/vnd.pypi.simple.v1+html"
HTML_TYPE = "text/html"
YANK_REASON = "yanked by pyindex.py"


def normalize(name):
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


class Dist:
    """One file of the index."""

    def __init__(self, path, corrupt, yanked, with_metadata):
        self.filename = os.path.basename(path)
        with open(path, "rb") as f:
            self.data = f.read()
        self.sha256 = hashlib.sha256(self.data).hexdigest()
        self.metadata = read_metadata(path, self.filename)
        headers = HeaderParser().parsestr(self.metadata.decode("utf-8"))
        self.project = headers.get("Name") or guess_name(self.filename)
        self.version = headers.get("Version") or ""
        self.requires_python = headers.get("Requires-Python")
        self.is_wheel = self.filename.endswith(".whl")
        self.yanked = yanked
        # PEP 658 only describes wheels' metadata.
        self.metadata_sha256 = (
            hashlib.sha256(self.metadata).hexdigest() if with_metadata and self.is_wheel else None
        )
        self.served = self.data
        if corrupt:
            self.served = corrupted(self.data)


def corrupted(data):
    """Same length, different bytes, so the hash the index lists no longer matches.

    For a zip (a wheel) the modification time in the first local header changes: the
    file stays a valid, installable wheel, and only a hash check can tell.
    """
    if data.startswith(b"PK\x03\x04") and len(data) > 14:
        return data[:10] + bytes([data[10] ^ 0x01]) + data[11:]
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


def guess_name(filename):
    return filename.split("-")[0]


def read_metadata(path, filename):
    if filename.endswith(".whl"):
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
            if len(names) != 1:
                sys.exit(f"pyindex: {filename}: want exactly one .dist-info/METADATA")
            return zf.read(names[0])
    if filename.endswith(".tar.gz"):
        with tarfile.open(path) as tf:
            for member in tf.getmembers():
                if re.fullmatch(r"[^/]+/PKG-INFO", member.name):
                    return tf.extractfile(member).read()
        sys.exit(f"pyindex: {filename}: no PKG-INFO")
    if filename.endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            for n in zf.namelist():
                if re.fullmatch(r"[^/]+/PKG-INFO", n):
                    return zf.read(n)
        sys.exit(f"pyindex: {filename}: no PKG-INFO")
    raise ValueError(filename)


def load(args):
    projects = {}
    wanted = set(args.yank) | set(args.corrupt)
    found = set()
    for name in sorted(os.listdir(args.dir)):
        if not name.endswith((".whl", ".tar.gz", ".zip")):
            continue
        found.add(name)
        d = Dist(
            os.path.join(args.dir, name),
            corrupt=name in args.corrupt,
            yanked=name in args.yank,
            with_metadata=not args.no_metadata,
        )
        projects.setdefault(normalize(d.project), []).append(d)
    missing = wanted - found
    if missing:
        sys.exit(f"pyindex: no such file in {args.dir}: {', '.join(sorted(missing))}")
    return projects


def parse_accept(header):
    """[(media type, q)] in the order given."""
    out = []
    for part in (header or "").split(","):
        fields = [f.strip() for f in part.split(";")]
        if not fields[0]:
            continue
        q = 1.0
        for f in fields[1:]:
            if f.lower().startswith("q="):
                try:
                    q = float(f[2:])
                except ValueError:
                    q = 0.0
        # PEP 691: `latest` is an alias of the newest version, which is v1.
        out.append((fields[0].lower().replace(".latest+", ".v1+"), q))
    return out


def negotiate(accept, json_enabled):
    """The Content-Type to answer with, or None when nothing acceptable is offered.

    The highest q wins; at equal q an offer named exactly beats one matched by a
    wildcard, and plain HTML is preferred (so `*/*` or no Accept header gets text/html).
    """
    offers = [HTML_TYPE, HTML_V1_TYPE] + ([JSON_TYPE] if json_enabled else [])
    prefs = parse_accept(accept)
    if not prefs:
        return HTML_TYPE

    def rank(offer):
        best = None
        for media, q in prefs:
            if media == offer:
                score = (q, 2)
            elif media == offer.split("/")[0] + "/*":
                score = (q, 1)
            elif media == "*/*":
                score = (q, 0)
            else:
                continue
            best = score if best is None else max(best, score)
        return best

    choice, choice_rank = None, (0.0, -1)
    for offer in offers:
        r = rank(offer)
        if r is not None and r[0] > 0 and r > choice_rank:
            choice, choice_rank = offer, r
    if choice is None and not json_enabled and any(m == JSON_TYPE for m, _ in prefs):
        # A legacy index answers HTML whatever is asked.
        return HTML_TYPE
    return choice


class Index:
    def __init__(self, args):
        self.args = args
        self.projects = load(args)
        self.files = {d.filename: d for ds in self.projects.values() for d in ds}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: with Nagle's algorithm on, each
    # response after the first on a kept-alive connection waits for the client's delayed
    # ACK (40 ms on Linux), which no real index or hub does.
    disable_nagle_algorithm = True
    server_version = "pyindex/1.0"
    index = None  # set by main()
    quiet = False

    def log_message(self, fmt, *args):
        if not self.quiet:
            sys.stderr.write(
                "pyindex: %s [Accept: %s]\n" % (fmt % args, self.headers.get("Accept", ""))
            )

    def do_HEAD(self):
        self.handle_request(head=True)

    def do_GET(self):
        self.handle_request(head=False)

    def send(self, status, body, content_type, extra=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if not self.head:
            self.wfile.write(body)

    def not_found(self, what):
        self.send(404, f"not found: {what}\n".encode(), "text/plain; charset=utf-8")

    def redirect(self, location):
        self.send(
            301,
            f"moved to {location}\n".encode(),
            "text/plain; charset=utf-8",
            [("Location", location)],
        )

    def handle_request(self, head):
        self.head = head
        path = unquote(urlsplit(self.path).path)
        try:
            if path in ("/simple", "/simple/"):
                if path == "/simple":
                    return self.redirect("/simple/")
                return self.root()
            m = re.fullmatch(r"/simple/([^/]+)(/?)", path)
            if m:
                name, slash = m.groups()
                if normalize(name) != name or not slash:
                    if normalize(name) not in self.index.projects:
                        return self.not_found(name)
                    return self.redirect(f"/simple/{normalize(name)}/")
                return self.project(name)
            m = re.fullmatch(r"/files/([^/]+)", path)
            if m:
                return self.file(m.group(1))
            return self.not_found(path)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def content_type(self):
        ctype = negotiate(self.headers.get("Accept"), not self.index.args.no_json)
        if ctype is None:
            self.send(406, b"not acceptable\n", "text/plain; charset=utf-8")
        return ctype

    def base_url(self):
        return f"http://{self.headers.get('Host') or '%s:%d' % self.server.server_address}"

    def root(self):
        ctype = self.content_type()
        if ctype is None:
            return
        names = sorted(self.index.projects)
        if ctype == JSON_TYPE:
            body = json.dumps(
                {"meta": {"api-version": "1.1"}, "projects": [{"name": n} for n in names]},
                indent=1,
            ).encode()
        else:
            links = "".join(f'    <a href="{quote(n)}/">{html.escape(n)}</a>\n' for n in names)
            body = (
                "<!DOCTYPE html>\n<html>\n  <head>\n"
                '    <meta name="pypi:repository-version" content="1.1">\n'
                "    <title>Simple index</title>\n  </head>\n  <body>\n"
                f"{links}  </body>\n</html>\n"
            ).encode()
        self.send(200, body, ctype, [("Vary", "Accept")])

    def project(self, name):
        dists = self.index.projects.get(name)
        if dists is None:
            return self.not_found(name)
        ctype = self.content_type()
        if ctype is None:
            return
        if ctype == JSON_TYPE:
            files = []
            for d in dists:
                entry = {
                    "filename": d.filename,
                    "url": f"{self.base_url()}/files/{quote(d.filename)}",
                    "hashes": {"sha256": d.sha256},
                    "requires-python": d.requires_python,
                    "size": len(d.data),
                    "yanked": YANK_REASON if d.yanked else False,
                }
                if d.metadata_sha256:
                    entry["core-metadata"] = {"sha256": d.metadata_sha256}
                    entry["dist-info-metadata"] = {"sha256": d.metadata_sha256}
                else:
                    entry["core-metadata"] = False
                    entry["dist-info-metadata"] = False
                files.append(entry)
            versions = sorted({d.version for d in dists if d.version})
            body = json.dumps(
                {
                    "meta": {"api-version": "1.1"},
                    "name": name,
                    "files": files,
                    "versions": versions,
                },
                indent=1,
            ).encode()
        else:
            links = []
            for d in dists:
                attrs = [f'href="../../files/{quote(d.filename)}#sha256={d.sha256}"']
                if d.requires_python:
                    attrs.append(f'data-requires-python="{html.escape(d.requires_python)}"')
                if d.yanked:
                    attrs.append(f'data-yanked="{html.escape(YANK_REASON)}"')
                if d.metadata_sha256:
                    attrs.append(f'data-core-metadata="sha256={d.metadata_sha256}"')
                    attrs.append(f'data-dist-info-metadata="sha256={d.metadata_sha256}"')
                links.append(f"    <a {' '.join(attrs)}>{html.escape(d.filename)}</a><br/>\n")
            body = (
                "<!DOCTYPE html>\n<html>\n  <head>\n"
                '    <meta name="pypi:repository-version" content="1.1">\n'
                f"    <title>Links for {html.escape(name)}</title>\n  </head>\n  <body>\n"
                f"    <h1>Links for {html.escape(name)}</h1>\n"
                f"{''.join(links)}  </body>\n</html>\n"
            ).encode()
        self.send(200, body, ctype, [("Vary", "Accept")])

    def file(self, filename):
        if filename.endswith(".metadata"):
            d = self.index.files.get(filename[: -len(".metadata")])
            if d is None or d.metadata_sha256 is None:
                return self.not_found(filename)
            return self.send(200, d.metadata, "application/octet-stream")
        d = self.index.files.get(filename)
        if d is None:
            return self.not_found(filename)
        data = d.served
        ctype = "application/octet-stream" if d.is_wheel else "application/x-tar"
        rng = self.headers.get("Range")
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", (rng or "").strip())
        if rng and m and (m.group(1) or m.group(2)):
            size = len(data)
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:
                start = max(size - int(m.group(2)), 0)
                end = size - 1
            if start >= size or start > end:
                return self.send(
                    416, b"", "text/plain", [("Content-Range", f"bytes */{size}")]
                )
            return self.send(
                206,
                data[start : end + 1],
                ctype,
                [("Content-Range", f"bytes {start}-{end}/{size}"), ("Accept-Ranges", "bytes")],
            )
        self.send(200, data, ctype, [("Accept-Ranges", "bytes")])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT")
    ap.add_argument("--no-json", action="store_true")
    ap.add_argument("--no-metadata", action="store_true")
    ap.add_argument("--yank", action="append", default=[], metavar="FILE")
    ap.add_argument("--corrupt", action="append", default=[], metavar="FILE")
    ap.add_argument("--watch-stdin", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()

    host, _, port = args.listen.rpartition(":")
    Handler.index = Index(args)
    Handler.quiet = args.quiet
    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True

    def stop(*_):
        # shutdown() waits for serve_forever(), so call it from another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.watch_stdin:

        def watch():
            while sys.stdin.buffer.read(4096):
                pass
            stop()

        threading.Thread(target=watch, daemon=True).start()

    bound_host, bound_port = server.server_address[:2]
    print(f"listening on http://{bound_host}:{bound_port}", flush=True)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
