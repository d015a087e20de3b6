//! A report of one bundle: its signed head (the manifest and every signature, embedded
//! and beside it), read as `bundle inspect` reads it; with a trust list, verified fully
//! as `bundle verify` does.

use std::path::Path;

use super::{
    ArtifactRow, Check, Crossed, Fact, Group, LicenceRow, Policy, Report, Sbom, SbomDocument,
    SignatureRow, Signatures, Status, shell_quote,
};
use crate::bundle::reader::{self, Trust};
use crate::bundle::signers::{Found, Source, Status as SigStatus};
use crate::bundle::{BundleManifest, MANIFEST_NAME, SIGNATURE_NAME, VerifyError, cosign};
use crate::digest::Digest;
use crate::ecosystems::{AnyArtifact, Kind};

/// The trust list to verify against, and how the report names it.
pub struct BundleTrust<'a> {
    pub trust: Trust<'a>,
    /// `--trust build.pub (1 of 1 key)`.
    pub description: String,
}

/// The report of `bundle`, and the error that makes it exit non-zero (a bundle that did
/// not verify against the trust list given). Errors that leave nothing to report (the
/// file is not a bundle, its manifest is not one ferry writes) are returned as `Err`.
pub fn from_bundle(
    bundle: &Path,
    trust: Option<BundleTrust<'_>>,
) -> crate::error::Result<(Report, Option<crate::error::Error>)> {
    let mut report = Report::new("bundle", bundle.display().to_string());
    let mut failure = None;
    let (manifest, digest, signatures) = match &trust {
        None => {
            let (m, d, rows) = unverified(bundle)?;
            let sigs = Signatures {
                checked: false,
                trust: None,
                verified: None,
                error: None,
                rule: None,
                found: rows,
                verify_command: verify_command(bundle),
            };
            (m, d, sigs)
        }
        Some(t) => match crate::import::verify(
            &reader::Input::from(bundle),
            &t.trust,
            &crate::reporter::Quiet,
        ) {
            Ok(v) => {
                let sigs = Signatures {
                    checked: true,
                    trust: Some(t.description.clone()),
                    verified: Some(true),
                    error: None,
                    rule: v.approval.as_ref().map(|a| {
                        format!(
                            "trust policy rule {} (series \"{}\"): approved by {}{}",
                            a.rule,
                            a.series_pattern,
                            a.signers
                                .iter()
                                .map(|s| s.to_string())
                                .collect::<Vec<_>>()
                                .join(", "),
                            if a.revoked.is_empty() {
                                String::new()
                            } else {
                                format!("; revoked keys that signed: {}", a.revoked.join(", "))
                            }
                        )
                    }),
                    found: v.signatures.iter().map(found_row).collect(),
                    verify_command: verify_command(bundle),
                };
                (v.manifest, v.manifest_digest, sigs)
            }
            Err(e) if e.classify().0 == crate::exit::ExitStatus::Verification => {
                // What it claims, shown as claimed: the report says it did not verify.
                let Ok((m, d, rows)) = unverified(bundle) else {
                    return Err(e);
                };
                let why = error_text(&e);
                report.fail(format!(
                    "the bundle does NOT verify against {}: {why}",
                    t.description
                ));
                let sigs = Signatures {
                    checked: true,
                    trust: Some(t.description.clone()),
                    verified: Some(false),
                    error: Some(why),
                    rule: None,
                    found: rows,
                    verify_command: verify_command(bundle),
                };
                failure = Some(e);
                (m, d, sigs)
            }
            Err(e) => return Err(e),
        },
    };
    fill(&mut report, bundle, &manifest, &digest, signatures);
    Ok((report, failure))
}

fn error_text(e: &crate::error::Error) -> String {
    let text: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    crate::names::redact_text(&text.join(": "))
}

/// The manifest (checked as `bundle sign` checks it, not its signature), its digest, and
/// the signatures found, unverified.
fn unverified(bundle: &Path) -> Result<(BundleManifest, Digest, Vec<SignatureRow>), VerifyError> {
    let head = reader::head(&reader::Input::from(bundle))?;
    let manifest: BundleManifest = serde_json::from_slice(&head.manifest)
        .map_err(|e| VerifyError::BadManifest(e.to_string()))?;
    manifest.validate().map_err(VerifyError::BadManifest)?;
    let mut rows: Vec<SignatureRow> = head
        .signatures
        .iter()
        .map(|(entry, sig)| SignatureRow {
            source: "embedded",
            file: entry.clone(),
            key_id: sig.key_id.to_string(),
            status: "not checked".into(),
            reason: None,
            holder: None,
        })
        .collect();
    rows.extend(cosign::find(bundle)?.into_iter().map(|d| SignatureRow {
        source: "detached",
        file: d.path.display().to_string(),
        key_id: d.named.to_string(),
        status: if d.signature.is_ok() {
            "not checked".into()
        } else {
            "invalid".into()
        },
        reason: d.signature.err(),
        holder: None,
    }));
    Ok((manifest, Digest::of(&head.manifest), rows))
}

