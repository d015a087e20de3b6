//! Policies as code: Rego files in conftest's convention, evaluated in-process with
//! regorus. A policy is `package ferry`; the set `data.ferry.deny` holds one message per
//! violation (empty or undefined: allowed) and `data.ferry.warn` messages that are shown
//! but do not deny. The input is the bundle manifest as it is signed (`series`,
//! `sequence`, `created`, `artifacts[_]` with `kind`, `repository`, `tag`, `digest`,
//! `origin`, `platforms`, `labels`, `licenses`, ...) plus `signers`: the key ids that
//! signed and, under a trust policy, their names and roles.
//!
//! `bundle create --policy` evaluates before anything is written and records the verdict
//! in the signed manifest; `import --policy` is the isolated site's own gate, evaluated
//! before anything reaches the target, and its verdict goes into the import record.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::digest::Digest;
use crate::exit::{Classify, ExitStatus};

/// The most a policy file may be: policies are small programs, not data.
const MAX_POLICY_BYTES: u64 = 1024 * 1024;
/// How long one evaluation may run before it is stopped (a policy that loops).
const TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("policy {path} is larger than {MAX_POLICY_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("policy {path} does not compile: {message}")]
    Compile { path: PathBuf, message: String },
    #[error("policy {path} is `{package}`, not `package ferry`")]
    Package { path: PathBuf, package: String },
    #[error("policy {path} failed while it ran: {message}")]
    Eval { path: PathBuf, message: String },
    #[error("policy {policy} denied {what}:\n{}", bullets(reasons))]
    Denied {
        policy: String,
        what: String,
        reasons: Vec<String>,
    },
}

fn bullets(reasons: &[String]) -> String {
    reasons
        .iter()
        .map(|r| format!("  - {r}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Classify for PolicyError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            PolicyError::Read { .. } => ExitStatus::Error,
            PolicyError::Denied { .. } => ExitStatus::PolicyDenied,
            _ => ExitStatus::Usage,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            PolicyError::Denied { .. } => Some(
                "fix what the policy names (or have the policy changed); `ferry policy check` shows the verdict without writing anything".into(),
            ),
            PolicyError::Package { .. } | PolicyError::Compile { .. } => Some(
                "a ferry policy is Rego v1 in `package ferry` with `deny contains msg if { ... }` rules (see policies/ and the README)".into(),
            ),
            _ => None,
        }
    }
}

/// A compiled policy.
pub struct Policy {
    path: PathBuf,
    /// sha256 of the file: what the verdict names.
    digest: Digest,
    engine: regorus::Engine,
}

/// What a policy said of one input.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// The policy file's name.
    pub policy: String,
    pub digest: Digest,
    pub deny: Vec<String>,
    pub warn: Vec<String>,
}

/// What a policy sees: a bundle manifest as it is signed, plus `signers`.
pub fn input(manifest: &impl Serialize, signers: serde_json::Value) -> serde_json::Value {
    let mut v = serde_json::to_value(manifest).expect("a manifest serialises");
    v["signers"] = signers;
    v
}

impl Verdict {
    /// The `warn` messages, as warnings.
    pub fn show_warnings(&self, reporter: &dyn crate::reporter::Reporter) {
        for w in &self.warn {
            reporter.line(&format!("warning: policy {}: {w}", self.policy));
        }
    }

    pub fn allowed(&self) -> bool {
        self.deny.is_empty()
    }

    /// An error naming every reason when the policy denied; `what` is what was asked.
    pub fn enforce(&self, what: &str) -> Result<(), PolicyError> {
        if self.allowed() {
            return Ok(());
        }
        Err(PolicyError::Denied {
            policy: self.policy.clone(),
            what: what.to_string(),
            reasons: self.deny.clone(),
        })
    }
}

