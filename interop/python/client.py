"""client.py is a Python caller of RecoveryService written the way a Python
team would: Debian's grpcio and protobuf with stubs generated from proto/ at
test time by Debian's protoc (so they match the runtime), sealing with
python3-cryptography. `make interop` (interop/run.sh) runs it against a real
recoveryd in front of a real sandboxd and reads its last line,
"N passed, N failed".

Environment (set by interop/run.sh): RECOVERY_ADDR, SANDBOX_URL,
VECTORS_FILE, SERVICE_CONFIG_FILE, SCRATCH_DIR as for the Node client, and
PYTHON_STUBS_DIR, where run.sh generated the stubs.
"""

import base64
import hashlib
import json
import os
import secrets
import sys
import time
import urllib.request
import uuid

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding


def env(name):
    value = os.environ.get(name)
    if not value:
        sys.exit(f"client.py: {name} is not set (run it through make interop)")
    return value


sys.path.insert(0, env("PYTHON_STUBS_DIR"))

import grpc  # noqa: E402  (after the stubs' path is known)
from google.rpc import error_details_pb2, status_pb2  # noqa: E402
from recovery.v1 import error_reason_pb2  # noqa: E402
from recovery.v1 import recovery_service_pb2 as pb  # noqa: E402
from recovery.v1 import recovery_service_pb2_grpc as pb_grpc  # noqa: E402

RECOVERY_ADDR = env("RECOVERY_ADDR")
SANDBOX_URL = env("SANDBOX_URL")
SCRATCH_DIR = env("SCRATCH_DIR")
with open(env("VECTORS_FILE"), encoding="utf-8") as f:
    VECTORS = json.load(f)
with open(env("SERVICE_CONFIG_FILE"), encoding="utf-8") as f:
    SERVICE_CONFIG = f.read()

# The largest plaintext one RSA-4096 OAEP-SHA256 block holds.
MAX_PLAINTEXT = 446
# Every call gets a deadline: a caller that waits forever hangs whenever
# anything downstream does.
UNARY_TIMEOUT_S = 30
FILE_TIMEOUT_S = 300
FILE_BYTES = 3 * 1024 * 1024 + 321  # a few MiB, not a multiple of the chunk size
CHUNK_BYTES = 256 * 1024

# What a Python caller should write: SHA-256 as the OAEP hash AND as the MGF1
# hash (cryptography makes the caller name both).
OAEP_SHA256 = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
# The classic mistake, made on purpose: an MGF1-SHA1 mask.
OAEP_MGF1_SHA1 = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA256(), label=None)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def pem_from_hex(hex_spki):
    """Converts the upstream's hex SPKI with cryptography, not by hand."""
    key = serialization.load_der_public_key(bytes.fromhex(hex_spki))
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def error_reason(err):
    """Returns ErrorInfo.reason from a gRPC error's rich details, or None."""
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    return info.reason
    return None


def expect_refusal(call, code, reason):
    try:
        call()
    except grpc.RpcError as err:
        got = error_reason(err)
        if err.code() != code or got != reason:
            raise AssertionError(f"refused with {err.code().name} {got}, want {code.name} {reason}") from None
        if "ERROR_REASON_" + got not in error_reason_pb2.ErrorReason.keys():
            raise AssertionError(f"reason {got} is not in the proto's enum ErrorReason") from None
        return
    raise AssertionError(f"succeeded, want {code.name} {reason}")


def sandbox(method, path):
    req = urllib.request.Request(SANDBOX_URL + path, method=method)
    with urllib.request.urlopen(req, timeout=UNARY_TIMEOUT_S) as res:  # loopback test emulator
        return res.read()


def recovered(backup_id):
    body = json.loads(sandbox("POST", f"/sandbox/v1/backups/{backup_id}/recover"))
    return base64.b64decode(body["plaintext"])


def sandbox_backups_for(key_id):
    return [b for b in json.loads(sandbox("GET", "/sandbox/v1/backups"))["backups"] if b["key_id"] == key_id]


passed = failed = 0


def check(name):
    def run(fn):
        global passed, failed
        try:
            fn()
            passed += 1
            print(f"ok - {name}", flush=True)
        except Exception as err:  # noqa: BLE001 — any failure is a failed check
            failed += 1
            print(f"not ok - {name}: {type(err).__name__}: {err}", flush=True)

    return run


RUN = f"{int(time.time() * 1000)}-{secrets.token_hex(4)}"
CUSTOMER_ID = f"interop-python-{RUN}"
state = {}