fn found_row(f: &Found) -> SignatureRow {
    let (source, file) = match &f.source {
        Source::Embedded(entry) => ("embedded", entry.clone()),
        Source::Detached(path) => ("detached", path.display().to_string()),
    };
    let (status, reason) = match &f.status {
        SigStatus::Valid => ("valid", None),
        SigStatus::Untrusted => ("untrusted", Some("the key is not in the trust list".into())),
        SigStatus::Revoked => ("revoked", Some("the trust policy revoked this key".into())),
        SigStatus::Invalid(r) => ("invalid", Some(r.clone())),
    };
    SignatureRow {
        source,
        file,
        key_id: f.key_id.to_string(),
        status: status.into(),
        reason,
        holder: f.holder.as_ref().map(|(n, r)| format!("{n} ({r})")),
    }
}

fn verify_command(bundle: &Path) -> String {
    format!(
        "ferry bundle verify {} --trust SIGNER.pub   (or --trust-policy TRUST.toml)",
        shell_quote(&bundle.display().to_string())
    )
}

fn fill(
    report: &mut Report,
    bundle: &Path,
    m: &BundleManifest,
    digest: &Digest,
    signatures: Signatures,
) {
    let s = &mut report.summary;
    s.facts = vec![
        Fact::text("Series", m.series.clone()),
        Fact::text("Sequence", m.sequence.to_string()),
        Fact::text("Created", m.created.clone()),
        Fact::text("Written by", m.tool.clone()),
        Fact::text(
            "Content",
            format!(
                "{} artifact(s), {} entries, {}",
                m.artifacts.len(),
                m.entries.len(),
                super::human(m.total_size())
            ),
        ),
        Fact::code("Manifest sha256", digest.to_string()),
    ];
    let valid = signatures
        .found
        .iter()
        .filter(|f| f.status == "valid")
        .count();
    let signed = if signatures.found.is_empty() {
        report_unsigned(s);
        "signed by nobody".to_string()
    } else if !signatures.checked {
        if s.status == Status::Ok {
            s.status = Status::Unchecked;
        }
        s.notes.push(format!(
            "the signatures were NOT checked against a trust list: run `{}` or give `ferry report` --trust / --trust-policy",
            signatures.verify_command
        ));
        format!(
            "{} signature(s), not checked against a trust list",
            signatures.found.len()
        )
    } else if signatures.verified == Some(true) {
        format!(
            "verified against {} ({valid} valid signature(s))",
            signatures.trust.as_deref().unwrap_or("the trust list")
        )
    } else {
        format!(
            "did NOT verify against {}",
            signatures.trust.as_deref().unwrap_or("the trust list")
        )
    };
    s.verdict = format!(
        "Bundle {} sequence {}: {} artifact(s), policy {}, {signed}.",
        m.series,
        m.sequence,
        m.artifacts.len(),
        m.policy.verdict
    );
    report.crossed = Some(crossed(m));
    report.policy = Some(Policy {
        verdict: m.policy.verdict.clone(),
        policy: m.policy.policy.clone(),
        digest: m.policy.digest.map(|d| d.to_string()),
        warnings: m.policy.warnings.clone(),
    });
    report.sbom = Some(match &m.sbom {
        None => Sbom {
            carried: false,
            note: "This bundle carries no SBOM (it was written before ferry carried them). The licences under \"What crossed\" come from the signed manifest.".into(),
            documents: Vec::new(),
        },
        Some(r) => Sbom {
            carried: true,
            note: "The SBOMs are signed entries of the bundle (covered by the manifest's digests).".into(),
            documents: vec![
                SbomDocument {
                    what: "OCI manifest (application/vnd.dev.ferry.sbom.v1)".into(),
                    digest: r.digest.to_string(),
                    size: r.size,
                },
                SbomDocument {
                    what: "CycloneDX 1.5 JSON".into(),
                    digest: r.cyclonedx.digest.to_string(),
                    size: r.cyclonedx.size,
                },
                SbomDocument {
                    what: "SPDX 2.3 JSON".into(),
                    digest: r.spdx.digest.to_string(),
                    size: r.spdx.size,
                },
            ],
        },
    });
    report.checks = checks(bundle, m, digest, &signatures);
    report.signatures = Some(signatures);
}

