#!/usr/bin/env python3
"""Deterministic generator of OCI image layouts for tests and demos.

Writes (or adds to) an OCI image layout directory containing one image tagged
TAG, with one manifest per platform, each with N gzip-compressed tar layers of
pseudo-random (incompressible) data. Identical arguments always produce
byte-identical blobs, so digests are stable across runs and machines (assuming
stock zlib; a different deflate implementation such as zlib-ng could change
the gzip bytes, and so the layer digests, but never the diff_ids).

Usage:
  scripts/mkimage.py LAYOUT_DIR --tag TAG [--platforms linux/amd64,linux/arm64/v8]
                     [--layers N] [--layer-size BYTES] [--seed STR]
                     [--shared-base BYTES] [--docker] [--index-always]
                     [--skopeo-compat] [--label KEY=VALUE]... [--annotation KEY=VALUE]...

Layer i (0-based) contains `layer<i>/` with `data.bin` (--layer-size bytes,
derived from seed + platform + i) and `info.txt`. With --shared-base BYTES > 0,
layer 0 is instead a "base" layer of BYTES bytes derived only from the
platform (not --seed), so images built with different seeds share that blob.
The total layer count is still N. The tag is not part of the content: the same
seed/options under two tags yields the same digests.

With --docker, the index.json entry carries the Docker media type (as
containerd writes it). skopeo/containers-image ignore such entries (tag "not
found"); add --skopeo-compat to label the entry with the OCI equivalent.

--label sets config.Labels in every platform's config; --annotation sets annotations
on the top-level manifest (or index). Without them the blobs are as before.

Prints the digest of the top-level manifest (or index) on stdout.
Python 3.11 stdlib only.
"""

import argparse
import concurrent.futures
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
import tempfile

REF_NAME = "org.opencontainers.image.ref.name"

OCI = {
    "manifest": "application/vnd.oci.image.manifest.v1+json",
    "index": "application/vnd.oci.image.index.v1+json",
    "config": "application/vnd.oci.image.config.v1+json",
    "layer": "application/vnd.oci.image.layer.v1.tar+gzip",
}
DOCKER = {
    "manifest": "application/vnd.docker.distribution.manifest.v2+json",
    "index": "application/vnd.docker.distribution.manifest.list.v2+json",
    "config": "application/vnd.docker.container.image.v1+json",
    "layer": "application/vnd.docker.image.rootfs.diff.tar.gzip",
}

CHUNK = 1 << 20  # bytes of pseudo-random data generated per shake_256 call
EPOCH = "1970-01-01T00:00:00Z"


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class RandomReader:
    """File-like object yielding `size` deterministic pseudo-random bytes."""

    def __init__(self, key, size):
        self.key = key.encode()
        self.remaining = size
        self.counter = 0
        self.buf = b""
        self.pos = 0

    def read(self, n=-1):
        if n is None or n < 0:
            n = self.remaining
        n = min(n, self.remaining)
        parts = []
        while n > 0:
            if self.pos >= len(self.buf):
                self.buf = hashlib.shake_256(
                    self.key + b"\0" + self.counter.to_bytes(8, "big")
                ).digest(CHUNK)
                self.counter += 1
                self.pos = 0
            take = min(n, len(self.buf) - self.pos)
            parts.append(self.buf[self.pos:self.pos + take])
            self.pos += take
            self.remaining -= take
            n -= take
        return b"".join(parts)


class HashWriter:
    """Write-only sink that hashes and counts bytes, optionally forwarding them."""

    def __init__(self, out=None):
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self.sha.update(data)
        self.size += len(data)
        if self.out is not None:
            self.out.write(data)
        return len(data)

    def tell(self):
        return self.size

    def flush(self):
        if self.out is not None:
            self.out.flush()

    def digest(self):
        return "sha256:" + self.sha.hexdigest()


