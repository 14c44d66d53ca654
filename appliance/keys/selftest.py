"""Known-answer tests run before any key is unsealed.

A broken or substituted crypto library must not be trusted with the master
key: if any published vector fails, unsealing is refused. The vectors come
from the primitives' own specifications, so they check the libraries, not
Citadel's code against itself.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from argon2.low_level import Type, hash_secret_raw
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from appliance.keys.errors import SelfTestFailed
from appliance.keys.primitives import equal, hkdf, hmac_sha256

h = bytes.fromhex

# The GCM specification (McGrew & Viega), test case 16: AES-256, 96-bit IV, with AAD.
GCM_KEY = h("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
GCM_IV = h("cafebabefacedbaddecaf888")
GCM_PLAINTEXT = h(
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
)
GCM_AAD = h("feedfacedeadbeeffeedfacedeadbeefabaddad2")
GCM_CIPHERTEXT_AND_TAG = h(
    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
    "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
    "76fc6ece0f4e1768cddf8853bb2d551b"
)


def _aes_gcm() -> bool:
    cipher = AESGCM(GCM_KEY)
    sealed = cipher.encrypt(GCM_IV, GCM_PLAINTEXT, GCM_AAD)
    opened = cipher.decrypt(GCM_IV, GCM_CIPHERTEXT_AND_TAG, GCM_AAD)
    tampered = bytearray(GCM_CIPHERTEXT_AND_TAG)
    tampered[0] ^= 1
    try:
        cipher.decrypt(GCM_IV, bytes(tampered), GCM_AAD)
    except Exception:
        rejects = True
    else:
        rejects = False
    return equal(sealed, GCM_CIPHERTEXT_AND_TAG) and opened == GCM_PLAINTEXT and rejects


def _hkdf() -> bool:
    # RFC 5869, appendix A.1 (SHA-256, test case 1).
    okm = hkdf(b"\x0b" * 22, h("f0f1f2f3f4f5f6f7f8f9"), length=42,
               salt=h("000102030405060708090a0b0c"))
    return equal(okm, h("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c"
                        "5db02d56ecc4c5bf34007208d5b887185865"))


def _hmac() -> bool:
    # RFC 4231, test cases 1 and 2 (HMAC-SHA256).
    one = hmac_sha256(b"\x0b" * 20, b"Hi There")
    two = hmac_sha256(b"Jefe", b"what do ya want for nothing?")
    return equal(one, h("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")) and \
        equal(two, h("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"))


def _ed25519() -> bool:
    # RFC 8032, section 7.1, TEST 1 (empty message).
    key = Ed25519PrivateKey.from_private_bytes(
        h("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    signature = key.sign(b"")
    key.public_key().verify(signature, b"")
    expected_public = h("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    return equal(public, expected_public) and \
        equal(signature, h("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
                           "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"))


def _argon2id() -> bool:
    # The Argon2 reference implementation's test vectors (phc-winner-argon2
    # src/test.c, version 0x13, Argon2id, t=2, m=256 KiB, p=1 and p=2).
    one = hash_secret_raw(b"password", b"somesalt", 2, 256, 1, 32, Type.ID)
    two = hash_secret_raw(b"password", b"somesalt", 2, 256, 2, 32, Type.ID)
    return equal(one, h("9dfeb910e80bad0311fee20f9c0e2b12c17987b4cac90c2ef54d5b3021c68bfe")) and \
        equal(two, h("6d093c501fd5999645e0ea3bf620d7b8be7fd2db59c20d9fff9539da2bf57037"))


CHECKS: dict[str, Callable[[], bool]] = {
    "AES-256-GCM": _aes_gcm,
    "HKDF-SHA256": _hkdf,
    "HMAC-SHA256": _hmac,
    "Ed25519": _ed25519,
    "Argon2id": _argon2id,
}


def failures(checks: dict[str, Callable[[], bool]] | None = None) -> list[str]:
    """The names of the checks that do not give their published answers."""
    failed = []
    for name, check in (checks or CHECKS).items():
        try:
            ok = check()
        except Exception:
            ok = False
        if not ok:
            failed.append(name)
    return failed


@cache
def _passed_once() -> bool:
    failed = failures()
    if failed:
        raise SelfTestFailed(detail=", ".join(failed))
    return True


def run_self_test() -> None:
    """Raise ``SelfTestFailed`` unless every known-answer test passes (run once per process)."""
    _passed_once()