fn report_unsigned(s: &mut super::Summary) {
    s.status = Status::Failed;
    s.problems
        .push("the bundle carries no signature: never import it".into());
}

/// The artifacts by ecosystem, in a fixed order.
fn crossed(m: &BundleManifest) -> Crossed {
    let order = [
        Kind::Image,
        Kind::Referrer,
        Kind::Python,
        Kind::Conda,
        Kind::Model,
    ];
    let groups = order
        .iter()
        .filter_map(|kind| {
            let artifacts: Vec<ArtifactRow> = m
                .artifacts
                .iter()
                .filter(|a| Kind::of(&a.record) == *kind)
                .map(artifact_row)
                .collect();
            (!artifacts.is_empty()).then(|| Group {
                ecosystem: kind.as_str().into(),
                artifacts,
            })
        })
        .collect();
    Crossed {
        artifacts: m.artifacts.len(),
        entries: m.entries.len(),
        bytes: m.total_size(),
        groups,
    }
}

fn artifact_row(a: &AnyArtifact) -> ArtifactRow {
    // `describe` ends with one line per licence: those are listed on their own here.
    let mut details = crate::ecosystems::describe(a);
    details.truncate(details.len().saturating_sub(a.licenses.len()));
    ArtifactRow {
        name: a.name(),
        repository: a.repository.clone(),
        tag: a.tag.clone(),
        digest: a.digest.to_string(),
        size: a.size,
        media_type: a.media_type.clone(),
        artifact_type: a.artifact_type.clone(),
        origin: a.origin.clone(),
        licences: a
            .licenses
            .iter()
            .map(|l| LicenceRow {
                declared: l.declared.clone(),
                spdx: l.spdx.clone(),
                source: l.source.clone(),
            })
            .collect(),
        labels: a.labels.clone(),
        details,
    }
}

fn checks(bundle: &Path, m: &BundleManifest, digest: &Digest, sigs: &Signatures) -> Vec<Check> {
    let b = shell_quote(&bundle.display().to_string());
    let mut checks = vec![
        Check {
            what: format!(
                "The manifest's sha256 (the bundle's identity) must print {}",
                digest.hex()
            ),
            command: format!("zstd -dc {b} | tar -xO {MANIFEST_NAME} | sha256sum"),
        },
        Check {
            what: "Extract the manifest and its signature, then check the signature with the signer's public key".into(),
            command: format!(
                "zstd -dc {b} | tar -x {MANIFEST_NAME} {SIGNATURE_NAME} && minisign -Vm {MANIFEST_NAME} -x {SIGNATURE_NAME} -p SIGNER.pub"
            ),
        },
    ];
    for s in sigs.found.iter().filter(|s| s.source == "detached") {
        checks.push(Check {
            what: format!("Check the co-signature of key {}", s.key_id),
            command: format!(
                "minisign -Vm {MANIFEST_NAME} -x {} -p APPROVER.pub",
                shell_quote(&s.file)
            ),
        });
    }
    checks.push(Check {
        what: "Extract everything and check every entry against the sha256 the signed manifest lists".into(),
        command: format!(
            "mkdir -p out && zstd -dc {b} | tar -x -C out && jq -r '.entries[] | \"\\(.sha256)  \\(.path)\"' out/{MANIFEST_NAME} | (cd out && sha256sum -c)"
        ),
    });
    if let Some(a) = m.artifacts.first() {
        checks.push(Check {
            what: "An artifact's digest is the sha256 of its blob in the layout (for example the first one)".into(),
            command: format!("sha256sum out/blobs/sha256/{}", a.digest.hex()),
        });
    }
    if let Some(s) = &m.sbom {
        checks.push(Check {
            what: "The SBOMs: the CycloneDX and the SPDX document, by their digests".into(),
            command: format!(
                "sha256sum out/blobs/sha256/{} out/blobs/sha256/{}",
                s.cyclonedx.digest.hex(),
                s.spdx.digest.hex()
            ),
        });
    }
    checks
}
