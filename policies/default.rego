# ferry's default policy: what any site should refuse to carry.
#
# Input: the bundle manifest as it is signed (see the README, "Policies"), plus
# `signers`. Evaluate with `ferry policy check`, `ferry bundle create --policy` or
# `ferry import --policy`. Edit the lists below for your site.
package ferry

# Hosts content may come from (registries, package indexes, conda channels, model
# hubs), without port. Loopback stands for a mirror on the connected machine itself.
allowed_hosts := {"127.0.0.1", "localhost", "::1"}

# Local OCI image layouts (`oci:DIR:REF` in a spec) are allowed.
allow_local_layouts := true

# The host an origin names: `HOST[:PORT]/...`, `scheme://HOST[:PORT]/...`, or `oci:` for
# a local layout.
host(origin) := "oci:" if startswith(origin, "oci:")

host(origin) := h if {
	not startswith(origin, "oci:")
	rest := trim_prefix(trim_prefix(origin, "https://"), "http://")
	authority := split(split(rest, "/")[0], "@")
	hostport := authority[count(authority) - 1]
	h := host_without_port(hostport)
}

host_without_port(hp) := trim_prefix(split(hp, "]")[0], "[") if startswith(hp, "[")

host_without_port(hp) := split(hp, ":")[0] if not startswith(hp, "[")

origin_allowed(origin) if host(origin) in allowed_hosts

origin_allowed(origin) if {
	allow_local_layouts
	host(origin) == "oci:"
}

# 1. No `latest` tags: what `latest` is changes under you.
deny contains msg if {
	some a in input.artifacts
	a.kind == "image"
	a.tag == "latest"
	msg := sprintf("%s: the `latest` tag is not allowed; name a version or a digest", [a.repository])
}

# 2. Only allowed origins.
deny contains msg if {
	some a in input.artifacts
	not origin_allowed(a.origin)
	msg := sprintf("%s %s comes from %q, which is not an allowed origin", [a.kind, a.repository, a.origin])
}

# 3. Images are pinned: named by digest, or by an explicit tag that ferry resolved to the
# digest it records (never by a bare name that means `latest`).
deny contains msg if {
	some a in input.artifacts
	a.kind == "image"
	not pinned(a.origin)
	msg := sprintf("%s: %q names neither a tag nor a digest", [a.repository, a.origin])
}

pinned(origin) if contains(origin, "@sha256:")

pinned(origin) if {
	not contains(origin, "@sha256:")
	last := regex.split("/", origin)
	name := last[count(last) - 1]
	contains(name, ":")
}
