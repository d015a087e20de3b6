//! What a secured `ferry serve` needs, made once per test process with the real tools: a
//! private CA and a server certificate for 127.0.0.1 and localhost (openssl), an htpasswd
//! file (Apache's `htpasswd -B`) and a token file.

use std::path::PathBuf;
use std::sync::OnceLock;

use super::context::{p, run_program, shared};

/// The htpasswd user and password.
pub const USER: &str = "reader";
pub const PASSWORD: &str = "correct horse";
/// The token file's entry.
pub const TOKEN_NAME: &str = "ci";
pub const TOKEN: &str = "hf_0123456789abcdefFEDCBA9876543210";

pub struct Pki {
    /// The CA certificate clients are pointed at.
    pub ca: PathBuf,
    pub cert: PathBuf,
    /// The server key (0600).
    pub key: PathBuf,
    /// A directory with `ca.crt`, as podman's and skopeo's `--cert-dir` read it.
    pub cert_dir: PathBuf,
    pub htpasswd: PathBuf,
    /// `ci:TOKEN` (0600).
    pub tokens: PathBuf,
}

static PKI: OnceLock<Pki> = OnceLock::new();

pub fn pki() -> &'static Pki {
    PKI.get_or_init(|| {
        let dir = shared().root.join("pki");
        std::fs::create_dir_all(&dir).unwrap();
        let path = |n: &str| dir.join(n);
        let openssl = |args: &[&str]| run_program("openssl", args).assert_success().code;
        let ext = path("server.ext");
        std::fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        let (ca_key, ca, key, csr, cert) = (
            path("ca.key"),
            path("ca.pem"),
            path("server.key"),
            path("server.csr"),
            path("server.pem"),
        );
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend([
            "-keyout",
            p(&ca_key),
            "-out",
            p(&ca),
            "-days",
            "3",
            "-subj",
            "/CN=ferry e2e CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(&args);
        let mut args = vec!["req"];
        args.extend(ec);
        args.extend([
            "-keyout",
            p(&key),
            "-out",
            p(&csr),
            "-subj",
            "/CN=127.0.0.1",
        ]);
        openssl(&args);
        openssl(&[
            "x509",
            "-req",
            "-in",
            p(&csr),
            "-CA",
            p(&ca),
            "-CAkey",
            p(&ca_key),
            "-CAcreateserial",
            "-out",
            p(&cert),
            "-days",
            "3",
            "-extfile",
            p(&ext),
        ]);
        use std::os::unix::fs::PermissionsExt as _;
        let private = |f: &PathBuf| {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap()
        };
        private(&key);
        let cert_dir = path("certs.d");
        std::fs::create_dir_all(&cert_dir).unwrap();
        std::fs::copy(&ca, cert_dir.join("ca.crt")).unwrap();
        let hashed = run_program("htpasswd", ["-Bbn", USER, PASSWORD]);
        hashed.assert_success();
        let htpasswd = path("htpasswd");
        std::fs::write(&htpasswd, hashed.stdout.trim()).unwrap();
        let tokens = path("tokens");
        std::fs::write(&tokens, format!("# CI readers\n{TOKEN_NAME}:{TOKEN}\n")).unwrap();
        private(&tokens);
        Pki {
            ca,
            cert,
            key,
            cert_dir,
            htpasswd,
            tokens,
        }
    })
}

impl Pki {
    /// `ferry serve` arguments for TLS, the htpasswd and the token file.
    pub fn serve_args(&self) -> Vec<String> {
        [
            "--tls-cert",
            p(&self.cert),
            "--tls-key",
            p(&self.key),
            "--htpasswd",
            p(&self.htpasswd),
            "--tokens",
            p(&self.tokens),
        ]
        .map(String::from)
        .to_vec()
    }
}
