// client.mjs is a Node.js caller of RecoveryService written the way a Node
// team would: @grpc/grpc-js with stubs loaded from proto/ at run time by
// @grpc/proto-loader, sealing with Node's own crypto. `make interop`
// (interop/run.sh) runs it against a real recoveryd in front of a real
// sandboxd and reads its last line, "N passed, N failed".
//
// Environment (set by interop/run.sh):
//   RECOVERY_ADDR        host:port of recoveryd (plaintext gRPC, loopback)
//   SANDBOX_URL          base URL of sandboxd, whose inspection API shows
//                        what the "enclave" holds
//   PROTO_INCLUDE        colon-separated include dirs: proto/ and the
//                        protovalidate proto it imports
//   VECTORS_FILE         keycrypto/testdata/vectors.json
//   SERVICE_CONFIG_FILE  interop/service-config.json (deadlines, retries)
//   SCRATCH_DIR          a temporary directory for the file to stream
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { once } from 'node:events';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { getProtoPath } from 'google-proto-files';
import protobuf from 'protobufjs';

function env(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`client.mjs: ${name} is not set (run it through make interop)`);
    process.exit(2);
  }
  return v;
}

const recoveryAddr = env('RECOVERY_ADDR');
const sandboxURL = env('SANDBOX_URL');
const vectors = JSON.parse(fs.readFileSync(env('VECTORS_FILE'), 'utf8'));
const serviceConfig = fs.readFileSync(env('SERVICE_CONFIG_FILE'), 'utf8');
const scratchDir = env('SCRATCH_DIR');

// The largest plaintext one RSA-4096 OAEP-SHA256 block holds.
const maxPlaintext = 446;
// Every call gets a deadline: a caller that waits forever is a caller
// that hangs when anything downstream does.
const unaryDeadlineMs = 30_000;
const fileDeadlineMs = 300_000;
const fileBytes = 3 * 1024 * 1024 + 123; // a few MiB, not a multiple of the chunk size
const chunkBytes = 256 * 1024;

const packageDefinition = protoLoader.loadSync(['recovery/v1/recovery_service.proto', 'recovery/v1/error_reason.proto'], {
  includeDirs: env('PROTO_INCLUDE').split(':'),
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const recoveryv1 = grpc.loadPackageDefinition(packageDefinition).recovery.v1;
const errorReasons = new Set(
  packageDefinition['recovery.v1.ErrorReason'].type.value.map((v) => v.name),
);

// google.rpc.Status and ErrorInfo decode the rich error details the
// service puts in the grpc-status-details-bin trailer.
const rpcRoot = protobuf.loadSync([getProtoPath('rpc', 'status.proto'), getProtoPath('rpc', 'error_details.proto')]);
const RPCStatus = rpcRoot.lookupType('google.rpc.Status');
const ErrorInfo = rpcRoot.lookupType('google.rpc.ErrorInfo');

const client = new recoveryv1.RecoveryService(recoveryAddr, grpc.credentials.createInsecure(), {
  'grpc.service_config': serviceConfig,
});

const deadline = (ms = unaryDeadlineMs) => new Date(Date.now() + ms);

function unary(method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: deadline() }, (err, response) => (err ? reject(err) : resolve(response)));
  });
}

// errorReason returns ErrorInfo.reason from a gRPC error's details, or
// undefined when the error carries none.
function errorReason(err) {
  const [bin] = err.metadata?.get('grpc-status-details-bin') ?? [];
  if (!bin) return undefined;
  const status = RPCStatus.decode(bin);
  for (const any of status.details) {
    if (any.type_url === 'type.googleapis.com/google.rpc.ErrorInfo') {
      return ErrorInfo.decode(any.value).reason;
    }
  }
  return undefined;
}

// expectRefusal runs call, which must fail with code and reason.
async function expectRefusal(call, code, reason) {
  try {
    await call();
  } catch (err) {
    const got = errorReason(err);
    if (err.code !== code || got !== reason) {
      throw new Error(`refused with ${grpc.status[err.code]} ${got}, want ${grpc.status[code]} ${reason}`);
    }
    if (!errorReasons.has(`ERROR_REASON_${got}`)) {
      throw new Error(`reason ${got} is not in the proto's enum ErrorReason`);
    }
    return;
  }
  throw new Error(`succeeded, want ${grpc.status[code]} ${reason}`);
}