channel = grpc.insecure_channel(
    RECOVERY_ADDR,
    options=[("grpc.service_config", SERVICE_CONFIG), ("grpc.enable_retries", 1)],
)
stub = pb_grpc.RecoveryServiceStub(channel)


def assign_request():
    return pb.AssignKeyRequest(
        user_identifier=f"user-{RUN}",
        key_environment=pb.KEY_ENVIRONMENT_HOT,
        organisation=pb.Organisation(customer_id=CUSTOMER_ID, customer_name="Interop Python"),
        package=pb.Package(package_id="interop-pkg", package_name="Interop package"),
    )


@check("vectors: hex → PEM and fingerprint with cryptography")
def _():
    for k in VECTORS["keys"]:
        assert pem_from_hex(k["public_key_hex"]) == k["public_key_pem"], f"{k['name']}: PEM differs"
        assert sha256(bytes.fromhex(k["public_key_hex"])) == k["fingerprint_sha256"], f"{k['name']}: fingerprint differs"
    for c in VECTORS["checksums"]:
        assert sha256(bytes.fromhex(c["plaintext_hex"])) == c["checksum_sha256"], "checksum differs"


@check("vectors: OAEP(MGF1(SHA256), SHA256) opens the valid blocks, not the MGF1-SHA1 mistake")
def _():
    privs = {k["name"]: serialization.load_pem_private_key(k["private_key_pem"].encode(), password=None) for k in VECTORS["keys"]}
    for c in VECTORS["ciphertexts"]:
        try:
            got = privs[c["key"]].decrypt(bytes.fromhex(c["ciphertext_hex"]), OAEP_SHA256)
        except ValueError:
            got = None
        if c["valid"]:
            assert got is not None and got.hex() == c["plaintext_hex"], f"{c['key']}: valid block did not open"
        else:
            assert got is None, f"{c['key']}: the {c['mgf1_hash']} mistake opened with MGF1-SHA256"
            opened = privs[c["key"]].decrypt(bytes.fromhex(c["ciphertext_hex"]), OAEP_MGF1_SHA1)
            assert opened.hex() == c["plaintext_hex"], "the mistake is not an MGF1-SHA1 block"


@check("AssignKey: the PEM is the hex converted by cryptography, the fingerprint its SHA-256")
def _():
    res = stub.AssignKey(assign_request(), timeout=UNARY_TIMEOUT_S)
    assert not res.already_assigned, "a new customer came back already_assigned"
    assert res.key.public_key_pem == pem_from_hex(res.key.public_key_hex), "public_key_pem is not the hex converted"
    assert res.key.fingerprint_sha256 == sha256(bytes.fromhex(res.key.public_key_hex)), "fingerprint is not SHA-256 of the DER"
    state["key"] = res.key


@check("AssignKey again: the recorded key, already_assigned")
def _():
    res = stub.AssignKey(assign_request(), timeout=UNARY_TIMEOUT_S)
    assert res.already_assigned and res.key.key_id == state["key"].key_id, "a repeat did not return the recorded key"


@check("SecureData plaintext: recovered exactly; a retry with its idempotency_key stores nothing new")
def _():
    plaintext = f"python plaintext seed phrase {RUN}".encode()
    request = pb.SecureDataRequest(
        key_id=state["key"].key_id,
        plaintext=plaintext,
        metadata=pb.BackupMetadata(description="interop python plaintext", content_type="text/plain"),
        idempotency_key=f"python-plain-{RUN}",
    )
    res = stub.SecureData(request, timeout=UNARY_TIMEOUT_S)
    assert res.backup.checksum_sha256 == sha256(plaintext), "checksum is not SHA-256 of the plaintext"
    assert recovered(res.backup.backup_id) == plaintext, "the sandbox recovered other bytes"
    retried = stub.SecureData(request, timeout=UNARY_TIMEOUT_S)
    assert retried.backup.backup_id == res.backup.backup_id, "a retry with the same idempotency_key stored another backup"
    state["plain"] = res.backup.backup_id


def seal(plaintext, oaep):
    key = serialization.load_pem_public_key(state["key"].public_key_pem.encode())
    return pb.SealedPayload(ciphertext=key.encrypt(plaintext, oaep), checksum_sha256=sha256(plaintext))


