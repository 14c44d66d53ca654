"""Real PIV software (OpenSC) accepts the virtual card: the card follows the standard."""

from __future__ import annotations

import glob
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from appliance.cards.spec import Slot
from appliance.cards.stack import PcscStack
from appliance.cards.virtual import VirtualCard
from tests.cards.conftest import PIN

MODULES = sorted(glob.glob("/usr/lib/*/opensc-pkcs11.so") + glob.glob("/usr/lib/opensc-pkcs11.so"))
pytestmark = pytest.mark.skipif(not (MODULES and shutil.which("pkcs11-tool")),
                                reason="OpenSC is not installed (apt-get install opensc)")


def tool(stack: PcscStack, *args: str) -> str:
    done = subprocess.run(["pkcs11-tool", "--module", MODULES[0], *args], env=stack.env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_opensc_recognises_a_piv_card(stack: PcscStack, card: VirtualCard) -> None:
    done = subprocess.run(["opensc-tool", "--reader", "0", "--name"], env=stack.env(),
                          capture_output=True, text=True, timeout=60)
    assert "Personal Identity Verification Card" in done.stdout
    assert "Alice" in tool(stack, "--list-slots")


def test_opensc_ecdsa_signature(stack: PcscStack, card: VirtualCard, tmp_path: Path) -> None:
    (tmp_path / "msg").write_bytes(b"signed by OpenSC")
    tool(stack, "--slot-index", "0", "--login", "--pin", PIN, "--sign", "-m", "ECDSA-SHA256",
         "--id", "01", "-i", str(tmp_path / "msg"), "-o", str(tmp_path / "sig"))
    raw = (tmp_path / "sig").read_bytes()
    signature = encode_dss_signature(int.from_bytes(raw[:32], "big"),
                                     int.from_bytes(raw[32:], "big"))
    card.state.keys[Slot.AUTHENTICATION].public_key().verify(
        signature, b"signed by OpenSC", ec.ECDSA(hashes.SHA256()))


def test_opensc_rsa_signature(stack: PcscStack, rsa_card: VirtualCard, tmp_path: Path) -> None:
    (tmp_path / "msg").write_bytes(b"signed by OpenSC")
    tool(stack, "--slot-index", "1", "--login", "--pin", PIN, "--sign", "-m", "SHA256-RSA-PKCS",
         "--id", "01", "-i", str(tmp_path / "msg"), "-o", str(tmp_path / "sig"))
    rsa_card.state.keys[Slot.AUTHENTICATION].public_key().verify(
        (tmp_path / "sig").read_bytes(), b"signed by OpenSC", padding.PKCS1v15(), hashes.SHA256())


def test_opensc_ecdh(stack: PcscStack, card: VirtualCard, tmp_path: Path) -> None:
    peer = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "peer.der").write_bytes(peer.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    tool(stack, "--slot-index", "0", "--login", "--pin", PIN, "--derive", "-m", "ECDH1-DERIVE",
         "--id", "03", "-i", str(tmp_path / "peer.der"), "-o", str(tmp_path / "secret"))
    expected = peer.exchange(ec.ECDH(), card.state.keys[Slot.KEY_MANAGEMENT].public_key())
    assert (tmp_path / "secret").read_bytes() == expected
