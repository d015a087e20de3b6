#!/usr/bin/env python3
"""A stand-in for the Hugging Face Hub, for tests: answers as the real hub does, for
repositories that are directory trees on disk.

Usage:
  scripts/fakehub.py [--listen 127.0.0.1:PORT] [--cdn-listen 127.0.0.1:PORT2]
                     --repo org/name=DIR [--repo ...] [--dataset org/data=DIR ...]
                     [--branch main]... [--tag v1.0]... [--page-size N]
                     [--corrupt PATH]... [--cut PATH]... [--token TOKEN]
                     [--watch-stdin] [--quiet]

Each repository is one commit holding every file under DIR (read once at start). Its
commit sha is a stable, fake 40-hex sha1 of the repo type, id, and every path with the
sha256 of its bytes; every --branch (default: main) and every --tag point at it. A file is
stored with Git LFS when its suffix is one the hub's default .gitattributes tracks
(.safetensors, .bin, .gguf, .pt, .parquet, ...) or it is 10 MiB or more: its tree entry
then carries `lfs: {oid: <sha256>, size, pointerSize}` and an `oid` that is the git blob
sha1 of its LFS pointer. Other files are plain git blobs: oid = sha1(b"blob %d\\0" + data).

Hub (--listen), for models (`/api/models/<id>`, `/<id>/...`) and datasets
(`/api/datasets/<id>`, `/datasets/<id>/...`):
  GET  /api/models/<id>                      repo info at the first branch
  GET  /api/models/<id>/revision/<rev>       repo info: id, modelId, sha, siblings, ...
                                             (?blobs=true adds size, blobId, lfs)
  GET  /api/models/<id>/tree/<rev>[/<path>]  ?recursive=true&expand=false[&cursor=C]
                                             [&limit=N]: files and directories, --page-size
                                             per page, `Link: <URL>; rel="next"`
  GET  /api/models/<id>/refs                 branches and tags
  POST /api/models/<id>/paths-info/<rev>     form or JSON `paths`: their entries
  HEAD|GET /<id>/resolve/<rev>/<path>        plain file: 200, ETag "<git oid>",
                                             X-Repo-Commit, Content-Length, Range;
                                             LFS file: 302 to the CDN with X-Repo-Commit,
                                             X-Linked-Etag "<sha256>", X-Linked-Size,
                                             ETag, Location
<rev> is a branch, a tag or the commit (URL-quoted, as the client sends it). Errors are
the hub's: an unknown repo is 401 (404 when the request carried a token) with
X-Error-Code: RepoNotFound; an unknown revision 404 RevisionNotFound; an unknown file 404
EntryNotFound with X-Repo-Commit. Never an X-Xet-Hash.

CDN (--cdn-listen, another origin): GET|HEAD /repos/<aa>/<bb>/<repo key>/<sha256>?...&
Expires=T&Signature=S, a signed URL as the hub's 302 hands out (403 when the signature is
missing or wrong); bytes with Content-Length, ETag (an S3-style md5) and Range. It needs no
Authorization header and logs whether one came.

  --page-size N   tree entries per page (default 1000)
  --corrupt PATH  serve different bytes (same length) for PATH than its oid says
  --cut PATH      the first GET of PATH's bytes sends the full Content-Length, half the
                  body, then closes the connection; later GETs are whole
  --token TOKEN   the hub requires `Authorization: Bearer TOKEN` everywhere (401 with
                  X-Error-Code: GatedRepo without it, 401 "Invalid credentials" with a
                  wrong one); the CDN still only checks its signed URLs
  --watch-stdin   exit when standard input reaches end of file (the parent is gone)
  --quiet         do not log requests on stderr

Prints `cdn listening on http://HOST:PORT2`, then `listening on http://HOST:PORT` on
stdout once both accept connections (port 0 picks a free port). Exits on SIGTERM or
SIGINT. Logs one line per request on stderr: `fakehub: hub|cdn METHOD PATH -> STATUS`,
with `range=...` and `auth=bearer` when those headers came (never the token itself).
Python 3 stdlib only.
"""

import argparse
import base64
import hashlib
import hmac
import json
import mimetypes
import os
import re
import secrets
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

