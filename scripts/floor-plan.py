#!/usr/bin/env python3
"""What the bench's transfer floor moves: every manifest and blob reachable from REFS in
the registry at SOURCE (http, loopback), one line each, children before their parents:

    blob REPO DIGEST              (the first repository that needs a digest)
    mount REPO DIGEST FROM_REPO   (every other one: a cross-repository mount)
    manifest REPO DIGEST MEDIA_TYPE
    tag REPO TAG DIGEST MEDIA_TYPE

    python3 scripts/floor-plan.py SOURCE REPO:TAG... > plan

Untimed: the bench makes the plan first, then times only the plain GETs and PUTs of the
plan's lines (no hashing, no archive), which is the floor a tool that carries images
between two registries cannot go below.
"""

import json
import sys
import urllib.request

ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


def get_manifest(source, repo, ref):
    req = urllib.request.Request(
        f"http://{source}/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT}
    )
    with urllib.request.urlopen(req) as r:
        body = r.read()
        return json.loads(body), r.headers["Content-Type"], r.headers["Docker-Content-Digest"]


def walk(source, repo, ref, out, seen, first):
    doc, media_type, digest = get_manifest(source, repo, ref)
    for child in doc.get("manifests", []):
        if (repo, child["digest"]) not in seen:
            walk(source, repo, child["digest"], out, seen, first)
    for blob in [doc.get("config")] + doc.get("layers", []):
        if blob and (repo, blob["digest"]) not in seen:
            seen.add((repo, blob["digest"]))
            if blob["digest"] in first:
                out.append(f"mount {repo} {blob['digest']} {first[blob['digest']]}")
            else:
                first[blob["digest"]] = repo
                out.append(f"blob {repo} {blob['digest']}")
    if (repo, digest) not in seen:
        seen.add((repo, digest))
        out.append(f"manifest {repo} {digest} {media_type}")
    return digest, media_type


def main():
    source, refs = sys.argv[1], sys.argv[2:]
    out, seen, first = [], set(), {}
    for ref in refs:
        repo, tag = ref.rsplit(":", 1)
        digest, media_type = walk(source, repo, tag, out, seen, first)
        out.append(f"tag {repo} {tag} {digest} {media_type}")
    print("\n".join(out))


if __name__ == "__main__":
    main()
