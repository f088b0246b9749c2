//! TLS links: a `slim` node serving TLS (cert/key from its config), a second
//! `slim` node linking to it over TLS (`clients:` with `ca_file`), and a
//! `Service` connecting over TLS with a tonic endpoint. Certificates are
//! made with the system `openssl` for each run (a CA and a leaf for
//! `localhost`/127.0.0.1).

mod dataplane_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dataplane_common::*;
use slim_transport::service::Service;
use slimrpc_testkit::{Child, free_port};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes ca.pem, cert.pem, key.pem into a fresh directory.
fn make_certs() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("slim-tls-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("leaf.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .expect("ext");
    openssl(
        &dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "ca.key",
        ],
    );
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-sha256",
            "-days",
            "2",
            "-subj",
            "/CN=slim test CA",
            "-out",
            "ca.pem",
        ],
    );
    openssl(
        &dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "leaf.key",
        ],
    );
    openssl(
        &dir,
        &[
            "pkcs8", "-topk8", "-nocrypt", "-in", "leaf.key", "-out", "key.pem",
        ],
    );
    openssl(
        &dir,
        &[
            "req",
            "-new",
            "-key",
            "key.pem",
            "-subj",
            "/CN=localhost",
            "-out",
            "leaf.csr",
        ],
    );
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-sha256",
            "-extfile",
            "leaf.ext",
            "-out",
            "cert.pem",
        ],
    );
    dir
}

fn node(label: &str, cfg_body: String, dir: &Path) -> Child {
    let cfg = dir.join(format!("{label}.yaml"));
    std::fs::write(&cfg, cfg_body).expect("config");
    let mut n = Child::spawn(
        label,
        Command::new(env!("CARGO_BIN_EXE_slim"))
            .arg("--config")
            .arg(&cfg),
    );
    n.wait_for("slim node listening on", LIMIT);
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_and_services_route_over_tls_links() {
    let dir = make_certs();
    let (port_a, port_b) = (free_port(), free_port());
    let d = dir.display();
    // Node A: TLS server only.
    let _a = node(
        "slim-tls-a",
        format!(
            "services:\n  slim/0:\n    dataplane:\n      servers:\n        - endpoint: \"127.0.0.1:{port_a}\"\n          tls:\n            cert_file: \"{d}/cert.pem\"\n            key_file: \"{d}/key.pem\"\n"
        ),
        &dir,
    );
    // Node B: plain server for apps, TLS upstream link to A.
    let mut b = node(
        "slim-tls-b",
        format!(
            "services:\n  slim/0:\n    dataplane:\n      servers:\n        - endpoint: \"127.0.0.1:{port_b}\"\n          tls:\n            insecure: true\n      clients:\n        - endpoint: \"https://localhost:{port_a}\"\n          tls:\n            ca_file: \"{d}/ca.pem\"\n          upstream: true\n"
        ),
        &dir,
    );
    tokio::task::block_in_place(|| b.wait_for("slim node linked to", LIMIT));

    // dave: plain link to B; carol: TLS link to A.
    let dave_side = Service::new();
    let to_b = dave_side
        .connect(&format!("127.0.0.1:{port_b}"))
        .await
        .unwrap();
    let carol_side = Service::new();
    let ca = std::fs::read_to_string(dir.join("ca.pem")).unwrap();
    let ep = Endpoint::from_shared(format!("https://localhost:{port_a}"))
        .unwrap()
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))
        .unwrap();
    let to_a = carol_side.connect_endpoint(ep, false).await.unwrap();

    let mut dave_app = dave_side.local_connection();
    let mut carol_app = carol_side.local_connection();
    let dave = name("org/ns/dave/4");
    let carol = name("org/ns/carol/3");
    subscribe_acked(&mut dave_app, subscribe(&dave, &dave, 1, None, Some(to_b))).await;
    subscribe_acked(
        &mut carol_app,
        subscribe(&carol, &dave, 2, Some(to_a), None),
    )
    .await;
    // B announces dave to A over TLS; retry until that has happened.
    let start = Instant::now();
    let got = loop {
        assert!(start.elapsed() < LIMIT, "no delivery over TLS");
        carol_app
            .tx
            .send(publish(&carol, &dave, 1, b"over tls"))
            .await
            .unwrap();
        if let Ok(Some(Ok(m))) =
            tokio::time::timeout(Duration::from_millis(250), dave_app.rx.recv()).await
        {
            break m;
        }
    };
    assert_eq!(blob(&got), Some(&b"over tls"[..]));
    dave_side.shutdown().await;
    carol_side.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