# What the hub's default .gitattributes puts in LFS (models and datasets).
LFS_SUFFIXES = (
    ".7z .arrow .bin .bz2 .ckpt .ftz .gguf .gz .h5 .joblib .lz4 .mds .mlmodel .model "
    ".msgpack .npy .npz .onnx .ot .parquet .pb .pickle .pkl .pt .pth .rar .safetensors "
    ".tar .tflite .tgz .wasm .xz .zip .zst"
).split()
LFS_THRESHOLD = 10 * 1024 * 1024
LAST_MODIFIED = "2024-05-01T12:00:00.000Z"
HTTP_DATE = "Wed, 01 May 2024 12:00:00 GMT"


def git_blob_oid(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def corrupted(data):
    """Same length, one byte changed (in the middle)."""
    if not data:
        return data
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


class File:
    def __init__(self, path, data, corrupt):
        self.path = path
        self.data = data
        self.size = len(data)
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.lfs = path.lower().endswith(tuple(LFS_SUFFIXES)) or self.size >= LFS_THRESHOLD
        if self.lfs:
            self.pointer = (
                "version https://git-lfs.github.com/spec/v1\n"
                f"oid sha256:{self.sha256}\nsize {self.size}\n"
            ).encode()
            self.oid = git_blob_oid(self.pointer)
        else:
            self.pointer = None
            self.oid = git_blob_oid(data)
        self.served = corrupted(data) if corrupt else data
        self.md5 = hashlib.md5(self.served).hexdigest()

    def entry(self, expand, commit):
        e = {"type": "file", "oid": self.oid, "size": self.size, "path": self.path}
        if self.lfs:
            e["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": len(self.pointer)}
        if expand:
            e["lastCommit"] = {"id": commit, "title": "Upload", "date": LAST_MODIFIED}
            e["securityFileStatus"] = {"status": "safe"}
        return e


class Repo:
    def __init__(self, kind, repo_id, root, args):
        self.kind = kind  # "model" or "dataset"
        self.id = repo_id
        self.files = {}
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d != ".git")
            for name in sorted(filenames):
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, root).replace(os.sep, "/")
                with open(full, "rb") as f:
                    data = f.read()
                self.files[rel] = File(rel, data, corrupt=rel in args.corrupt)
        h = hashlib.sha1(f"fakehub\0{kind}\0{repo_id}\0".encode())
        for path in sorted(self.files):
            h.update(f"{path}\0{self.files[path].sha256}\n".encode())
        self.commit = h.hexdigest()
        self.key = hashlib.sha256(f"{kind}/{repo_id}".encode()).hexdigest()[:16]
        self.branches = list(args.branch) or ["main"]
        self.tags = list(args.tag)
        dirs = set()
        for path in self.files:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        self.dirs = {d: self.tree_oid(d) for d in dirs}

    def tree_oid(self, d):
        """A fake, stable git tree oid for directory `d`."""
        listing = "".join(
            f"{p}:{f.oid}\n" for p, f in sorted(self.files.items()) if p.startswith(d + "/")
        )
        return hashlib.sha1(f"tree\0{d}\0{listing}".encode()).hexdigest()

    def resolve(self, rev):
        if rev in self.branches or rev in self.tags or rev == self.commit:
            return self.commit
        return None

    def entries(self, prefix, recursive, expand):
        """Tree entries under `prefix` ("" for the root), in path order."""
        out = []
        base = prefix + "/" if prefix else ""
        for d, oid in self.dirs.items():
            if d.startswith(base) and (recursive or "/" not in d[len(base) :]):
                e = {"type": "directory", "oid": oid, "size": 0, "path": d}
                if expand:
                    e["lastCommit"] = {"id": self.commit, "title": "Upload", "date": LAST_MODIFIED}
                out.append(e)
        for p, f in self.files.items():
            if p.startswith(base) and (recursive or "/" not in p[len(base) :]):
                out.append(f.entry(expand, self.commit))
        out.sort(key=lambda e: e["path"])
        return out

    def info(self, blobs, token_required):
        siblings = []
        for p, f in sorted(self.files.items()):
            s = {"rfilename": p}
            if blobs:
                s["size"] = f.size
                s["blobId"] = f.oid
                if f.lfs:
                    s["lfs"] = {
                        "sha256": f.sha256,
                        "size": f.size,
                        "pointerSize": len(f.pointer),
                    }
            siblings.append(s)
        author = self.id.split("/")[0] if "/" in self.id else None
        info = {
            "_id": self.key + "00000000",
            "id": self.id,
            "author": author,
            "sha": self.commit,
            "lastModified": LAST_MODIFIED,
            "createdAt": LAST_MODIFIED,
            "private": False,
            "gated": "manual" if token_required else False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(f.size for f in self.files.values()),
        }
        if self.kind == "model":
            info["modelId"] = self.id
            info["library_name"] = "transformers"
            info["pipeline_tag"] = None
            info["spaces"] = []
        else:
            info["description"] = ""
            info["citation"] = ""
            info["cardData"] = {}
        return info