@check("SecureData sealed by cryptography OAEP-SHA256: recovered exactly")
def _():
    plaintext = secrets.token_bytes(MAX_PLAINTEXT)
    res = stub.SecureData(
        pb.SecureDataRequest(
            public_key_hex=state["key"].public_key_hex,
            sealed=seal(plaintext, OAEP_SHA256),
            metadata=pb.BackupMetadata(description="interop python sealed"),
            idempotency_key=f"python-sealed-{RUN}",
        ),
        timeout=UNARY_TIMEOUT_S,
    )
    assert res.backup.key_id == state["key"].key_id, "stored under another key"
    assert recovered(res.backup.backup_id) == plaintext, "the sandbox recovered other bytes"
    state["sealed"] = res.backup.backup_id


@check(f"SecureFile: {FILE_BYTES} bytes streamed in {CHUNK_BYTES}-byte chunks, held byte for byte")
def _():
    path = os.path.join(SCRATCH_DIR, "python-file.bin")
    with open(path, "wb") as f:
        f.write(secrets.token_bytes(FILE_BYTES))
    with open(path, "rb") as f:
        digest = sha256(f.read())

    def requests():
        yield pb.SecureFileRequest(
            header=pb.SecureFileHeader(
                key_id=state["key"].key_id,
                metadata=pb.BackupMetadata(original_filename="python-file.bin", content_type="application/octet-stream"),
                size_bytes=FILE_BYTES,
                sha256=digest,
                idempotency_key=f"python-file-{RUN}",
            )
        )
        # Read as sent: the file is never held in memory whole.
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                yield pb.SecureFileRequest(chunk=chunk)

    res = stub.SecureFile(requests(), timeout=FILE_TIMEOUT_S)
    assert res.backup.checksum_sha256 == digest and res.backup.size_bytes == FILE_BYTES, "checksum or size differs"
    with open(path, "rb") as f:
        assert sandbox("GET", f"/sandbox/v1/backups/{res.backup.backup_id}/content") == f.read(), "the sandbox holds other bytes"
    state["file"] = res.backup.backup_id


@check("ListBackups shows the three backups; GetKey returns the key")
def _():
    listed = stub.ListBackups(pb.ListBackupsRequest(key_id=state["key"].key_id), timeout=UNARY_TIMEOUT_S)
    ids = {b.backup_id for b in listed.backups}
    for backup_id in (state["plain"], state["sealed"], state["file"]):
        assert backup_id in ids, f"backup {backup_id} not listed"
    state["listed"] = len(listed.backups)
    got = stub.GetKey(pb.GetKeyRequest(key_id=state["key"].key_id), timeout=UNARY_TIMEOUT_S)
    assert got.key.public_key_pem == state["key"].public_key_pem, "GetKey differs"
    assert got.key.fingerprint_sha256 == state["key"].fingerprint_sha256, "GetKey differs"


@check("447-byte plaintext: INVALID_ARGUMENT, PLAINTEXT_TOO_LARGE")
def _():
    req = pb.SecureDataRequest(key_id=state["key"].key_id, plaintext=b"a" * (MAX_PLAINTEXT + 1))
    expect_refusal(lambda: stub.SecureData(req, timeout=UNARY_TIMEOUT_S), grpc.StatusCode.INVALID_ARGUMENT, "PLAINTEXT_TOO_LARGE")


@check("unknown key: NOT_FOUND, KEY_NOT_FOUND")
def _():
    req = pb.SecureDataRequest(key_id=str(uuid.uuid4()), plaintext=b"x")
    expect_refusal(lambda: stub.SecureData(req, timeout=UNARY_TIMEOUT_S), grpc.StatusCode.NOT_FOUND, "KEY_NOT_FOUND")


@check("the MGF1-SHA1 mistake: INVALID_ARGUMENT, UPSTREAM_REJECTED_REQUEST, nothing stored")
def _():
    before = len(sandbox_backups_for(state["key"].key_id))
    req = pb.SecureDataRequest(
        key_id=state["key"].key_id,
        sealed=seal(f"mistaken {RUN}".encode(), OAEP_MGF1_SHA1),
        idempotency_key=f"python-mistake-{RUN}",
    )
    expect_refusal(
        lambda: stub.SecureData(req, timeout=UNARY_TIMEOUT_S), grpc.StatusCode.INVALID_ARGUMENT, "UPSTREAM_REJECTED_REQUEST"
    )
    listed = stub.ListBackups(pb.ListBackupsRequest(key_id=state["key"].key_id), timeout=UNARY_TIMEOUT_S)
    assert len(listed.backups) == state["listed"], f"ListBackups went from {state['listed']} to {len(listed.backups)}"
    assert len(sandbox_backups_for(state["key"].key_id)) == before, "the sandbox stored something"


channel.close()
print(f"{passed} passed, {failed} failed", flush=True)
sys.exit(0 if failed == 0 else 1)
