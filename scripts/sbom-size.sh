#!/usr/bin/env bash
# What the SBOMs add to a bundle: `bash scripts/sbom-size.sh B.ferry [ferry binary]`.
# Prints the bundle's size, the two documents' sizes as the signed manifest names them,
# and what they take in the bundle once compressed (zstd at ferry's default level 3, the
# level they are written at), each as a share of the bundle.
set -euo pipefail
bundle=${1:?usage: sbom-size.sh B.ferry [ferry]}
ferry=${2:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/release/ferry}
manifest=$("$ferry" bundle inspect "$bundle" --json)
field() { python3 -c 'import json,sys; m=json.load(sys.stdin); s=m.get("sbom") or {}; print(s.get(sys.argv[1], {}).get(sys.argv[2], "") if sys.argv[2] else s.get(sys.argv[1], ""))' "$@"; }
cdx=$(field cyclonedx size <<<"$manifest")
spdx=$(field spdx size <<<"$manifest")
if [[ -z "$cdx" ]]; then
    echo "sbom-size: $bundle carries no SBOM"
    exit 0
fi
total=$(stat -c %s "$bundle")
packed=0
for doc in cyclonedx spdx; do
    n=$("$ferry" bundle sbom "$bundle" -q --format "$doc" | zstd -3 -c | wc -c)
    packed=$((packed + n))
done
awk -v t="$total" -v c="$cdx" -v s="$spdx" -v p="$packed" 'BEGIN {
    printf "sbom-size: bundle %d bytes; CycloneDX %d + SPDX %d = %d bytes (%.2f%% of the bundle), %d bytes compressed (%.3f%%)\n",
        t, c, s, c + s, 100 * (c + s) / t, p, 100 * p / t }'