class Hub:
    def __init__(self, args):
        self.args = args
        self.repos = {}
        for kind, specs in (("model", args.repo), ("dataset", args.dataset)):
            for spec in specs:
                repo_id, sep, root = spec.partition("=")
                if not sep or not repo_id or not root:
                    flag = "--repo" if kind == "model" else "--dataset"
                    sys.exit(f"fakehub: {flag} wants ID=DIR, got {spec!r}")
                if not os.path.isdir(root):
                    sys.exit(f"fakehub: {root}: not a directory")
                self.repos[(kind, repo_id)] = Repo(kind, repo_id, root, args)
        if not self.repos:
            sys.exit("fakehub: no --repo or --dataset given")
        for path in set(args.corrupt) | set(args.cut):
            if not any(path in r.files for r in self.repos.values()):
                sys.exit(f"fakehub: no repository has a file {path}")
        self.by_key = {r.key: r for r in self.repos.values()}
        self.secret = secrets.token_bytes(32)
        self.cut_done = set()
        self.lock = threading.Lock()
        self.cdn_base = None  # set once the CDN listens

    def sign(self, path, expires):
        return hmac.new(self.secret, f"{path}\0{expires}".encode(), hashlib.sha256).hexdigest()

    def cut_now(self, repo, path):
        """Whether this GET of `path` is the one to cut (only the first is)."""
        if path not in self.args.cut:
            return False
        with self.lock:
            key = (repo.kind, repo.id, path)
            if key in self.cut_done:
                return False
            self.cut_done.add(key)
            return True


def parse_range(header, size):
    """(start, end) inclusive, None for no/ignored range, or "invalid" for a 416."""
    if not header:
        return None
    m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if not m or not (m.group(1) or m.group(2)):
        return None
    if m.group(1):
        start = int(m.group(1))
        end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    else:
        start = max(size - int(m.group(2)), 0)
        end = size - 1
    if start >= size or start > end:
        return "invalid"
    return start, end


