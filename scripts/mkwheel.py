#!/usr/bin/env python3
"""Deterministic generator of real, installable Python wheels (and sdists) for tests.

Usage:
  scripts/mkwheel.py OUTDIR --name NAME --version VER
                     [--requires "dep>=1; extra == 'x'"]... [--extra x]...
                     [--requires-python ">=3.8"] [--tag TAG]... [--module]
                     [--package IMPORT_NAME] [--import MODULE]... [--summary TEXT]
                     [--header "Key: value"]... [--sdist] [--json]

Writes, per --tag (default py3-none-any), OUTDIR/{dist}-{ver}-{tag}.whl where {dist}
is NAME normalised for file names (runs of -_. become _, lower case). The wheel holds:
  {pkg}/__init__.py             (or {pkg}.py with --module): __version__ and hello()
  {dist}-{ver}.dist-info/METADATA   Metadata-Version 2.1, Name, Version, Summary,
                                    Requires-Python, Provides-Extra, Requires-Dist,
                                    then each --header line as given
  {dist}-{ver}.dist-info/WHEEL      Wheel-Version 1.0, Generator, Root-Is-Purelib, Tag
  {dist}-{ver}.dist-info/RECORD     sha256 (urlsafe base64, unpadded) and size of each
{pkg} is --package, default NAME with - and . turned into _. Each --import MODULE adds
`import MODULE` to the module, so importing it fails when that dependency is missing.
A compressed tag such as py2.py3-none-any is one wheel; each --tag makes a wheel.
Root-Is-Purelib is true for `none-any` tags.

With --sdist, writes OUTDIR/{dist}-{ver}.tar.gz instead (PKG-INFO, pyproject.toml,
the module); no wheel.

Identical arguments give byte-identical files (fixed timestamps, modes and order).
Prints one line per file: `FILENAME SHA256HEX`; with --json, one JSON object per line:
{"filename", "path", "sha256", "size", "metadata"} (metadata: the METADATA/PKG-INFO
text). Python 3 stdlib only.
"""

import argparse
import base64
import gzip
import hashlib
import io
import json
import os
import re
import sys
import tarfile
import zipfile

ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def normalize_dist(name):
    """The distribution name as wheel and sdist file names spell it."""
    return re.sub(r"[-_.]+", "_", name).lower()


def record_hash(data):
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def metadata_text(args, version_field="2.1"):
    lines = [
        f"Metadata-Version: {version_field}",
        f"Name: {args.name}",
        f"Version: {args.version}",
        f"Summary: {args.summary or 'Test package ' + args.name + ' ' + args.version}",
    ]
    if args.requires_python:
        lines.append(f"Requires-Python: {args.requires_python}")
    for extra in args.extra:
        lines.append(f"Provides-Extra: {extra}")
    for req in args.requires:
        lines.append(f"Requires-Dist: {req}")
    lines.extend(args.header)
    return "\n".join(lines) + "\n\n"


def module_source(args, tag):
    imports = "".join(f"import {m}  # noqa: F401\n" for m in args.imports)
    return (
        f'"""{args.name} {args.version}, a test package made by mkwheel.py."""\n'
        f"{imports}"
        f'__version__ = "{args.version}"\n'
        f'BUILD_TAG = "{tag}"\n'
        "\n\n"
        "def hello():\n"
        f'    return "hello from {args.name} {args.version}"\n'
    )


def module_files(args, tag):
    pkg = args.package or re.sub(r"[-.]+", "_", args.name).lower()
    source = module_source(args, tag).encode()
    if args.module:
        return [(f"{pkg}.py", source)]
    return [(f"{pkg}/__init__.py", source)]


def zip_entry(zf, name, data):
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # Unix, so external_attr holds the mode
    info.external_attr = (0o100644 & 0xFFFF) << 16
    zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=6)


def wheel_is_pure(tag):
    parts = tag.split("-")
    if len(parts) != 3:
        sys.exit(f"mkwheel: bad tag {tag!r}: want PYTHON-ABI-PLATFORM")
    return parts[1] == "none" and parts[2] == "any"


def build_wheel(args, tag, outdir):
    dist = normalize_dist(args.name)
    info_dir = f"{dist}-{args.version}.dist-info"
    metadata = metadata_text(args).encode()
    wheel = (
        "Wheel-Version: 1.0\n"
        "Generator: ferry-mkwheel 1.0\n"
        f"Root-Is-Purelib: {'true' if wheel_is_pure(tag) else 'false'}\n"
        f"Tag: {tag}\n"
        "\n"
    ).encode()
    files = module_files(args, tag) + [
        (f"{info_dir}/METADATA", metadata),
        (f"{info_dir}/WHEEL", wheel),
    ]
    record_lines = [f"{name},{record_hash(data)},{len(data)}" for name, data in files]
    record_lines.append(f"{info_dir}/RECORD,,")
    files.append((f"{info_dir}/RECORD", ("\n".join(record_lines) + "\n").encode()))

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files:
            zip_entry(zf, name, data)
    data = buf.getvalue()
    filename = f"{dist}-{args.version}-{tag}.whl"
    return filename, data, metadata.decode()


def tar_entry(tf, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tf.addfile(info, io.BytesIO(data))


def build_sdist(args, outdir):
    dist = normalize_dist(args.name)
    root = f"{dist}-{args.version}"
    pkg_info = metadata_text(args).encode()
    deps = ", ".join(json.dumps(r) for r in args.requires)
    pyproject = (
        "[build-system]\n"
        'requires = ["setuptools>=61"]\n'
        'build-backend = "setuptools.build_meta"\n'
        "\n[project]\n"
        f'name = "{args.name}"\n'
        f'version = "{args.version}"\n'
        f"dependencies = [{deps}]\n"
    ).encode()
    files = [
        (f"{root}/PKG-INFO", pkg_info),
        (f"{root}/pyproject.toml", pyproject),
    ] + [(f"{root}/{name}", data) for name, data in module_files(args, "sdist")]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files:
            tar_entry(tf, name, data)
    gz = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz, mtime=0) as g:
        g.write(raw.getvalue())
    return f"{root}.tar.gz", gz.getvalue(), pkg_info.decode()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--name", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--requires", action="append", default=[], metavar="PEP508")
    ap.add_argument("--extra", action="append", default=[])
    ap.add_argument("--requires-python", default=None)
    ap.add_argument("--tag", action="append", default=[])
    ap.add_argument("--module", action="store_true", help="a single module, not a package")
    ap.add_argument("--package", default=None, help="the import name")
    ap.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE")
    ap.add_argument("--summary", default=None)
    ap.add_argument("--header", action="append", default=[], metavar="LINE",
                    help="a raw METADATA header line (License-Expression: MIT)")
    ap.add_argument("--sdist", action="store_true", help="write an sdist, no wheel")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    os.makedirs(args.outdir, exist_ok=True)
    if args.sdist:
        built = [build_sdist(args, args.outdir)]
    else:
        built = [build_wheel(args, tag, args.outdir) for tag in (args.tag or ["py3-none-any"])]
    for filename, data, metadata in built:
        path = os.path.join(args.outdir, filename)
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
                        "path": os.path.abspath(path),
                        "sha256": sha,
                        "size": len(data),
                        "metadata": metadata,
                    }
                )
            )
        else:
            print(f"{filename} {sha}")


if __name__ == "__main__":
    main()
