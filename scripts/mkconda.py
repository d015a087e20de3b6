#!/usr/bin/env python3
"""Deterministic generator of real, installable conda packages and channels for tests.

Usage:
  scripts/mkconda.py OUTDIR --name NAME --version VER [--build B] [--build-number N]
                     [--subdir linux-64|linux-aarch64|osx-arm64|noarch]
                     [--depends "dep >=1.0"]... [--format tar.bz2|conda]
                     [--script PROGRAM] [--license TEXT] [--about-license TEXT]
                     [--payload-bytes N] [--json]
  scripts/mkconda.py --index CHANNELDIR [--corrupt FILENAME]...

The first form writes OUTDIR/SUBDIR/NAME-VER-B.tar.bz2 (default) or .conda. The
package holds:
  info/index.json   name, version, build, build_number, depends, subdir, license
                    (--license, default "MIT"),
                    a fixed timestamp; platform and arch for a platform subdir,
                    noarch "generic" for noarch
  info/paths.json   paths_version 1; per file _path, path_type "hardlink", sha256,
                    size_in_bytes
  info/files        one path per line
  info/about.json   with --about-license: {"license": TEXT}
  share/NAME/NAME.txt      "NAME VER" (so every package installs something)
  bin/PROGRAM       with --script: an executable shell script printing "PROGRAM NAME VER"
  lib/NAME/payload.bin  with --payload-bytes N: N pseudo-random bytes seeded by NAME and
                    VER (incompressible, for benchmarks that need packages of a real size)
A .conda file is a zip (entries stored, not deflated) of metadata.json
({"conda_pkg_format_version": 2}), info-NAME-VER-B.tar.zst and pkg-NAME-VER-B.tar.zst;
the zstd streams come from the `zstd` command (Debian's zstd package).
--build defaults to "0"; --build-number to 0; --subdir to linux-64.

Identical arguments give byte-identical files (fixed timestamps, owners, modes, order).
Prints `SUBDIR/FILENAME SHA256HEX`; with --json one JSON object:
{"filename", "subdir", "path", "sha256", "md5", "size"}.

--index writes CHANNELDIR/SUBDIR/repodata.json for every subdirectory of CHANNELDIR, and
an empty noarch/repodata.json when there is no noarch: records (name, version, build,
build_number, depends, constrains, license, timestamp, subdir, md5, sha256, size, and
noarch for noarch packages) read from each package's info/index.json, `.tar.bz2` under
"packages", `.conda` under "packages.conda", info.subdir, repodata_version 1.
--corrupt FILENAME lists a wrong sha256 for that package file (repeatable).

Python 3 stdlib only, plus the zstd command for .conda files.
"""

import argparse
import bz2
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import tarfile
import zipfile

TIMESTAMP_MS = 1700000000000
MTIME = TIMESTAMP_MS // 1000
ZIP_DATE = (2023, 11, 14, 22, 13, 20)

PLATFORMS = {
    "linux-64": ("linux", "x86_64"),
    "linux-aarch64": ("linux", "aarch64"),
    "osx-arm64": ("osx", "arm64"),
    "osx-64": ("osx", "x86_64"),
    "win-64": ("win", "x86_64"),
    "noarch": (None, None),
}