class Base(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: with Nagle's algorithm on, each
    # response after the first on a kept-alive connection waits for the client's delayed
    # ACK (40 ms on Linux), which no real index or hub does.
    disable_nagle_algorithm = True
    hub = None  # set by main()
    quiet = False
    role = "?"

    def log_message(self, fmt, *args):
        pass  # one line per request is written by log_request below

    def log_request(self, code="-", size="-"):
        if self.quiet:
            return
        extra = []
        if self.headers.get("Range"):
            extra.append(f"range={self.headers.get('Range')}")
        if self.headers.get("Authorization"):
            bearer = self.headers["Authorization"].lower().startswith("bearer ")
            extra.append("auth=bearer" if bearer else "auth=other")
        code = getattr(code, "value", code)
        sys.stderr.write(
            f"fakehub: {self.role} {self.command} {self.path} -> {code}"
            + ("".join(" " + e for e in extra))
            + "\n"
        )
        sys.stderr.flush()

    def do_HEAD(self):
        self.dispatch(head=True)

    def do_GET(self):
        self.dispatch(head=False)

    def do_POST(self):
        self.dispatch(head=False)

    def dispatch(self, head):
        self.head = head
        try:
            self.route()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send(self, status, body, content_type, extra=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if not self.head:
            self.wfile.write(body)

    def send_json(self, status, value, extra=()):
        body = json.dumps(value, separators=(",", ":")).encode()
        self.send(status, body, "application/json; charset=utf-8", extra)

    def send_bytes(self, data, content_type, extra, cut):
        """200 or 206 (Range) with `data`; with `cut`, half the body then a closed socket."""
        rng = parse_range(self.headers.get("Range"), len(data))
        if rng == "invalid":
            return self.send(
                416,
                b"",
                "text/plain; charset=utf-8",
                [("Content-Range", f"bytes */{len(data)}")] + list(extra),
            )
        status, body, headers = 200, data, list(extra)
        if rng is not None:
            start, end = rng
            status, body = 206, data[start : end + 1]
            headers.append(("Content-Range", f"bytes {start}-{end}/{len(data)}"))
        headers.append(("Accept-Ranges", "bytes"))
        if not cut or self.head:
            return self.send(status, body, content_type, headers)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class HubHandler(Base):
    server_version = "fakehub/1.0"
    role = "hub"

    def error(self, status, code, message, extra=()):
        headers = [("X-Error-Message", message)] + list(extra)
        if code:
            headers.insert(0, ("X-Error-Code", code))
        self.send_json(status, {"error": message}, headers)

    def authorized(self):
        """None when the request may go on; else the error has been sent."""
        token = self.hub.args.token
        got = self.headers.get("Authorization")
        if token is None:
            return True
        if got is None:
            self.error(
                401,
                "GatedRepo",
                "Access to this repository is restricted. You must have access to it and be "
                "authenticated to access it. Please log in.",
            )
            return False
        if not hmac.compare_digest(got.encode(), f"Bearer {token}".encode()):
            self.error(401, None, "Invalid credentials in Authorization header")
            return False
        return True

    def find_repo(self, kind, repo_id):
        repo = self.hub.repos.get((kind, repo_id))
        if repo is None:
            # The hub says 401 to an anonymous caller (the repo might be private), 404 to a
            # signed-in one.
            status = 404 if self.headers.get("Authorization") else 401
            self.error(status, "RepoNotFound", "Repository not found")
        return repo

    def find_commit(self, repo, rev):
        commit = repo.resolve(rev)
        if commit is None:
            self.error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return commit

    def route(self):
        split = urlsplit(self.path)
        segs = split.path.split("/")[1:]
        query = parse_qs(split.query)
        body = self.read_body() if self.command == "POST" else b""
        if len(segs) >= 2 and segs[0] == "api" and segs[1] in ("models", "datasets"):
            kind = "model" if segs[1] == "models" else "dataset"
            rest = segs[2:]
            if len(rest) < 2:
                return self.error(404, None, "Sorry, we can't find the page you are looking for.")
            if not self.authorized():
                return
            repo_id = unquote(rest[0]) + "/" + unquote(rest[1])
            return self.api(kind, repo_id, rest[2:], query, body)
        kind = "model"
        if segs and segs[0] == "datasets":
            kind, segs = "dataset", segs[1:]
        if len(segs) >= 5 and segs[2] == "resolve" and self.command in ("GET", "HEAD"):
            if not self.authorized():
                return
            repo_id = unquote(segs[0]) + "/" + unquote(segs[1])
            rev = unquote(segs[3])
            path = "/".join(unquote(s) for s in segs[4:])
            return self.resolve(kind, repo_id, rev, path)
        return self.error(404, None, "Sorry, we can't find the page you are looking for.")

    def api(self, kind, repo_id, rest, query, body):
        repo = self.find_repo(kind, repo_id)
        if repo is None:
            return
        op = rest[0] if rest else ""
        blobs = query.get("blobs", ["false"])[0].lower() in ("1", "true")
        if op == "" and self.command in ("GET", "HEAD"):
            return self.send_json(200, repo.info(blobs, self.hub.args.token is not None))
        if op == "revision" and len(rest) >= 2 and self.command in ("GET", "HEAD"):
            # A revision with a slash may come quoted (refs%2Fpr%2F1) or not.
            rev = "/".join(unquote(s) for s in rest[1:])
            if self.find_commit(repo, rev) is None:
                return
            return self.send_json(200, repo.info(blobs, self.hub.args.token is not None))
        if op == "tree" and len(rest) >= 2 and self.command in ("GET", "HEAD"):
            return self.tree(repo, unquote(rest[1]), "/".join(unquote(s) for s in rest[2:]), query)
        if op == "refs" and len(rest) == 1 and self.command in ("GET", "HEAD"):
            def ref(name, kind):
                return {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": repo.commit}

            return self.send_json(
                200,
                {
                    "branches": [ref(b, "heads") for b in repo.branches],
                    "converts": [],
                    "tags": [ref(t, "tags") for t in repo.tags],
                },
            )
        if op == "paths-info" and len(rest) >= 2 and self.command == "POST":
            commit = self.find_commit(repo, unquote(rest[1]))
            if commit is None:
                return
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if ctype == "application/json":
                form = json.loads(body or b"{}")
                paths = form.get("paths", [])
                expand = bool(form.get("expand"))
            else:
                form = parse_qs(body.decode())
                paths = form.get("paths", [])
                expand = form.get("expand", ["false"])[0].lower() in ("1", "true")
            if isinstance(paths, str):
                paths = [paths]
            out = []
            for p in paths:
                p = p.strip("/")
                if p in repo.files:
                    out.append(repo.files[p].entry(expand, repo.commit))
                elif p in repo.dirs:
                    out.append({"type": "directory", "oid": repo.dirs[p], "size": 0, "path": p})
            return self.send_json(200, out)
        return self.error(404, None, "Sorry, we can't find the page you are looking for.")

    def tree(self, repo, rev, prefix, query):
        commit = self.find_commit(repo, rev)
        if commit is None:
            return
        prefix = prefix.strip("/")
        if prefix and prefix not in repo.dirs:
            return self.error(
                404,
                "EntryNotFound",
                f'{prefix} does not exist on "{rev}"',
                [("X-Repo-Commit", commit)],
            )

        def truthy(name):
            return query.get(name, ["false"])[0].lower() in ("1", "true")

        entries = repo.entries(prefix, truthy("recursive"), truthy("expand"))
        start = 0
        cursor = query.get("cursor", [None])[0]
        if cursor:
            try:
                padded = cursor + "=" * (-len(cursor) % 4)
                after = json.loads(base64.urlsafe_b64decode(padded))["file_name"]
                start = next((i for i, e in enumerate(entries) if e["path"] > after), len(entries))
            except (ValueError, KeyError, TypeError):
                return self.error(400, None, "Invalid cursor")
        size = self.hub.args.page_size
        if "limit" in query:
            try:
                size = max(1, min(size, int(query["limit"][0])))
            except ValueError:
                pass
        page = entries[start : start + size]
        headers = [("X-Repo-Commit", commit)]
        if start + size < len(entries):
            token = base64.urlsafe_b64encode(
                json.dumps({"file_name": page[-1]["path"]}).encode()
            ).decode().rstrip("=")
            params = [(k, v) for k, vs in query.items() if k != "cursor" for v in vs]
            params.append(("cursor", token))
            host = self.headers.get("Host") or "%s:%d" % self.server.server_address[:2]
            path = urlsplit(self.path).path
            headers.append(("Link", f'<http://{host}{path}?{urlencode(params)}>; rel="next"'))
        self.send_json(200, page, headers)

    def resolve(self, kind, repo_id, rev, path):
        repo = self.find_repo(kind, repo_id)
        if repo is None:
            return
        commit = self.find_commit(repo, rev)
        if commit is None:
            return
        f = repo.files.get(path)
        if f is None:
            return self.error(
                404, "EntryNotFound", "Entry not found", [("X-Repo-Commit", commit)]
            )
        common = [("X-Repo-Commit", commit), ("Vary", "Origin, Accept, Range")]
        if f.lfs:
            cdn_path = f"/repos/{repo.key[:2]}/{repo.key[2:4]}/{repo.key}/{f.sha256}"
            expires = int(time.time()) + 3600
            filename = path.rsplit("/", 1)[-1]
            disposition = f"inline; filename*=UTF-8''{quote(filename)}; filename=\"{filename}\";"
            params = urlencode(
                [
                    ("response-content-disposition", disposition),
                    ("Expires", str(expires)),
                    ("Signature", self.hub.sign(cdn_path, expires)),
                    ("Key-Pair-Id", "KFAKEHUB"),
                ]
            )
            location = f"{self.hub.cdn_base}{cdn_path}?{params}"
            body = f"Found. Redirecting to {location}".encode()
            return self.send(
                302,
                body,
                "text/plain; charset=utf-8",
                common
                + [
                    ("Location", location),
                    ("ETag", f'"{f.oid}"'),
                    ("X-Linked-Etag", f'"{f.sha256}"'),
                    ("X-Linked-Size", str(f.size)),
                    (
                        "Access-Control-Expose-Headers",
                        "X-Repo-Commit,X-Linked-Etag,X-Linked-Size,ETag,Location",
                    ),
                ],
            )
        ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype == "application/json":
            ctype = "text/plain; charset=utf-8"
        cut = not self.head and self.hub.cut_now(repo, path)
        self.send_bytes(
            f.served,
            ctype,
            common
            + [
                ("ETag", f'"{f.oid}"'),
                (
                    "Content-Disposition",
                    f"inline; filename*=UTF-8''{quote(path.rsplit('/', 1)[-1])}",
                ),
                ("Last-Modified", HTTP_DATE),
            ],
            cut,
        )


class CdnHandler(Base):
    server_version = "AmazonS3"
    role = "cdn"

    def denied(self, message):
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>AccessDenied</Code><Message>{message}</Message></Error>"
        ).encode()
        self.send(403, body, "text/xml")

    def route(self):
        if self.command not in ("GET", "HEAD"):
            return self.send(405, b"", "text/plain")
        split = urlsplit(self.path)
        query = parse_qs(split.query)
        m = re.fullmatch(
            r"/repos/[0-9a-f]{2}/[0-9a-f]{2}/([0-9a-f]{16})/([0-9a-f]{64})", split.path
        )
        if not m:
            return self.send(404, b"Not Found", "text/plain")
        expires = query.get("Expires", [""])[0]
        signature = query.get("Signature", [""])[0]
        if not expires.isdigit() or not signature:
            return self.denied("Missing Key-Pair-Id query parameter or cookie value")
        if not hmac.compare_digest(signature, self.hub.sign(split.path, int(expires))):
            return self.denied("Invalid signature")
        if int(expires) < time.time():
            return self.denied("Access denied: the URL has expired")
        repo = self.hub.by_key.get(m.group(1))
        f = None
        if repo is not None:
            f = next((x for x in repo.files.values() if x.lfs and x.sha256 == m.group(2)), None)
        if f is None:
            return self.send(404, b"Not Found", "text/plain")
        cut = not self.head and self.hub.cut_now(repo, f.path)
        self.send_bytes(
            f.served,
            "binary/octet-stream",
            [
                ("ETag", f'"{f.md5}"'),
                ("Last-Modified", HTTP_DATE),
                ("X-Cache", "Hit from cloudfront"),
            ],
            cut,
        )


def serve(address, handler):
    host, _, port = address.rpartition(":")
    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), handler)
    server.daemon_threads = True
    return server


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT")
    ap.add_argument("--cdn-listen", default="127.0.0.1:0", metavar="HOST:PORT")
    ap.add_argument("--repo", action="append", default=[], metavar="ORG/NAME=DIR")
    ap.add_argument("--dataset", action="append", default=[], metavar="ORG/NAME=DIR")
    ap.add_argument("--branch", action="append", default=[])
    ap.add_argument("--tag", action="append", default=[])
    ap.add_argument("--page-size", type=int, default=1000)
    ap.add_argument("--corrupt", action="append", default=[], metavar="PATH")
    ap.add_argument("--cut", action="append", default=[], metavar="PATH")
    ap.add_argument("--token")
    ap.add_argument("--watch-stdin", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    if args.page_size < 1:
        ap.error("--page-size must be at least 1")

    hub = Hub(args)
    Base.hub = hub
    Base.quiet = args.quiet
    cdn = serve(args.cdn_listen, CdnHandler)
    cdn_host, cdn_port = cdn.server_address[:2]
    hub.cdn_base = f"http://{cdn_host}:{cdn_port}"
    api = serve(args.listen, HubHandler)
    api_host, api_port = api.server_address[:2]

    def stop(*_):
        # shutdown() waits for serve_forever(), so call it from other threads.
        for s in (api, cdn):
            threading.Thread(target=s.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.watch_stdin:

        def watch():
            while sys.stdin.buffer.read(4096):
                pass
            stop()

        threading.Thread(target=watch, daemon=True).start()

    cdn_thread = threading.Thread(target=cdn.serve_forever, daemon=True)
    cdn_thread.start()
    print(f"cdn listening on {hub.cdn_base}", flush=True)
    print(f"listening on http://{api_host}:{api_port}", flush=True)
    api.serve_forever()
    cdn_thread.join(timeout=5)
    api.server_close()
    cdn.server_close()


if __name__ == "__main__":
    main()
