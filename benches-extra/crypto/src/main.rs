//! Signature speed of the crypto implementations an MLS provider can use, on
//! this machine, in one process and one run: ECDSA P-256 with SHA-256 (the
//! signature of the SLIM 3 default suite, `MLS_128_DHKEMP256_AES128GCM_SHA256_P256`;
//! every MLS application message is signed by its sender and verified by
//! each receiver) and Ed25519 (the SLIM 1.3 suite). Prints the median of
//! `RUNS` runs in microseconds per operation; asserts nothing.
//!
//! Candidates: RustCrypto `p256`/`ed25519-dalek` (what `openmls_rust_crypto`
//! and our signer use), `ring` 0.17, `aws-lc-rs` 1, and `libcrux-p256`
//! (formally verified HACL* code, P-256 only).
//!
//! Run: `cargo xtask bench crypto` (or `cargo run --release` here).

use std::time::Instant;

use rand_core::{OsRng, RngCore};

/// Bytes signed per operation: about an MLS application message's signed
/// content (framing, group id, epoch, sender) around a 100-byte payload.
const MESSAGE: usize = 256;
const OPS: usize = 2000;
const RUNS: usize = 5;

/// Median µs per call of `op` over `RUNS` runs of `OPS` calls.
fn time(mut op: impl FnMut(usize)) -> f64 {
    let mut runs: Vec<f64> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            for i in 0..OPS {
                op(i);
            }
            t.elapsed().as_secs_f64() * 1e6 / OPS as f64
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[RUNS / 2]
}

fn row(name: &str, sign: f64, verify: f64) {
    println!(
        "| {name} | {sign:.1} | {verify:.1} | {:.1} |",
        sign + verify
    );
}

fn main() {
    let mut msg = vec![0u8; MESSAGE];
    OsRng.fill_bytes(&mut msg);
    println!("ECDSA P-256 / SHA-256, {MESSAGE}-byte messages, median of {RUNS} runs of {OPS}\n");
    println!("| implementation | sign µs | verify µs | sign + verify µs |");
    println!("|---|---|---|---|");
    p256_rustcrypto(&msg);
    p256_ring(&msg);
    p256_aws_lc(&msg);
    p256_libcrux(&msg);
    println!("\nEd25519, {MESSAGE}-byte messages, median of {RUNS} runs of {OPS}\n");
    println!("| implementation | sign µs | verify µs | sign + verify µs |");
    println!("|---|---|---|---|");
    ed25519_dalek_(&msg);
    ed25519_ring(&msg);
    ed25519_aws_lc(&msg);
}

fn p256_rustcrypto(msg: &[u8]) {
    use p256::ecdsa::signature::{Signer, Verifier};
    use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
    let key = SigningKey::random(&mut OsRng);
    let public = VerifyingKey::from(&key);
    let sig: Signature = key.sign(msg);
    let sign = time(|_| {
        let s: Signature = key.sign(msg);
        std::hint::black_box(s);
    });
    let verify = time(|_| assert!(public.verify(msg, &sig).is_ok()));
    row(
        "RustCrypto `p256` 0.13 (openmls_rust_crypto; ours today)",
        sign,
        verify,
    );
}

fn p256_ring(msg: &[u8]) {
    use ring::rand::SystemRandom;
    use ring::signature::{self, EcdsaKeyPair, KeyPair, UnparsedPublicKey};
    let rng = SystemRandom::new();
    let alg = &signature::ECDSA_P256_SHA256_ASN1_SIGNING;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("key");
    let key = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("key");
    let public = UnparsedPublicKey::new(
        &signature::ECDSA_P256_SHA256_ASN1,
        key.public_key().as_ref().to_vec(),
    );
    let sig = key.sign(&rng, msg).expect("sign");
    let sign = time(|_| {
        std::hint::black_box(key.sign(&rng, msg).expect("sign"));
    });
    let verify = time(|_| assert!(public.verify(msg, sig.as_ref()).is_ok()));
    row("`ring` 0.17", sign, verify);
}

fn p256_aws_lc(msg: &[u8]) {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, UnparsedPublicKey};
    let rng = SystemRandom::new();
    let alg = &signature::ECDSA_P256_SHA256_ASN1_SIGNING;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("key");
    let key = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).expect("key");
    let public = UnparsedPublicKey::new(
        &signature::ECDSA_P256_SHA256_ASN1,
        key.public_key().as_ref().to_vec(),
    );
    let sig = key.sign(&rng, msg).expect("sign");
    let sign = time(|_| {
        std::hint::black_box(key.sign(&rng, msg).expect("sign"));
    });
    let verify = time(|_| assert!(public.verify(msg, sig.as_ref()).is_ok()));
    row("`aws-lc-rs` 1", sign, verify);
}

fn p256_libcrux(msg: &[u8]) {
    let mut private = [0u8; 32];
    while {
        OsRng.fill_bytes(&mut private);
        !libcrux_p256::validate_private_key(&private)
    } {}
    let mut public = [0u8; 64];
    assert!(libcrux_p256::dh_initiator(&mut public, &private));
    let len = msg.len() as u32;
    let mut nonces = vec![[0u8; 32]; OPS];
    for n in &mut nonces {
        while {
            OsRng.fill_bytes(n);
            !libcrux_p256::validate_private_key(n)
        } {}
    }
    let mut sig = [0u8; 64];
    assert!(libcrux_p256::ecdsa_sign_p256_sha2(
        &mut sig, len, msg, &private, &nonces[0]
    ));
    // Nonces are drawn before timing (one per signature, as a real signer
    // must); the other candidates draw theirs inside `sign`.
    let sign = time(|i| {
        let mut s = [0u8; 64];
        assert!(libcrux_p256::ecdsa_sign_p256_sha2(
            &mut s, len, msg, &private, &nonces[i]
        ));
        std::hint::black_box(s);
    });
    let verify = time(|_| {
        assert!(libcrux_p256::ecdsa_verif_p256_sha2(
            len,
            msg,
            &public,
            &sig[..32],
            &sig[32..]
        ))
    });
    row(
        "`libcrux-p256` 0.0.8 (sign without nonce generation)",
        sign,
        verify,
    );
}

fn ed25519_dalek_(msg: &[u8]) {
    use ed25519_dalek::{Signer, SigningKey, Verifier};
    let key = SigningKey::generate(&mut OsRng);
    let public = key.verifying_key();
    let sig = key.sign(msg);
    let sign = time(|_| {
        std::hint::black_box(key.sign(msg));
    });
    let verify = time(|_| assert!(public.verify(msg, &sig).is_ok()));
    row(
        "`ed25519-dalek` 2 (openmls_rust_crypto; ours today)",
        sign,
        verify,
    );
}

fn ed25519_ring(msg: &[u8]) {
    use ring::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("key");
    let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key");
    let public = UnparsedPublicKey::new(&signature::ED25519, key.public_key().as_ref().to_vec());
    let sig = key.sign(msg);
    let sign = time(|_| {
        std::hint::black_box(key.sign(msg));
    });
    let verify = time(|_| assert!(public.verify(msg, sig.as_ref()).is_ok()));
    row("`ring` 0.17", sign, verify);
}

fn ed25519_aws_lc(msg: &[u8]) {
    use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("key");
    let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key");
    let public = UnparsedPublicKey::new(&signature::ED25519, key.public_key().as_ref().to_vec());
    let sig = key.sign(msg);
    let sign = time(|_| {
        std::hint::black_box(key.sign(msg));
    });
    let verify = time(|_| assert!(public.verify(msg, sig.as_ref()).is_ok()));
    row("`aws-lc-rs` 1", sign, verify);
}