async function sandbox(method, urlPath) {
  const res = await fetch(sandboxURL + urlPath, { method, signal: AbortSignal.timeout(unaryDeadlineMs) });
  if (!res.ok) throw new Error(`sandbox ${method} ${urlPath}: HTTP ${res.status}`);
  return res;
}

async function recovered(backupId) {
  const body = await (await sandbox('POST', `/sandbox/v1/backups/${backupId}/recover`)).json();
  return Buffer.from(body.plaintext, 'base64');
}

async function sandboxBackupsFor(keyId) {
  const body = await (await sandbox('GET', '/sandbox/v1/backups')).json();
  return body.backups.filter((b) => b.key_id === keyId);
}

const sha256 = (b) => crypto.createHash('sha256').update(b).digest('hex');

// pemFromHex converts the upstream's hex SPKI with Node's own crypto, not
// by re-wrapping base64 by hand.
const pemFromHex = (hex) =>
  crypto.createPublicKey({ key: Buffer.from(hex, 'hex'), format: 'der', type: 'spki' }).export({ type: 'spki', format: 'pem' });

// seal is what a Node caller should write: OAEP with SHA-256, which Node
// also uses as the MGF1 hash.
const seal = (pem, plaintext) =>
  crypto.publicEncrypt({ key: pem, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, plaintext);

const open = (privatePEM, ciphertext) =>
  crypto.privateDecrypt({ key: privatePEM, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, ciphertext);

// sealWithMGF1 builds an RSA-OAEP block by hand (RFC 8017 §7.1.1, SHA-256
// label hash) with the given MGF1 hash. NOTE: Node's publicEncrypt ties the
// MGF1 hash to oaepHash, so it cannot make the MGF1-SHA1 mistake; the
// scenario makes it on purpose here to show the service refuses it.
function sealWithMGF1(pem, plaintext, mgf1Hash) {
  const k = 512;
  const hLen = 32;
  const mgf1 = (seed, len) => {
    const out = [];
    for (let counter = 0, have = 0; have < len; counter++) {
      const c = Buffer.alloc(4);
      c.writeUInt32BE(counter);
      const block = crypto.createHash(mgf1Hash).update(seed).update(c).digest();
      out.push(block);
      have += block.length;
    }
    return Buffer.concat(out).subarray(0, len);
  };
  const xor = (a, b) => Buffer.from(a.map((x, i) => x ^ b[i]));
  const lHash = crypto.createHash('sha256').update(Buffer.alloc(0)).digest();
  const db = Buffer.concat([lHash, Buffer.alloc(k - plaintext.length - 2 * hLen - 2), Buffer.from([1]), plaintext]);
  const seed = crypto.randomBytes(hLen);
  const maskedDB = xor(db, mgf1(seed, db.length));
  const maskedSeed = xor(seed, mgf1(maskedDB, hLen));
  const em = Buffer.concat([Buffer.from([0]), maskedSeed, maskedDB]);
  return crypto.publicEncrypt({ key: pem, padding: crypto.constants.RSA_NO_PADDING }, em);
}

let passed = 0;
let failed = 0;
async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok - ${name}`);
  } catch (err) {
    failed++;
    console.log(`not ok - ${name}: ${err.message}`);
  }
}
function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

const run = `${Date.now()}-${crypto.randomBytes(4).toString('hex')}`;
const customerId = `interop-node-${run}`;
const state = {};

await check('vectors: hex → PEM and fingerprint with node:crypto', () => {
  for (const k of vectors.keys) {
    assert(pemFromHex(k.public_key_hex) === k.public_key_pem, `${k.name}: PEM differs`);
    assert(sha256(Buffer.from(k.public_key_hex, 'hex')) === k.fingerprint_sha256, `${k.name}: fingerprint differs`);
  }
  for (const c of vectors.checksums) {
    assert(sha256(Buffer.from(c.plaintext_hex, 'hex')) === c.checksum_sha256, 'checksum differs');
  }
});

await check('vectors: OAEP-SHA256 opens the valid blocks, not the MGF1-SHA1 mistake', () => {
  const privs = Object.fromEntries(vectors.keys.map((k) => [k.name, k.private_key_pem]));
  for (const c of vectors.ciphertexts) {
    let got;
    try {
      got = open(privs[c.key], Buffer.from(c.ciphertext_hex, 'hex'));
    } catch {
      got = undefined;
    }
    if (c.valid) assert(got?.toString('hex') === c.plaintext_hex, `${c.key}: valid block did not open`);
    else assert(got === undefined, `${c.key}: the ${c.mgf1_hash} mistake opened with MGF1-SHA256`);
  }
  // The hand-made encoder is right but for its MGF1 hash: with SHA-256 it
  // makes a block Node opens.
  const k = vectors.keys[0];
  const p = Buffer.from('encoder self-check');
  assert(open(k.private_key_pem, sealWithMGF1(k.public_key_pem, p, 'sha256')).equals(p), 'hand-made OAEP is wrong');
});

await check('AssignKey: the PEM is the hex converted by node:crypto, the fingerprint its SHA-256', async () => {
  const res = await unary('AssignKey', {
    user_identifier: `user-${run}`,
    key_environment: 'KEY_ENVIRONMENT_HOT',
    organisation: { customer_id: customerId, customer_name: 'Interop Node' },
    package: { package_id: 'interop-pkg', package_name: 'Interop package' },
  });
  const key = res.key;
  assert(!res.already_assigned, 'a new customer came back already_assigned');
  assert(key.public_key_pem === pemFromHex(key.public_key_hex), 'public_key_pem is not the hex converted');
  assert(key.fingerprint_sha256 === sha256(Buffer.from(key.public_key_hex, 'hex')), 'fingerprint is not SHA-256 of the DER');
  state.key = key;
});

await check('AssignKey again: the recorded key, already_assigned', async () => {
  const res = await unary('AssignKey', {
    user_identifier: `user-${run}`,
    key_environment: 'KEY_ENVIRONMENT_HOT',
    organisation: { customer_id: customerId, customer_name: 'Interop Node' },
    package: { package_id: 'interop-pkg', package_name: 'Interop package' },
  });
  assert(res.already_assigned && res.key.key_id === state.key.key_id, 'a repeat did not return the recorded key');
});

await check('SecureData plaintext: recovered exactly; a retry with its idempotency_key stores nothing new', async () => {
  const plaintext = Buffer.from(`node plaintext seed phrase ${run}`);
  const request = {
    key_id: state.key.key_id,
    plaintext,
    metadata: { description: 'interop node plaintext', content_type: 'text/plain' },
    idempotency_key: `node-plain-${run}`,
  };
  const res = await unary('SecureData', request);
  assert(res.backup.checksum_sha256 === sha256(plaintext), 'checksum is not SHA-256 of the plaintext');
  assert((await recovered(res.backup.backup_id)).equals(plaintext), 'the sandbox recovered other bytes');
  const retried = await unary('SecureData', request);
  assert(retried.backup.backup_id === res.backup.backup_id, 'a retry with the same idempotency_key stored another backup');
  state.plainBackup = res.backup.backup_id;
});

await check('SecureData sealed by node:crypto OAEP-SHA256: recovered exactly', async () => {
  const plaintext = crypto.randomBytes(maxPlaintext);
  const res = await unary('SecureData', {
    public_key_hex: state.key.public_key_hex,
    sealed: { ciphertext: seal(state.key.public_key_pem, plaintext), checksum_sha256: sha256(plaintext) },
    metadata: { description: 'interop node sealed' },
    idempotency_key: `node-sealed-${run}`,
  });
  assert(res.backup.key_id === state.key.key_id, 'stored under another key');
  assert((await recovered(res.backup.backup_id)).equals(plaintext), 'the sandbox recovered other bytes');
  state.sealedBackup = res.backup.backup_id;
});

await check(`SecureFile: ${fileBytes} bytes streamed in ${chunkBytes}-byte chunks, held byte for byte`, async () => {
  const file = path.join(scratchDir, 'node-file.bin');
  fs.writeFileSync(file, crypto.randomBytes(fileBytes));
  const digest = sha256(fs.readFileSync(file));
  const backup = await new Promise((resolve, reject) => {
    const call = client.SecureFile({ deadline: deadline(fileDeadlineMs) }, (err, res) => (err ? reject(err) : resolve(res.backup)));
    (async () => {
      call.write({
        header: {
          key_id: state.key.key_id,
          metadata: { original_filename: 'node-file.bin', content_type: 'application/octet-stream' },
          size_bytes: String(fileBytes),
          sha256: digest,
          idempotency_key: `node-file-${run}`,
        },
      });
      for await (const chunk of fs.createReadStream(file, { highWaterMark: chunkBytes })) {
        // Backpressure: never queue the whole file in memory.
        if (!call.write({ chunk })) await once(call, 'drain');
      }
      call.end();
    })().catch((err) => {
      call.cancel();
      reject(err);
    });
  });
  assert(backup.checksum_sha256 === digest && Number(backup.size_bytes) === fileBytes, 'checksum or size differs');
  const held = Buffer.from(await (await sandbox('GET', `/sandbox/v1/backups/${backup.backup_id}/content`)).arrayBuffer());
  assert(held.equals(fs.readFileSync(file)), 'the sandbox holds other bytes');
  state.fileBackup = backup.backup_id;
});

await check('ListBackups shows the three backups; GetKey returns the key', async () => {
  const list = await unary('ListBackups', { key_id: state.key.key_id });
  const ids = new Set(list.backups.map((b) => b.backup_id));
  for (const id of [state.plainBackup, state.sealedBackup, state.fileBackup]) assert(ids.has(id), `backup ${id} not listed`);
  state.listed = list.backups.length;
  const got = await unary('GetKey', { key_id: state.key.key_id });
  assert(got.key.public_key_pem === state.key.public_key_pem && got.key.fingerprint_sha256 === state.key.fingerprint_sha256, 'GetKey differs');
});

await check('447-byte plaintext: INVALID_ARGUMENT, PLAINTEXT_TOO_LARGE', () =>
  expectRefusal(
    () => unary('SecureData', { key_id: state.key.key_id, plaintext: Buffer.alloc(maxPlaintext + 1, 0x61) }),
    grpc.status.INVALID_ARGUMENT,
    'PLAINTEXT_TOO_LARGE',
  ));

await check('unknown key: NOT_FOUND, KEY_NOT_FOUND', () =>
  expectRefusal(
    () => unary('SecureData', { key_id: crypto.randomUUID(), plaintext: Buffer.from('x') }),
    grpc.status.NOT_FOUND,
    'KEY_NOT_FOUND',
  ));

await check('the MGF1-SHA1 mistake: INVALID_ARGUMENT, UPSTREAM_REJECTED_REQUEST, nothing stored', async () => {
  const sandboxBefore = (await sandboxBackupsFor(state.key.key_id)).length;
  const plaintext = Buffer.from(`mistaken ${run}`);
  await expectRefusal(
    () =>
      unary('SecureData', {
        key_id: state.key.key_id,
        sealed: { ciphertext: sealWithMGF1(state.key.public_key_pem, plaintext, 'sha1'), checksum_sha256: sha256(plaintext) },
        idempotency_key: `node-mistake-${run}`,
      }),
    grpc.status.INVALID_ARGUMENT,
    'UPSTREAM_REJECTED_REQUEST',
  );
  const list = await unary('ListBackups', { key_id: state.key.key_id });
  assert(list.backups.length === state.listed, `ListBackups went from ${state.listed} to ${list.backups.length}`);
  assert((await sandboxBackupsFor(state.key.key_id)).length === sandboxBefore, 'the sandbox stored something');
});

client.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
