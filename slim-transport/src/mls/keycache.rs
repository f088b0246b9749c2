//! The crypto provider of [`super::storage::LeanProvider`]: RustCrypto, except
//! that Ed25519 public keys are decompressed once per key instead of once per
//! signature check, and P-256 signatures are checked with `ring`.
//!
//! Job: openmls checks the sender's signature on every message it decrypts,
//! and RustCrypto's `verify_signature` rebuilds an `ed25519_dalek::VerifyingKey`
//! from the 32 key bytes each time. That is a point decompression (a field
//! square root), about a sixth of a signature check on this project's machine,
//! spent again for every message of the same few senders. [`KeyCachingCrypto`]
//! keeps the decompressed keys it has seen (at most [`MAX_KEYS`]; the cache is
//! emptied when full) and checks signatures with `verify_strict`, exactly as
//! RustCrypto does, with the same errors.
//! Everything else is forwarded to RustCrypto unchanged.

use std::collections::HashMap;
use std::sync::Mutex;

use ed25519_dalek::VerifyingKey;
use openmls::prelude::tls_codec::SecretVLBytes;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::types::{
    AeadType, Ciphersuite, CryptoError, ExporterSecret, HashType, HpkeCiphertext, HpkeConfig,
    HpkeKeyPair, KemOutput, SignatureScheme,
};

/// Keys kept before the cache starts over. A session sees one key per member
/// and epoch; this is far above any group the sessions run.
pub const MAX_KEYS: usize = 1024;

/// RustCrypto with a cache of decompressed Ed25519 verifying keys.
#[derive(Default)]
pub struct KeyCachingCrypto {
    inner: RustCrypto,
    keys: Mutex<HashMap<[u8; 32], VerifyingKey>>,
}

impl KeyCachingCrypto {
    /// The RustCrypto provider everything but Ed25519 verification goes to
    /// (also the randomness source).
    pub fn inner(&self) -> &RustCrypto {
        &self.inner
    }

    /// The verifying key for `pk`, decompressed on first use.
    fn verifying_key(&self, pk: &[u8]) -> Result<VerifyingKey, CryptoError> {
        let bytes: [u8; 32] = pk.try_into().map_err(|_| CryptoError::CryptoLibraryError)?;
        // A poisoned lock only means another thread panicked mid-insert; the
        // map itself is still a valid cache.
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = keys.get(&bytes) {
            return Ok(*key);
        }
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| CryptoError::CryptoLibraryError)?;
        if keys.len() >= MAX_KEYS {
            keys.clear();
        }
        keys.insert(bytes, key);
        Ok(key)
    }

    #[cfg(test)]
    pub fn cached_keys(&self) -> usize {
        self.keys.lock().map_or(0, |k| k.len())
    }
}

