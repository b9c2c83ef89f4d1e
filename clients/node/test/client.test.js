// Tests of the Node client against the real agent, started here (CUSTODIAN_BIN, default the debug build).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, existsSync, rmSync, chmodSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  createCustodianSigner, signMessage, CustodianError, serializePayload, closeCustodianConnections, signAppStateUpdate,
  signAppSessionCreation, appStateUpdateToRPC, v1Frame, guardChannelClient, createCustodianStateSigner,
  custodianAddress, PENDING_USER_SIG,
} from '../index.js';

const repository = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const binary = process.env.CUSTODIAN_BIN || join(repository, '.build', 'debug', 'custodian');
const vector = (path) => JSON.parse(readFileSync(join(repository, 'Tests', 'Vectors', path), 'utf8'));
const keyA = vector('keys/key_A.json');

let workspace;
let socketPath;
let agent;
let serveArguments;

async function startAgent() {
  agent = spawn(binary, serveArguments, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  agent.stderr.on('data', (chunk) => (log += chunk));
  for (let attempt = 0; attempt < 400; attempt++) {
    if (log.includes('serving ')) return;
    if (agent.exitCode !== null) throw new Error(`the agent exited: ${log}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`the agent did not start: ${log}`);
}

async function stopAgent() {
  const exited = new Promise((resolve) => agent.once('exit', resolve));
  agent.kill('SIGTERM');
  await exited;
}

before(async () => {
  assert.ok(existsSync(binary), `no custodian binary at ${binary}: run swift build first`);
  workspace = mkdtempSync('/tmp/cust-node-');
  chmodSync(workspace, 0o700);
  writeFileSync(join(workspace, 'key.hex'), keyA.private_key + '\n', { mode: 0o600 });
  writeFileSync(join(workspace, 'passphrase'), 'node client test\n', { mode: 0o600 });
  execFileSync(binary, [
    'key', 'import', '--key-file', join(workspace, 'key'), '--private-key-file', join(workspace, 'key.hex'),
    '--passphrase-file', join(workspace, 'passphrase'), '--kdf', 'interactive',
  ]);
  // The vectors are from 2024: a wide window.
  writeFileSync(join(workspace, 'policy.toml'), [
    'version = 1', '[requests]',
    'methods = ["create_app_session", "submit_app_state", "close_app_session", "app_sessions.v1.create_app_session",'
      + ' "app_sessions.v1.submit_app_state", "app_sessions.v1.submit_deposit_state"]',
    'max_age_ms = 100000000000000', '[sessions]', '[assets.usdc]', 'decimals = 6', '[counterparties]', 'allow = []',
    '[velocity]', 'window_s = 86400', 'max_own_loss = {}', '',
  ].join('\n'));
  socketPath = join(workspace, 'agent.sock');
  serveArguments = [
    'serve', '--socket', socketPath, '--key-file', join(workspace, 'key'), '--policy', join(workspace, 'policy.toml'),
    '--state-dir', join(workspace, 'state'), '--passphrase-file', join(workspace, 'passphrase'),
  ];
  await startAgent();
});

after(async () => {
  closeCustodianConnections();
  if (agent && agent.exitCode === null) await stopAgent();
  rmSync(workspace, { recursive: true, force: true });
});

test('the signer signs the SDK serialization: JSON.stringify({req, sig}) carries the signed bytes', async () => {
  const v1 = vector('sign/create_v1.json');
  const req = JSON.parse(v1.req);
  assert.equal(serializePayload(req), v1.req, 'the SDK serialization of the payload is the vector text');
  const signer = createCustodianSigner({ socketPath, timeoutMs: 5000 });
  const signature = await signer(req);
  const expected = v1.signatures.find((s) => s.signer === 'A');
  // RFC 6979 makes the signature deterministic: the vector's (made by coincurve and eth-keys) is the oracle.
  assert.equal(signature, expected.signature);
  const other = v1.signatures.find((s) => s.signer === 'B').signature;
  assert.equal(JSON.stringify({ req, sig: [signature, other] }), v1.wire);
});

test('bigints are serialized as the SDK does, and signMessage returns the envelope', async () => {
  const v2 = vector('sign/close_v2.json');
  const req = JSON.parse(v2.req);
  req[0] = BigInt(req[0]);
  req[3] = BigInt(req[3]);
  assert.equal(serializePayload(req), v2.req.replace('[1002,', '["1002",').replace(',1733000060000]', ',"1733000060000"]'));
  const result = await signMessage(v2.req, { socketPath });
  assert.equal(result.address, keyA.address);
  assert.equal(result.signature, v2.signatures.find((s) => s.signer === 'A').signature);
  assert.equal(result.message, `{"req":${v2.req},"sig":["${result.signature}"]}`);
});

test('a refusal surfaces its reason code', async () => {
  const refused = vector('close_policy/reject_sum_off_by_one_unit.json');
  await assert.rejects(signMessage(refused.message, { socketPath }), (error) => {
    assert.ok(error instanceof CustodianError);
    // The V2 close above closed this session: another close of it conflicts.
    assert.equal(error.reason, 'policy.session_closed');
    assert.equal(error.code, -32001);
    assert.equal(typeof error.auditSeq, 'number');
    return true;
  });
  await assert.rejects(signMessage('{"req":[1,"transfer",{},1],"sig":[]}', { socketPath }), (error) => {
    assert.equal(error.reason, 'payload.method_not_allowed');
    return true;
  });
});

test('many requests in flight on one connection', async () => {
  const signer = createCustodianSigner({ socketPath });
  const base = JSON.parse(vector('sign/create_v1.json').req);
  const payloads = Array.from({ length: 40 }, (_, index) => {
    const payload = structuredClone(base);
    payload[0] = 5000 + index;
    payload[2].definition.nonce = 1733000000000 + 1000 + index;
    return payload;
  });
  const signatures = await Promise.all(payloads.map((payload) => signer(payload)));
  assert.equal(new Set(signatures).size, 40);
  for (const signature of signatures) assert.match(signature, /^0x[0-9a-f]{130}$/);
});

test('a restart of the agent mid-run is survived', async () => {
  const signer = createCustodianSigner({ socketPath, timeoutMs: 15000 });
  const base = JSON.parse(vector('sign/create_v1.json').req);
  const payload = (index) => {
    const copy = structuredClone(base);
    copy[0] = 9000 + index;
    copy[2].definition.nonce = 1733000000000 + 9000 + index;
    return copy;
  };
  await signer(payload(1));
  await stopAgent();
  // The agent is down: the next request waits (with backoff) for it to come back, within its timeout.
  const pending = signer(payload(2));
  await new Promise((resolve) => setTimeout(resolve, 300));
  await startAgent();
  assert.match(await pending, /^0x[0-9a-f]{130}$/);
  assert.match(await signer(payload(3)), /^0x[0-9a-f]{130}$/);
});

test('an unreachable agent is a CustodianError with code unreachable', async () => {
  await assert.rejects(signMessage('[]', { socketPath: join(workspace, 'none.sock'), timeoutMs: 200 }), (error) => {
    assert.equal(error.code, 'unreachable');
    return true;
  });
});

// An independent check of a v1 quorum signature: eth-abi computes the state's hash from the frame, eth-keys recovers
// the signer (Tests/EndToEndTests/oracle.py).
const python = process.env.CUSTODIAN_PYTHON || join(repository, '.venv', 'bin', 'python3');
function v1Signer(frameText) {
  const file = join(workspace, `frame-${Math.random()}.json`);
  writeFileSync(file, frameText);
  return execFileSync(python, [join(repository, 'Tests', 'EndToEndTests', 'oracle.py'), 'v1-frame', file], { encoding: 'utf8' }).trim();
}

/** What decimal.js gives the SDK: toString() in exponent notation below 1e-6, toFixed() plain. */
class FakeDecimal {
  constructor(plain, exponent) { this.plain = plain; this.exponent = exponent; }
  toString() { return this.exponent ?? this.plain; }
  toFixed() { return this.plain; }
}

test('v1: create, deposit, operate, withdraw and close of an SDK session; each quorum signature recovers to A', async () => {
  const B = '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266';
  const A = keyA.address;
  const definition = {
    applicationId: 'chess', quorum: 2, nonce: BigInt(Date.now()),
    participants: [{ walletAddress: A, signatureWeight: 1 }, { walletAddress: B, signatureWeight: 1 }],
  };
  const created = await signAppSessionCreation(definition, '', { socketPath });
  assert.match(created, /^0xa1[0-9a-f]{130}$/);
  const payload = { definition: { application_id: 'chess', participants: [{ wallet_address: A, signature_weight: 1 }, { wallet_address: B, signature_weight: 1 }], quorum: 2, nonce: definition.nonce.toString() }, session_data: '', quorum_sigs: [created] };
  assert.equal(v1Signer(v1Frame('app_sessions.v1.create_app_session', payload)), A);
  // The session id, as the agent computed it, from a signMessage of the same create (a retry: the same signature).
  const again = await signMessage(v1Frame('app_sessions.v1.create_app_session', { ...payload, quorum_sigs: [] }), { socketPath });
  assert.equal(again.quorum_sig, created);
  const record = readFileSync(join(workspace, 'state', 'audit.log'), 'utf8').trim().split('\n').map((line) => JSON.parse(line))
    .filter((r) => r.event === 'sign' && r.protocol === 'nitrolite/v1').pop();
  const appSessionId = record.app_session_id;
  const update = (intent, version, a, b, asset = 'usdc') => ({
    appSessionId, intent, version: BigInt(version), sessionData: '',
    allocations: [{ participant: A, asset, amount: a }, { participant: B, asset, amount: b }],
  });
  const steps = [
    update(1, 2, new FakeDecimal('100'), new FakeDecimal('0')),
    update(1, 3, new FakeDecimal('100'), new FakeDecimal('50')),
    update(0, 4, new FakeDecimal('99.9999999', '99.9999999'), new FakeDecimal('50.0000001', '50.0000001')),
    update(2, 5, new FakeDecimal('79.9999999'), new FakeDecimal('50.0000001')),
  ];
  // usdc has 6 decimals: the operate above must be refused; the agent says why.
  await signAppStateUpdate(steps[0], { socketPath }).then(
    () => assert.fail('a zero entry for B, who holds nothing, was signed'),
    (error) => assert.equal(error.reason, 'policy.sum_mismatch'));
  steps[0].allocations.pop();
  for (const step of [steps[0], steps[1]]) {
    const mine = await signAppStateUpdate(step, { socketPath, quorumSigs: ['0xa1' + 'ab'.repeat(65)] });
    const method = step.intent === 1 ? 'app_sessions.v1.submit_deposit_state' : 'app_sessions.v1.submit_app_state';
    const frame = { app_state_update: appStateUpdateToRPC(step), quorum_sigs: ['0xa1' + 'ab'.repeat(65), mine] };
    if (step.intent === 1) frame.user_state = {};
    assert.equal(v1Signer(v1Frame(method, frame)), A, `version ${step.version}`);
  }
  await assert.rejects(signAppStateUpdate(steps[2], { socketPath }), (error) => error.reason === 'policy.precision');
  const operate = update(0, 4, new FakeDecimal('0.0000001', '1e-7'), new FakeDecimal('149.9999999'), 'usdc');
  operate.allocations = [{ participant: A, asset: 'usdc', amount: '70' }, { participant: B, asset: 'usdc', amount: '80' }];
  const withdraw = update(2, 5, '50', '80');
  const close = update(3, 6, '50', '80');
  for (const step of [operate, withdraw, close]) {
    const mine = await signAppStateUpdate(step, { socketPath });
    assert.equal(v1Signer(v1Frame('app_sessions.v1.submit_app_state', { app_state_update: appStateUpdateToRPC(step), quorum_sigs: [mine] })), A);
  }
  // A second, different close of the closed session is refused.
  await assert.rejects(signAppStateUpdate(update(3, 6, '40', '90'), { socketPath }), (error) => {
    assert.ok(error instanceof CustodianError);
    assert.equal(error.reason, 'policy.session_closed');
    return true;
  });
  // Amounts never go through a JavaScript number.
  assert.throws(() => appStateUpdateToRPC(update(0, 7, 1, 2)), TypeError);
  // decimal.js's exponent notation is written plain.
  assert.equal(appStateUpdateToRPC(update(0, 7, new FakeDecimal('0.0000001', '1e-7'), '1')).allocations[0].amount, '0.0000001');
});

/**
 * The parts of @yellow-org/sdk's Client (read at v1.4.1: client.ts) the channel guard relies on: high-level calls
 * build the next state, call this.signState(state) (which packs it and hands the bytes to the StateSigner), set the
 * result as user_sig and send the RPC form through this.rpcClient. Here the RPC client records what would reach the
 * node; the states are channel.json's (generate_channel.py, eth-abi and eth-account).
 */
class SdkShapedClient {
  constructor(stateSigner, answers = []) {
    this.stateSigner = stateSigner;
    this.sent = [];
    const record = (method) => async (request) => {
      this.sent.push({ method, request: structuredClone(request) });
      return { signature: '0x00' + '11'.repeat(65) };
    };
    this.rpcClient = {
      channelsV1RequestCreation: record('request_creation'),
      channelsV1SubmitState: record('submit_state'),
      appSessionsV1SubmitDepositState: record('submit_deposit_state'),
      channelsV1GetLatestState: async () => ({ state: answers.shift() ?? null }),
    };
  }

  async signState() {
    return this.stateSigner.signMessage('0x01' + '00'.repeat(639));
  }

  async create(state, channelDefinition) {
    const next = structuredClone(state);
    next.user_sig = await this.signState(next);
    return this.rpcClient.channelsV1RequestCreation({ state: next, channel_definition: channelDefinition });
  }

  async submit(state) {
    await this.rpcClient.channelsV1GetLatestState({ wallet: state.user_wallet, asset: state.asset, only_signed: false });
    const next = structuredClone(state);
    next.user_sig = await this.signState(next);
    return this.rpcClient.channelsV1SubmitState({ state: next });
  }

  async submitAppSessionDeposit(update, quorumSigs, commit) {
    const next = structuredClone(commit);
    next.user_sig = await this.signState(next);
    return this.rpcClient.appSessionsV1SubmitDepositState({ app_state_update: update, quorum_sigs: quorumSigs, user_state: next });
  }
}

test('v1 channels: an SDK-shaped client guarded by custodian creates, deposits and funds a session; custodian signs whole frames, never bytes', async () => {
  const fixture = JSON.parse(readFileSync(join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'channel.json'), 'utf8'));
  const dir = join(workspace, 'channels');
  const policy = readFileSync(join(workspace, 'policy.toml'), 'utf8') + [
    '[channels]', `node = "${fixture.node}"`, 'min_challenge_s = 86400', '[channels.assets.usdc]',
    `blockchain_id = ${fixture.blockchain_id}`, 'token = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"',
    'max_transfer = "50"', 'max_outflow = "150"', '[channels.transfers]', `allow = ["${fixture.recipient}"]`, '',
  ].join('\n');
  writeFileSync(join(workspace, 'channels.toml'), policy);
  const channelSocket = join(workspace, 'channels.sock');
  const channelAgent = spawn(binary, [
    'serve', '--socket', channelSocket, '--key-file', join(workspace, 'key'), '--policy', join(workspace, 'channels.toml'),
    '--state-dir', dir, '--passphrase-file', join(workspace, 'passphrase'),
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  channelAgent.stderr.on('data', (chunk) => (log += chunk));
  try {
    for (let attempt = 0; attempt < 400 && !log.includes('serving '); attempt++) {
      assert.equal(channelAgent.exitCode, null, log);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    const options = { socketPath: channelSocket, timeoutMs: 5000 };
    const address = await custodianAddress(options);
    assert.equal(address, fixture.agent);
    const signer = createCustodianStateSigner(address);
    // Bare bytes are refused outright: nothing reaches custodian that way.
    await assert.rejects(signer.signMessage('0x01'), (error) => error.reason === 'payload.method_not_allowed');
    const observed = [];
    const client = guardChannelClient(new SdkShapedClient(signer), { ...options, onObserveError: (e) => observed.push(e) });
    assert.equal(await client.signState(), PENDING_USER_SIG);

    // Each request reaches the node as sent, with custodian's user_sig: eth-account's signature (RFC 6979) of the
    // message eth-abi builds from the same state.
    const { acknowledgement, home_deposit: deposit, commit } = fixture.states;
    await client.create(acknowledgement, fixture.channel_definition);
    assert.deepEqual(client.sent[0].request.state, { ...acknowledgement, user_sig: fixture.user_sigs.acknowledgement });
    assert.deepEqual(client.sent[0].request.channel_definition, fixture.channel_definition);
    await client.submit(deposit);
    assert.deepEqual(client.sent[1].request.state, { ...deposit, user_sig: fixture.user_sigs.home_deposit });

    // A state the policy refuses never reaches the node: a transfer past max_transfer (the ledger is the client's).
    const over = structuredClone(deposit);
    over.version = '3';
    over.transition = { ...over.transition, type: 30, account_id: fixture.recipient.toLowerCase(), amount: '60' };
    await assert.rejects(client.submit(over), (error) => error instanceof CustodianError && error.reason?.startsWith('policy.'));
    assert.equal(client.sent.length, 2);

    // The session, then its deposit funded by the commit: both signatures in one frame.
    await signAppSessionCreation({
      applicationId: 'chess', quorum: 2, nonce: BigInt(fixture.definition.nonce),
      participants: fixture.definition.participants.map((p) => ({ walletAddress: p.wallet_address, signatureWeight: p.signature_weight })),
    }, '', options);
    const stolen = structuredClone(fixture.deposit_update);
    stolen.allocations = [{ participant: fixture.recipient, asset: 'usdc', amount: '100' }];
    await assert.rejects(client.submitAppSessionDeposit(stolen, [], commit), (error) => error.reason === 'policy.commit_unpaired');
    await client.submitAppSessionDeposit(fixture.deposit_update, [], commit);
    const funded = client.sent[2].request;
    assert.deepEqual(funded.user_state, { ...commit, user_sig: fixture.user_sigs.commit });
    assert.deepEqual(funded.quorum_sigs, [fixture.deposit_quorum_sig]);
    assert.deepEqual(funded.app_state_update, fixture.deposit_update);
    assert.deepEqual(observed, []);
  } finally {
    const exited = new Promise((resolve) => channelAgent.once('exit', resolve));
    channelAgent.kill('SIGTERM');
    await exited;
  }
});
