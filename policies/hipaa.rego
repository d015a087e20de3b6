# A HIPAA-minded import gate for the isolated site: two approvers, licences from an
# allowlist, every model and dataset classified, nothing from outside the allowed
# origins. Meant for `ferry import --trust-policy ... --policy policies/hipaa.rego`:
# approver roles come from the trust policy (`input.signers[_].role`).
package ferry

allowed_hosts := {"127.0.0.1", "localhost", "::1"}

allow_local_layouts := true

# SPDX ids (or whole expressions) a site accepts. An artifact must declare at least
# one licence, and every declared licence must be on the list.
allowed_licences := {"Apache-2.0", "MIT", "BSD-2-Clause", "BSD-3-Clause", "ISC", "PSF-2.0", "Python-2.0", "Unlicense", "CC0-1.0", "CC-BY-4.0", "MPL-2.0"}

# The kinds that carry no licence of their own (signatures and SBOMs attached to images).
unlicensed_kinds := {"referrer"}

# The data classifications a model or dataset may carry here.
classifications := {"public", "internal", "confidential", "phi"}

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

# 1. At least two approvers signed.
approvers := {s.keyId | some s in input.signers; s.role == "approver"}

deny contains msg if {
	count(approvers) < 2
	msg := sprintf("%d approver signature(s); HIPAA transfers need 2 (sign with `ferry bundle sign`, verify with a trust policy that gives approvers their role)", [count(approvers)])
}

# 2. Licences from the allowlist.
deny contains msg if {
	some a in input.artifacts
	not a.kind in unlicensed_kinds
	count(object.get(a, "licenses", [])) == 0
	msg := sprintf("%s %s declares no licence", [a.kind, a.repository])
}

deny contains msg if {
	some a in input.artifacts
	some l in object.get(a, "licenses", [])
	not licence_allowed(l)
	msg := sprintf("%s %s: licence %q is not on the allowlist", [a.kind, a.repository, l.declared])
}

licence_allowed(l) if l.spdx in allowed_licences

# 3. Models and datasets carry a data classification.
deny contains msg if {
	some a in input.artifacts
	a.kind == "model"
	not object.get(object.get(a, "labels", {}), "classification", "") in classifications
	msg := sprintf("%s: models and datasets need labels.classification, one of %v", [a.repository, sort([c | some c in classifications])])
}

# 4. Only allowed origins.
deny contains msg if {
	some a in input.artifacts
	not origin_allowed(a.origin)
	msg := sprintf("%s %s comes from %q, which is not an allowed origin", [a.kind, a.repository, a.origin])
}