class Layout:
    def __init__(self, root):
        self.root = root
        self.blobdir = os.path.join(root, "blobs", "sha256")
        os.makedirs(self.blobdir, exist_ok=True)

    def blob_path(self, digest):
        return os.path.join(self.blobdir, digest.split(":", 1)[1])

    def put_bytes(self, data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.blob_path(digest)
        if not (os.path.exists(path) and os.path.getsize(path) == len(data)):
            fd, tmp = tempfile.mkstemp(dir=self.blobdir, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        return digest, len(data)

    def put_layer(self, entries):
        """Write a gzip'd tar layer; entries = [(name, kind, reader, size)].

        Returns (blob_digest, blob_size, diff_id)."""
        fd, tmp = tempfile.mkstemp(dir=self.blobdir, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                blob = HashWriter(f)
                gz = gzip.GzipFile(filename="", mode="wb", compresslevel=1,
                                   fileobj=blob, mtime=0)
                raw = HashWriter(gz)
                with tarfile.open(fileobj=raw, mode="w",
                                  format=tarfile.USTAR_FORMAT) as tar:
                    for name, kind, reader, size in entries:
                        ti = tarfile.TarInfo(name)
                        ti.mtime = 0
                        ti.uid = ti.gid = 0
                        ti.uname = ti.gname = "root"
                        if kind == "dir":
                            ti.type = tarfile.DIRTYPE
                            ti.mode = 0o755
                            tar.addfile(ti)
                        else:
                            ti.type = tarfile.REGTYPE
                            ti.mode = 0o644
                            ti.size = size
                            tar.addfile(ti, reader)
                gz.close()
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.blob_path(blob.digest()))
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return blob.digest(), blob.size, raw.digest()

    def update_index(self, tag, desc):
        path = os.path.join(self.root, "oci-layout")
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(dumps({"imageLayoutVersion": "1.0.0"}))
        ipath = os.path.join(self.root, "index.json")
        index = {"schemaVersion": 2, "mediaType": OCI["index"], "manifests": []}
        if os.path.exists(ipath):
            with open(ipath, "rb") as f:
                index = json.load(f)
        # Replace an entry with the same tag in place (keeps re-runs
        # idempotent); otherwise append.
        entry = dict(desc, annotations={REF_NAME: tag})
        out, placed = [], False
        for m in index.get("manifests", []):
            if (m.get("annotations") or {}).get(REF_NAME) == tag:
                if not placed:
                    out.append(entry)
                    placed = True
            else:
                out.append(m)
        if not placed:
            out.append(entry)
        index["manifests"] = out
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-index-")
        with os.fdopen(fd, "wb") as f:
            f.write(dumps(index))
        os.chmod(tmp, 0o644)
        os.replace(tmp, ipath)


def parse_platform(s):
    parts = s.strip().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise argparse.ArgumentTypeError(f"bad platform {s!r} (want os/arch[/variant])")
    plat = {"architecture": parts[1], "os": parts[0]}
    if len(parts) == 3:
        plat["variant"] = parts[2]
    return s.strip(), plat


def descriptor(mt, digest, size, docker):
    # Docker writes mediaType, size, digest; OCI tools mediaType, digest, size.
    if docker:
        return {"mediaType": mt, "size": size, "digest": digest}
    return {"mediaType": mt, "digest": digest, "size": size}


def start_layers(layout, args, pname, pool):
    """Submit this platform's layer jobs; returns [(future, is_base)]."""
    jobs = []
    for i in range(args.layers):
        base = i == 0 and args.shared_base > 0
        if base:
            key = f"mkimage\0base\0{pname}"
            size = args.shared_base
            info = f"shared base layer for {pname}\n"
        else:
            key = f"mkimage\0{args.seed}\0{pname}\0{i}"
            size = args.layer_size
            info = f"layer {i} seed={args.seed} platform={pname}\n"
        info_b = info.encode()
        d = f"layer{i}"
        entries = [
            (d + "/", "dir", None, 0),
            (d + "/data.bin", "file", RandomReader(key, size), size),
            (d + "/info.txt", "file", io.BytesIO(info_b), len(info_b)),
        ]
        jobs.append((pool.submit(layout.put_layer, entries), base))
    return jobs


def finish_manifest(layout, args, plat, mt, jobs):
    layers, diff_ids, history = [], [], []
    for i, (fut, base) in enumerate(jobs):
        digest, bsize, diff_id = fut.result()
        layers.append(descriptor(mt["layer"], digest, bsize, args.docker))
        diff_ids.append(diff_id)
        history.append({"created": EPOCH,
                        "created_by": f"mkimage {'base' if base else 'layer'} {i}"})

    config = {"created": EPOCH, "architecture": plat["architecture"], "os": plat["os"]}
    if "variant" in plat:
        config["variant"] = plat["variant"]
    config["config"] = {"Cmd": ["/bin/sh"]}
    if args.label:
        config["config"]["Labels"] = dict(kv.split("=", 1) for kv in args.label)
    config["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    config["history"] = history
    cdigest, csize = layout.put_bytes(dumps(config))

    manifest = {"schemaVersion": 2, "mediaType": mt["manifest"],
                "config": descriptor(mt["config"], cdigest, csize, args.docker),
                "layers": layers}
    mdigest, msize = layout.put_bytes(dumps(manifest))
    return descriptor(mt["manifest"], mdigest, msize, args.docker)


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Deterministically generate an image into an OCI image layout.")
    ap.add_argument("layout", metavar="LAYOUT_DIR")
    ap.add_argument("--tag", required=True,
                    help="value of org.opencontainers.image.ref.name in index.json")
    ap.add_argument("--platforms", default="linux/amd64",
                    help="comma-separated os/arch[/variant] (default linux/amd64)")
    ap.add_argument("--layers", type=int, default=2, help="layers per manifest (default 2)")
    ap.add_argument("--layer-size", type=int, default=1 << 20,
                    help="bytes of random data per layer (default 1 MiB)")
    ap.add_argument("--seed", default="seed", help="content seed (default 'seed')")
    ap.add_argument("--shared-base", type=int, default=0, metavar="BYTES",
                    help="if >0, layer 0 is a seed-independent base layer of BYTES bytes")
    ap.add_argument("--docker", action="store_true",
                    help="use Docker v2 schema 2 media types instead of OCI")
    ap.add_argument("--index-always", action="store_true",
                    help="emit an image index even for a single platform")
    ap.add_argument("--skopeo-compat", action="store_true",
                    help="with --docker: label the index.json entry with the equivalent "
                         "OCI media type (containers/image, i.e. skopeo/podman, only "
                         "resolves tags whose index.json entry is an OCI manifest/index); "
                         "the blobs are unchanged")
    ap.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                    help="a config label of every platform's config")
    ap.add_argument("--annotation", action="append", default=[], metavar="KEY=VALUE",
                    help="an annotation of the top-level manifest or index")
    args = ap.parse_args(argv)
    for kv in args.label + args.annotation:
        if "=" not in kv:
            ap.error(f"{kv!r} is not KEY=VALUE")

    try:
        plats = [parse_platform(p) for p in args.platforms.split(",") if p.strip()]
    except argparse.ArgumentTypeError as e:
        ap.error(str(e))
    if not plats:
        ap.error("--platforms is empty")
    if len({p for p, _ in plats}) != len(plats):
        ap.error("duplicate platform")
    if args.layers < 0 or args.layer_size < 0 or args.shared_base < 0:
        ap.error("sizes and counts must be >= 0")
    if args.shared_base > 0 and args.layers < 1:
        ap.error("--shared-base needs --layers >= 1")

    mt = DOCKER if args.docker else OCI
    layout = Layout(args.layout)
    # Layers are independent; zlib and hashlib release the GIL, so threads
    # can use several cores. Output does not depend on scheduling.
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        pending = [(plat, start_layers(layout, args, pname, pool)) for pname, plat in plats]
        descs = [(finish_manifest(layout, args, plat, mt, jobs), plat)
                 for plat, jobs in pending]

    annotations = dict(kv.split("=", 1) for kv in args.annotation)
    if len(descs) == 1 and not args.index_always:
        top = descs[0][0]
        if annotations:
            path = layout.blob_path(top["digest"])
            with open(path, "rb") as f:
                manifest = json.load(f)
            manifest["annotations"] = annotations
            mdigest, msize = layout.put_bytes(dumps(manifest))
            top = descriptor(mt["manifest"], mdigest, msize, args.docker)
    else:
        index = {"schemaVersion": 2, "mediaType": mt["index"],
                 "manifests": [dict(d, platform=plat) for d, plat in descs]}
        if annotations:
            index["annotations"] = annotations
        idigest, isize = layout.put_bytes(dumps(index))
        top = descriptor(mt["index"], idigest, isize, args.docker)

    # index.json is an OCI document: use OCI field order for its descriptors.
    ref_mt = top["mediaType"]
    if args.docker and args.skopeo_compat:
        ref_mt = OCI["index"] if ref_mt == DOCKER["index"] else OCI["manifest"]
    layout.update_index(args.tag, {"mediaType": ref_mt,
                                   "digest": top["digest"], "size": top["size"]})
    print(top["digest"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