impl OpenMlsCrypto for KeyCachingCrypto {
    fn verify_signature(
        &self,
        alg: SignatureScheme,
        data: &[u8],
        pk: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        if alg == SignatureScheme::ECDSA_SECP256R1_SHA256 {
            // `ring` checks P-256 signatures about six times faster than
            // RustCrypto's `p256` on this project's machine (`cargo xtask
            // bench crypto`); same inputs (uncompressed SEC1 key, DER
            // signature), and any refusal is an invalid signature.
            return ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_ASN1,
                pk,
            )
            .verify(data, signature)
            .map_err(|_| CryptoError::InvalidSignature);
        }
        if alg != SignatureScheme::ED25519 {
            return self.inner.verify_signature(alg, data, pk, signature);
        }
        let key = self.verifying_key(pk)?;
        let signature: [u8; ed25519_dalek::SIGNATURE_LENGTH] = signature
            .try_into()
            .map_err(|_| CryptoError::CryptoLibraryError)?;
        key.verify_strict(data, &ed25519_dalek::Signature::from_bytes(&signature))
            .map_err(|_| CryptoError::InvalidSignature)
    }

    fn supports(&self, ciphersuite: Ciphersuite) -> Result<(), CryptoError> {
        self.inner.supports(ciphersuite)
    }

    fn supported_ciphersuites(&self) -> Vec<Ciphersuite> {
        self.inner.supported_ciphersuites()
    }

    fn hkdf_extract(
        &self,
        hash_type: HashType,
        salt: &[u8],
        ikm: &[u8],
    ) -> Result<SecretVLBytes, CryptoError> {
        self.inner.hkdf_extract(hash_type, salt, ikm)
    }

    fn hmac(
        &self,
        hash_type: HashType,
        key: &[u8],
        message: &[u8],
    ) -> Result<SecretVLBytes, CryptoError> {
        self.inner.hmac(hash_type, key, message)
    }

    fn hkdf_expand(
        &self,
        hash_type: HashType,
        prk: &[u8],
        info: &[u8],
        okm_len: usize,
    ) -> Result<SecretVLBytes, CryptoError> {
        self.inner.hkdf_expand(hash_type, prk, info, okm_len)
    }

    fn hash(&self, hash_type: HashType, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.inner.hash(hash_type, data)
    }

    fn aead_encrypt(
        &self,
        alg: AeadType,
        key: &[u8],
        data: &[u8],
        nonce: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        self.inner.aead_encrypt(alg, key, data, nonce, aad)
    }

    fn aead_decrypt(
        &self,
        alg: AeadType,
        key: &[u8],
        ct_tag: &[u8],
        nonce: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        self.inner.aead_decrypt(alg, key, ct_tag, nonce, aad)
    }

    fn signature_key_gen(&self, alg: SignatureScheme) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
        self.inner.signature_key_gen(alg)
    }

    fn sign(&self, alg: SignatureScheme, data: &[u8], key: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.inner.sign(alg, data, key)
    }

    fn hpke_seal(
        &self,
        config: HpkeConfig,
        pk_r: &[u8],
        info: &[u8],
        aad: &[u8],
        ptxt: &[u8],
    ) -> Result<HpkeCiphertext, CryptoError> {
        self.inner.hpke_seal(config, pk_r, info, aad, ptxt)
    }

    fn hpke_open(
        &self,
        config: HpkeConfig,
        input: &HpkeCiphertext,
        sk_r: &[u8],
        info: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        self.inner.hpke_open(config, input, sk_r, info, aad)
    }

    fn hpke_setup_sender_and_export(
        &self,
        config: HpkeConfig,
        pk_r: &[u8],
        info: &[u8],
        exporter_context: &[u8],
        exporter_length: usize,
    ) -> Result<(KemOutput, ExporterSecret), CryptoError> {
        self.inner.hpke_setup_sender_and_export(
            config,
            pk_r,
            info,
            exporter_context,
            exporter_length,
        )
    }

    fn hpke_setup_receiver_and_export(
        &self,
        config: HpkeConfig,
        enc: &[u8],
        sk_r: &[u8],
        info: &[u8],
        exporter_context: &[u8],
        exporter_length: usize,
    ) -> Result<ExporterSecret, CryptoError> {
        self.inner.hpke_setup_receiver_and_export(
            config,
            enc,
            sk_r,
            info,
            exporter_context,
            exporter_length,
        )
    }

    fn derive_hpke_keypair(
        &self,
        config: HpkeConfig,
        ikm: &[u8],
    ) -> Result<HpkeKeyPair, CryptoError> {
        self.inner.derive_hpke_keypair(config, ikm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    /// What RustCrypto answers, to compare with.
    fn reference(data: &[u8], pk: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        RustCrypto::default().verify_signature(SignatureScheme::ED25519, data, pk, sig)
    }

    #[test]
    fn answers_exactly_as_rustcrypto_for_good_bad_and_malformed_signatures() {
        let crypto = KeyCachingCrypto::default();
        let alice = key(1);
        let pk = alice.verifying_key().to_bytes();
        let sig = alice.sign(b"hello").to_bytes();
        let mut flipped = sig;
        flipped[10] ^= 1;
        let other_pk = key(2).verifying_key().to_bytes();
        // Not a point on the curve: decompression fails.
        let mut not_a_point = [0u8; 32];
        not_a_point[0] = 2;
        not_a_point[31] = 0x7f;
        let cases: Vec<(&[u8], &[u8], &[u8])> = vec![
            (b"hello", &pk, &sig),
            (b"hellO", &pk, &sig),
            (b"hello", &pk, &flipped),
            (b"hello", &other_pk, &sig),
            (b"hello", &pk, &sig[..63]),
            (b"hello", &pk[..31], &sig),
            (b"hello", &not_a_point, &sig),
        ];
        // Twice: the second round is answered from the cache.
        for round in 0..2 {
            for (i, (data, pk, sig)) in cases.iter().enumerate() {
                assert_eq!(
                    crypto.verify_signature(SignatureScheme::ED25519, data, pk, sig),
                    reference(data, pk, sig),
                    "case {i}, round {round}"
                );
            }
        }
        assert_eq!(reference(b"hello", &pk, &sig), Ok(()));
        assert_eq!(
            reference(b"hello", &pk, &flipped),
            Err(CryptoError::InvalidSignature)
        );
    }

    #[test]
    fn decompresses_each_key_once_and_starts_over_when_full() {
        let crypto = KeyCachingCrypto::default();
        let alice = key(1);
        let pk = alice.verifying_key().to_bytes();
        for i in 0..10u8 {
            let sig = alice.sign(&[i]).to_bytes();
            crypto
                .verify_signature(SignatureScheme::ED25519, &[i], &pk, &sig)
                .unwrap();
        }
        assert_eq!(crypto.cached_keys(), 1);
        // Fill the cache to the bound with other keys, then one more.
        for n in 0..MAX_KEYS as u32 {
            let mut seed = [0u8; 32];
            seed[..4].copy_from_slice(&n.to_le_bytes());
            seed[4] = 9;
            let k = SigningKey::from_bytes(&seed);
            let sig = k.sign(b"x").to_bytes();
            crypto
                .verify_signature(
                    SignatureScheme::ED25519,
                    b"x",
                    &k.verifying_key().to_bytes(),
                    &sig,
                )
                .unwrap();
        }
        assert!(crypto.cached_keys() <= MAX_KEYS);
        assert!(crypto.cached_keys() >= 1);
    }

    #[test]
    fn p256_signatures_of_either_implementation_verify_with_the_other_and_tampering_is_refused() {
        use p256::ecdsa::signature::Signer as _;
        let scheme = SignatureScheme::ECDSA_SECP256R1_SHA256;
        let crypto = KeyCachingCrypto::default();
        let rust = RustCrypto::default();
        let key = p256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap();
        let pk = key
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        // RustCrypto signs, ring checks.
        let sig: p256::ecdsa::Signature = key.sign(b"payload");
        let der = sig.to_der().as_bytes().to_vec();
        assert_eq!(
            crypto.verify_signature(scheme, b"payload", &pk, &der),
            Ok(())
        );
        // ring signs, RustCrypto checks.
        let ring_key = ring::signature::EcdsaKeyPair::from_private_key_and_public_key(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &key.to_bytes(),
            &pk,
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        let ring_sig = ring_key
            .sign(&ring::rand::SystemRandom::new(), b"payload")
            .unwrap();
        assert_eq!(
            rust.verify_signature(scheme, b"payload", &pk, ring_sig.as_ref()),
            Ok(())
        );
        // Tampered data, signature or key, and garbage, are all refused.
        let mut flipped = der.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let other = p256::ecdsa::SigningKey::from_slice(&[8; 32]).unwrap();
        let other_pk = other
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        for (data, pk, sig) in [
            (&b"payloaD"[..], &pk[..], &der[..]),
            (b"payload", &pk, &flipped),
            (b"payload", &other_pk, &der),
            (b"payload", &pk[..10], &der),
            (b"payload", &pk, &[0x30, 0x02, 0x01]),
        ] {
            assert_eq!(
                crypto.verify_signature(scheme, data, pk, sig),
                Err(CryptoError::InvalidSignature)
            );
        }
    }
}
