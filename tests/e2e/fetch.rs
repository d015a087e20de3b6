//! The verified fetcher against a registry that lies and a connection that breaks:
//! a blob whose bytes differ from its digest is exit 3 and never lands; a resumed
//! download asks for the rest with a Range and gets only that.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;

use super::context::{TestContext, p, run_program, sha256_hex};
use super::images::read_blob;
use super::registry::Registry;

/// A private registry holding a copy of `e2e/docker:v1` as `lie/docker:v1`; returns it
/// and the directory of its storage.
fn private_registry(ctx: &TestContext) -> (Registry, std::path::PathBuf) {
    let root = ctx.path("private");
    std::fs::create_dir_all(&root).unwrap();
    let registry = Registry::start(&root);
    run_program(
        "skopeo",
        [
            "copy",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &format!("docker://{}/e2e/docker:v1", ctx.host()),
            &format!("docker://{}/lie/docker:v1", registry.host),
        ],
    )
    .assert_success();
    (registry, root.join("registry"))
}

#[test]
fn fetch_registry_blob_not_matching_its_digest_is_exit_3() {
    let ctx = TestContext::new();
    let (registry, storage) = private_registry(&ctx);
    let (digest, _) = ctx.images().docker.largest_blob();
    let hex = &digest[7..];
    let data = storage
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&data, &bytes).unwrap();

    let spec = ctx.write_spec(
        "ferry.toml",
        &format!(
            "name = \"lie\"\n[[image]]\nref = \"{}/lie/docker:v1\"\n",
            registry.host
        ),
    );
    let store = ctx.path("store");
    let out = ctx.ferry(["pull", p(&spec), "--store", p(&store)]);
    eprintln!("{}", out.stderr);
    out.assert_code(3)
        .assert_stderr_contains(hex)
        .assert_stderr_contains(&sha256_hex(&bytes));
    assert!(
        !store.join("blobs/sha256").join(hex).exists(),
        "the blob that did not verify landed in the store"
    );
    assert!(!store.join("blobs/sha256").join(sha256_hex(&bytes)).exists());
}

/// A TCP proxy to `upstream` that keeps every byte clients send, to see their requests.
struct Capture {
    addr: String,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Capture {
    fn start(upstream: &str) -> Capture {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let keep = seen.clone();
        let upstream = upstream.to_string();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let keep = keep.clone();
                let (mut c_read, mut s_write) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n) = c_read.read(&mut buf) {
                        if n == 0 || s_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        keep.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    let _ = s_write.shutdown(std::net::Shutdown::Write);
                });
                let (mut s_read, mut c_write) = (server, client);
                thread::spawn(move || {
                    let _ = std::io::copy(&mut s_read, &mut c_write);
                    let _ = c_write.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Capture { addr, seen }
    }

    fn requests(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).to_ascii_lowercase()
    }
}

#[test]
fn fetch_registry_resume_asks_for_the_rest_only() {
    let ctx = TestContext::new();
    let images = ctx.images();
    let proxy = Capture::start(ctx.host());
    let spec = ctx.write_spec(
        "ferry.toml",
        &format!(
            "name = \"resume\"\n[[image]]\nref = \"{}/e2e/multi:v1\"\n",
            proxy.addr
        ),
    );
    let (digest, size) = images.multi.largest_blob();
    let hex = &digest[7..];
    let content = read_blob(&images.layout, &digest);
    let store = ctx.path("store");
    let partial = store.join(".ferry/partial").join(hex);
    std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
    let half = content.len() / 2;
    std::fs::write(&partial, &content[..half]).unwrap();
    // The store must exist for the partial to count.
    init_store(&store);
    ctx.ferry(["pull", p(&spec), "--store", p(&store)])
        .assert_success();
    let got = std::fs::read(store.join("blobs/sha256").join(hex)).unwrap();
    assert_eq!(sha256_hex(&got), hex);
    let requests = proxy.requests();
    let range = format!("range: bytes={half}-");
    assert!(
        requests.contains(&range),
        "no `{range}` for the {size}-byte blob; requests:\n{requests}"
    );
}

fn init_store(store: &Path) {
    std::fs::create_dir_all(store.join("blobs/sha256")).unwrap();
    std::fs::write(
        store.join("oci-layout"),
        "{\"imageLayoutVersion\":\"1.0.0\"}",
    )
    .unwrap();
    std::fs::write(
        store.join("index.json"),
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[]}",
    )
    .unwrap();
}