impl Policy {
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let read = |source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read)?;
        if meta.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        let bytes = std::fs::read(path).map_err(read)?;
        let text = String::from_utf8(bytes.clone()).map_err(|_| PolicyError::Compile {
            path: path.to_path_buf(),
            message: "it is not UTF-8 text".into(),
        })?;
        let mut engine = regorus::Engine::new();
        engine.set_rego_v0(false);
        engine.set_strict_builtin_errors(true);
        let name = path.display().to_string();
        let package = engine
            .add_policy(name, text)
            .map_err(|e| PolicyError::Compile {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        if package != "data.ferry" {
            return Err(PolicyError::Package {
                path: path.to_path_buf(),
                package: package.trim_start_matches("data.").to_string(),
            });
        }
        Ok(Policy {
            path: path.to_path_buf(),
            digest: Digest::of(&bytes),
            engine,
        })
    }

    /// The file's name, as verdicts name it.
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.display().to_string())
    }

    /// Evaluates `deny` and `warn` over `input`.
    pub fn evaluate(&self, input: &serde_json::Value) -> Result<Verdict, PolicyError> {
        let eval = |message: String| PolicyError::Eval {
            path: self.path.clone(),
            message,
        };
        let mut engine = self.engine.clone();
        engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
            limit: TIME_LIMIT,
            check_interval: std::num::NonZeroU32::new(64).expect("non-zero"),
        });
        let input = regorus::Value::from_json_str(&input.to_string())
            .map_err(|e| eval(format!("cannot pass the input: {e}")))?;
        engine.set_input(input);
        let mut messages = |rule: &str| -> Result<Vec<String>, PolicyError> {
            let results = engine
                .eval_query(format!("data.ferry.{rule}"), false)
                .map_err(|e| eval(e.to_string()))?;
            let Some(value) = results
                .result
                .first()
                .and_then(|r| r.expressions.first())
                .map(|e| e.value.clone())
            else {
                return Ok(Vec::new()); // undefined: no such rule, nothing to say
            };
            let json = value.to_json_str().map_err(|e| eval(e.to_string()))?;
            let value: serde_json::Value =
                serde_json::from_str(&json).map_err(|e| eval(e.to_string()))?;
            let items = match value {
                serde_json::Value::Array(items) => items,
                serde_json::Value::Null => Vec::new(),
                other => {
                    return Err(eval(format!(
                        "`{rule}` must be a set of messages, it is {other}"
                    )));
                }
            };
            let mut out: Vec<String> = items
                .into_iter()
                .map(|m| match m {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect();
            out.sort();
            out.dedup();
            Ok(out)
        };
        let deny = messages("deny")?;
        let warn = messages("warn")?;
        Ok(Verdict {
            policy: self.name(),
            digest: self.digest,
            deny,
            warn,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(dir: &Path, text: &str) -> Result<Policy, PolicyError> {
        let path = dir.join("p.rego");
        std::fs::write(&path, text).unwrap();
        Policy::load(&path)
    }

    #[test]
    fn deny_and_warn_are_sets_of_messages() {
        let dir = tempfile::tempdir().unwrap();
        let p = policy(
            dir.path(),
            r#"package ferry
deny contains msg if {
    some a in input.artifacts
    a.tag == "latest"
    msg := sprintf("%s uses the latest tag", [a.repository])
}
warn contains "no labels" if { count(input.artifacts[0].labels) == 0 }
"#,
        )
        .unwrap();
        let input = serde_json::json!({"artifacts": [{"repository": "app", "tag": "latest", "labels": {}}]});
        let v = p.evaluate(&input).unwrap();
        assert_eq!(v.deny, vec!["app uses the latest tag"]);
        assert_eq!(v.warn, vec!["no labels"]);
        assert!(matches!(
            v.enforce("the bundle"),
            Err(PolicyError::Denied { .. })
        ));
        let ok = serde_json::json!({"artifacts": [{"repository": "app", "tag": "1.0", "labels": {"a": "b"}}]});
        let v = p.evaluate(&ok).unwrap();
        assert!(v.allowed() && v.warn.is_empty());
    }

    #[test]
    fn bad_policies_are_usage_errors() {
        let dir = tempfile::tempdir().unwrap();
        let e = policy(dir.path(), "package ferry\ndeny contains msg if {\n")
            .err()
            .unwrap();
        assert!(matches!(e, PolicyError::Compile { .. }), "{e}");
        assert_eq!(e.exit_status(), ExitStatus::Usage);
        let e = policy(
            dir.path(),
            "package other\ndeny contains \"x\" if { true }\n",
        )
        .err()
        .unwrap();
        assert!(matches!(e, PolicyError::Package { .. }), "{e}");
        // A policy without `deny` allows.
        let p = policy(dir.path(), "package ferry\nx := 1\n").unwrap();
        assert!(p.evaluate(&serde_json::json!({})).unwrap().allowed());
    }

    /// The shipped policies, each rule with an input it allows and one it denies.
    mod shipped {
        use super::*;

        fn load(name: &str) -> Policy {
            Policy::load(
                &Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("policies")
                    .join(name),
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"))
        }

        fn image(repository: &str, tag: &str, origin: &str) -> serde_json::Value {
            serde_json::json!({"kind": "image", "repository": repository, "tag": tag,
                "origin": origin, "digest": format!("sha256:{}", "a".repeat(64)),
                "licenses": [{"declared": "MIT", "spdx": "MIT", "source": "annotation"}]})
        }

        fn model(labels: serde_json::Value) -> serde_json::Value {
            serde_json::json!({"kind": "model", "repository": "hf/models/org/tiny", "tag": "main",
                "origin": "http://127.0.0.1:8083/org/tiny@main", "labels": labels,
                "licenses": [{"declared": "apache-2.0", "spdx": "Apache-2.0", "source": "model card"}]})
        }

        fn input(artifacts: Vec<serde_json::Value>, approvers: usize) -> serde_json::Value {
            let signers: Vec<_> = (0..approvers)
                .map(|i| serde_json::json!({"keyId": format!("{i:016X}"), "name": format!("a{i}"), "role": "approver"}))
                .chain(std::iter::once(serde_json::json!({"keyId": "B".repeat(16), "name": "build", "role": "builder"})))
                .collect();
            serde_json::json!({"series": "s", "sequence": 1, "artifacts": artifacts, "signers": signers})
        }

        fn denies(p: &Policy, input: &serde_json::Value, needle: &str) {
            let v = p.evaluate(input).unwrap();
            assert!(
                v.deny.iter().any(|d| d.contains(needle)),
                "expected a denial with {needle:?}: {:?}",
                v.deny
            );
        }

        fn allows(p: &Policy, input: &serde_json::Value) {
            let v = p.evaluate(input).unwrap();
            assert!(v.allowed(), "expected allowed: {:?}", v.deny);
        }

        #[test]
        fn default_rules() {
            let p = load("default.rego");
            let ok = input(
                vec![
                    image("e2e/app", "1.0", "127.0.0.1:5000/e2e/app:1.0"),
                    image("e2e/pinned", "", "[::1]:5000/e2e/pinned@sha256:abc"),
                    image("app/web", "1.0", "oci:/srv/layout:app/web:1.0"),
                ],
                0,
            );
            allows(&p, &ok);
            denies(
                &p,
                &input(
                    vec![image("e2e/app", "latest", "127.0.0.1:5000/e2e/app:latest")],
                    0,
                ),
                "`latest` tag",
            );
            denies(
                &p,
                &input(
                    vec![image("e2e/app", "1.0", "registry.evil.example/e2e/app:1.0")],
                    0,
                ),
                "not an allowed origin",
            );
            denies(
                &p,
                &input(
                    vec![image("e2e/app", "1.0", "http://user@evil.example:8080/x")],
                    0,
                ),
                "not an allowed origin",
            );
            denies(
                &p,
                &input(vec![image("e2e/app", "1.0", "127.0.0.1:5000/e2e/app")], 0),
                "neither a tag nor a digest",
            );
        }

        #[test]
        fn hipaa_and_gdpr_rules() {
            for name in ["hipaa.rego", "gdpr.rego"] {
                let p = load(name);
                let class = if name == "gdpr.rego" {
                    "internal"
                } else {
                    "phi"
                };
                let ok = vec![
                    image("e2e/app", "1.0", "127.0.0.1:5000/e2e/app:1.0"),
                    model(serde_json::json!({"classification": class})),
                ];
                allows(&p, &input(ok.clone(), 2));
                // Two approvers.
                denies(&p, &input(ok.clone(), 1), "1 approver signature(s)");
                // A licence allowlist, and a licence at all.
                let mut gpl = image("e2e/app", "1.0", "127.0.0.1:5000/e2e/app:1.0");
                gpl["licenses"] = serde_json::json!([{"declared": "GPL-3.0", "spdx": "GPL-3.0-only", "source": "x"}]);
                denies(&p, &input(vec![gpl], 2), "is not on the allowlist");
                let mut none = image("e2e/app", "1.0", "127.0.0.1:5000/e2e/app:1.0");
                none["licenses"] = serde_json::json!([]);
                denies(&p, &input(vec![none], 2), "declares no licence");
                let mut unparsed = image("e2e/app", "1.0", "127.0.0.1:5000/e2e/app:1.0");
                unparsed["licenses"] =
                    serde_json::json!([{"declared": "BSD License", "source": "classifier"}]);
                denies(
                    &p,
                    &input(vec![unparsed], 2),
                    "\"BSD License\" is not on the allowlist",
                );
                // Models and datasets are classified.
                denies(
                    &p,
                    &input(vec![model(serde_json::json!({}))], 2),
                    "labels.classification",
                );
                denies(
                    &p,
                    &input(
                        vec![model(serde_json::json!({"classification": "secret-ish"}))],
                        2,
                    ),
                    "labels.classification",
                );
                // Allowed origins.
                denies(
                    &p,
                    &input(
                        vec![image("e2e/app", "1.0", "hub.evil.example/e2e/app:1.0")],
                        2,
                    ),
                    "not an allowed origin",
                );
            }
            let gdpr = load("gdpr.rego");
            let personal = model(serde_json::json!({"classification": "personal"}));
            denies(&gdpr, &input(vec![personal], 2), "lawful-basis");
            let based = model(
                serde_json::json!({"classification": "personal", "lawful-basis": "contract", "retention": "P2Y"}),
            );
            allows(&gdpr, &input(vec![based], 2));
            let v = gdpr.evaluate(&input(vec![model(serde_json::json!({"classification": "personal", "lawful-basis": "contract"}))], 2)).unwrap();
            assert!(
                v.allowed() && v.warn.iter().any(|w| w.contains("retention")),
                "{v:?}"
            );
        }
    }
}