def die(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def tar_bytes(files):
    """An uncompressed tar of (path, bytes, mode) in the given order, deterministic."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, data, mode in files:
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = mode
            info.mtime = MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zstd_compress(data):
    try:
        out = subprocess.run(
            ["zstd", "-q", "-c", "-19", "--no-progress", "-"],
            input=data,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            check=True,
        )
    except FileNotFoundError:
        die("the zstd command is missing (hint: apt-get install zstd)")
    except subprocess.CalledProcessError as e:
        die(f"zstd failed: {e.stderr.decode(errors='replace')}")
    return out.stdout


def zstd_decompress(data):
    try:
        out = subprocess.run(
            ["zstd", "-q", "-d", "-c", "-"],
            input=data,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            check=True,
        )
    except FileNotFoundError:
        die("the zstd command is missing (hint: apt-get install zstd)")
    except subprocess.CalledProcessError as e:
        die(f"zstd -d failed: {e.stderr.decode(errors='replace')}")
    return out.stdout


def build_package(args):
    subdir = args.subdir
    if subdir not in PLATFORMS:
        die(f"unknown subdir {subdir!r} (one of {', '.join(PLATFORMS)})")
    name, version, build = args.name, args.version, args.build
    stem = f"{name}-{version}-{build}"

    # The payload.
    payload = [(f"share/{name}/{name}.txt", f"{name} {version}\n".encode(), 0o644)]
    if args.script:
        script = f'#!/bin/sh\necho "{args.script} {name} {version}"\n'.encode()
        payload.append((f"bin/{args.script}", script, 0o755))
    if args.payload_bytes:
        rng = random.Random(f"{name}-{version}-{build}")
        payload.append((f"lib/{name}/payload.bin", rng.randbytes(args.payload_bytes), 0o644))
    payload.sort(key=lambda f: f[0])

    index = {
        "arch": PLATFORMS[subdir][1],
        "build": build,
        "build_number": args.build_number,
        "depends": list(args.depends),
        "license": args.license,
        "name": name,
        "platform": PLATFORMS[subdir][0],
        "subdir": subdir,
        "timestamp": TIMESTAMP_MS,
        "version": version,
    }
    if subdir == "noarch":
        del index["arch"]
        del index["platform"]
        index["noarch"] = "generic"
    paths = {
        "paths": [
            {
                "_path": path,
                "path_type": "hardlink",
                "sha256": hashlib.sha256(data).hexdigest(),
                "size_in_bytes": len(data),
            }
            for path, data, _ in payload
        ],
        "paths_version": 1,
    }
    about = []
    if args.about_license is not None:
        text = json.dumps({"license": args.about_license}, sort_keys=True) + "\n"
        about = [("info/about.json", text.encode(), 0o644)]
    info = about + [
        ("info/files", "".join(f"{p}\n" for p, _, _ in payload).encode(), 0o644),
        ("info/index.json", (json.dumps(index, indent=2, sort_keys=True) + "\n").encode(), 0o644),
        ("info/paths.json", (json.dumps(paths, indent=2, sort_keys=True) + "\n").encode(), 0o644),
    ]

    outdir = os.path.join(args.outdir, subdir)
    os.makedirs(outdir, exist_ok=True)
    if args.format == "tar.bz2":
        filename = f"{stem}.tar.bz2"
        raw = tar_bytes(info + payload)
        data = bz2.compress(raw, 9)
    elif args.format == "conda":
        filename = f"{stem}.conda"
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
            for entry, content in [
                ("metadata.json", json.dumps({"conda_pkg_format_version": 2}).encode()),
                (f"pkg-{stem}.tar.zst", zstd_compress(tar_bytes(payload))),
                (f"info-{stem}.tar.zst", zstd_compress(tar_bytes(info))),
            ]:
                zi = zipfile.ZipInfo(entry, date_time=ZIP_DATE)
                zi.compress_type = zipfile.ZIP_STORED
                zi.external_attr = 0o644 << 16
                zi.create_system = 3
                z.writestr(zi, content)
        data = buf.getvalue()
    else:
        die(f"unknown format {args.format!r}")
    path = os.path.join(outdir, filename)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    sha = hashlib.sha256(data).hexdigest()
    if args.json:
        print(
            json.dumps(
                {
                    "filename": filename,
                    "subdir": subdir,
                    "path": os.path.abspath(path),
                    "sha256": sha,
                    "md5": hashlib.md5(data).hexdigest(),
                    "size": len(data),
                },
                sort_keys=True,
            )
        )
    else:
        print(f"{subdir}/{filename} {sha}")


def read_index_json(path):
    """info/index.json from a .tar.bz2 or .conda file."""
    if path.endswith(".tar.bz2"):
        with tarfile.open(path, "r:bz2") as tar:
            return json.load(tar.extractfile("info/index.json"))
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if n.startswith("info-") and n.endswith(".tar.zst")]
        if len(names) != 1:
            die(f"{path}: no info-*.tar.zst inside")
        raw = zstd_decompress(z.read(names[0]))
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        return json.load(tar.extractfile("info/index.json"))


def index_channel(channel, corrupt):
    if not os.path.isdir(channel):
        die(f"{channel} is not a directory")
    subdirs = sorted(
        d for d in os.listdir(channel) if os.path.isdir(os.path.join(channel, d))
    )
    if "noarch" not in subdirs:
        os.makedirs(os.path.join(channel, "noarch"), exist_ok=True)
        subdirs.append("noarch")
    unused = set(corrupt)
    for subdir in sorted(subdirs):
        d = os.path.join(channel, subdir)
        packages, conda_packages = {}, {}
        for fn in sorted(os.listdir(d)):
            if fn.endswith(".tar.bz2"):
                table = packages
            elif fn.endswith(".conda"):
                table = conda_packages
            else:
                continue
            path = os.path.join(d, fn)
            with open(path, "rb") as f:
                data = f.read()
            meta = read_index_json(path)
            sha = hashlib.sha256(data).hexdigest()
            if fn in corrupt:
                unused.discard(fn)
                sha = hashlib.sha256(data + b"corrupt").hexdigest()
            record = {
                "build": meta["build"],
                "build_number": meta.get("build_number", 0),
                "constrains": meta.get("constrains", []),
                "depends": meta.get("depends", []),
                "license": meta.get("license", ""),
                "md5": hashlib.md5(data).hexdigest(),
                "name": meta["name"],
                "sha256": sha,
                "size": len(data),
                "subdir": meta.get("subdir", subdir),
                "timestamp": meta.get("timestamp", TIMESTAMP_MS),
                "version": meta["version"],
            }
            if meta.get("noarch"):
                record["noarch"] = meta["noarch"]
            table[fn] = record
        repodata = {
            "info": {"subdir": subdir},
            "packages": packages,
            "packages.conda": conda_packages,
            "removed": [],
            "repodata_version": 1,
        }
        out = os.path.join(d, "repodata.json")
        with open(out + ".tmp", "w") as f:
            json.dump(repodata, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(out + ".tmp", out)
        print(f"{subdir}/repodata.json {len(packages) + len(conda_packages)} packages")
    if unused:
        die(f"--corrupt names no package of the channel: {', '.join(sorted(unused))}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("outdir", nargs="?")
    parser.add_argument("--index", metavar="CHANNELDIR")
    parser.add_argument("--corrupt", action="append", default=[], metavar="FILENAME")
    parser.add_argument("--name")
    parser.add_argument("--version")
    parser.add_argument("--build", default="0")
    parser.add_argument("--build-number", type=int, default=0)
    parser.add_argument("--subdir", default="linux-64")
    parser.add_argument("--depends", action="append", default=[])
    parser.add_argument("--format", default="tar.bz2", choices=["tar.bz2", "conda"])
    parser.add_argument("--script")
    parser.add_argument("--license", default="MIT")
    parser.add_argument("--about-license")
    parser.add_argument("--payload-bytes", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.index:
        if args.outdir:
            die("--index takes no OUTDIR")
        index_channel(args.index, set(args.corrupt))
        return
    if args.corrupt:
        die("--corrupt goes with --index")
    if not (args.outdir and args.name and args.version):
        die("OUTDIR, --name and --version are required (or --index CHANNELDIR)")
    build_package(args)


if __name__ == "__main__":
    main()
