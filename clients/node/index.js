// custodian client for Node.js: zero dependencies, `net` only.
//
//   import { createCustodianSigner, signMessage, CustodianError } from 'custodian-client';
//   const signer = createCustodianSigner({ socketPath: '/run/custodian/agent.sock' });
//   const message = await createCloseAppSessionMessage(signer, params);   // @erc7824/nitrolite (v0)
//
//   import { signAppStateUpdate } from 'custodian-client';                // @yellow-org/sdk (v1) app sessions
//   const mine = await signAppStateUpdate(update, { socketPath, quorumSigs: [theirs] });
//   await client.submitAppState(update, [theirs, mine]);
//
//   import { guardChannelClient, createCustodianStateSigner, custodianAddress } from 'custodian-client';  // channels
//   const address = await custodianAddress({ socketPath });
//   const client = await Client.create(wsURL, createCustodianStateSigner(address), txSigner);
//   guardChannelClient(client, { socketPath });
//   await client.deposit(8453n, 'usdc', new Decimal(200));   // custodian checks and signs the channel state
//
// The signer serializes the payload exactly as the Nitrolite SDK does (JSON.stringify, bigints as decimal strings)
// and asks custodian to sign that text, so the SDK's own JSON.stringify({ req, sig }) carries the very bytes that
// were checked and signed.
import net from 'node:net';

/** A refusal or failure, with custodian's stable reason code (CONTRACT §4) where the agent gave one. */
export class CustodianError extends Error {
  constructor(message, { code, reason, auditSeq, figures } = {}) {
    super(message);
    this.name = 'CustodianError';
    /** JSON-RPC error code (-32001 policy, -32002 payload, -32003 audit, …) or 'unreachable' / 'timeout'. */
    this.code = code;
    /** Stable reason such as 'policy.sum_mismatch'; undefined when the agent made no decision. */
    this.reason = reason;
    this.auditSeq = auditSeq;
    this.figures = figures;
  }
}

/** The SDK's serialization of a request payload: bigints become decimal strings. */
export function serializePayload(payload) {
  return JSON.stringify(payload, (_, value) => (typeof value === 'bigint' ? value.toString() : value));
}

const connections = new Map();

/** One persistent connection per socket path, many requests in flight, replies matched by id. */
class Connection {
  constructor(socketPath) {
    this.socketPath = socketPath;
    this.socket = null;
    this.connecting = null;
    this.pending = new Map();
    this.nextId = 1;
    this.buffer = '';
  }

  connect(deadline) {
    if (this.socket) return Promise.resolve(this.socket);
    if (this.connecting) return this.connecting;
    this.connecting = (async () => {
      let delay = 20;
      for (;;) {
        try {
          const socket = await new Promise((resolve, reject) => {
            const s = net.createConnection(this.socketPath);
            s.once('connect', () => resolve(s));
            s.once('error', reject);
          });
          socket.setEncoding('utf8');
          socket.on('data', (chunk) => this.onData(chunk));
          socket.on('close', () => this.onClose());
          socket.on('error', () => {});
          this.socket = socket;
          return socket;
        } catch (error) {
          // The agent may be restarting: retry with backoff until the request's deadline.
          if (Date.now() + delay >= deadline) {
            throw new CustodianError(`cannot reach custodian at ${this.socketPath}: ${error.message}`, {
              code: 'unreachable',
            });
          }
          await new Promise((resolve) => setTimeout(resolve, delay));
          delay = Math.min(delay * 2, 500);
        }
      }
    })().finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  onData(chunk) {
    this.buffer += chunk;
    let newline;
    while ((newline = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, newline);
      this.buffer = this.buffer.slice(newline + 1);
      let reply;
      try {
        reply = JSON.parse(line);
      } catch {
        continue;
      }
      const waiter = this.pending.get(reply.id);
      if (!waiter) {
        // A refusal of the connection itself (-32004, -32600) has no id: it fails everything in flight.
        if (reply.id === null && reply.error) this.failAll(toError(reply.error));
        continue;
      }
      this.pending.delete(reply.id);
      clearTimeout(waiter.timer);
      if (reply.error) waiter.reject(toError(reply.error));
      else waiter.resolve(reply.result);
    }
  }

  onClose() {
    this.socket = null;
    this.buffer = '';
    this.failAll(new CustodianError('the connection to custodian closed', { code: 'unreachable' }));
  }

  failAll(error) {
    for (const [id, waiter] of this.pending) {
      clearTimeout(waiter.timer);
      waiter.reject(error);
      this.pending.delete(id);
    }
  }

  async call(method, params, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    const socket = await this.connect(deadline);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new CustodianError(`custodian did not answer ${method} within ${timeoutMs} ms`, { code: 'timeout' }));
      }, Math.max(1, deadline - Date.now()));
      this.pending.set(id, { resolve, reject, timer });
      socket.write(JSON.stringify({ jsonrpc: '2.0', id, method, params }) + '\n');
    });
  }
}

function toError(error) {
  const data = error.data || {};
  return new CustodianError(error.message, {
    code: error.code,
    reason: data.reason,
    auditSeq: data.audit_seq,
    figures: data.figures,
  });
}

function connection(socketPath) {
  let existing = connections.get(socketPath);
  if (!existing) {
    existing = new Connection(socketPath);
    connections.set(socketPath, existing);
  }
  return existing;
}

/**
 * Asks custodian to sign a NitroRPC message text (a v0 envelope or bare req array, or a v1 frame). Resolves to the
 * `sign` result: { signature, address, request_hash, message, audit_seq }, and for v1 also quorum_sig; rejects with a
 * CustodianError.
 */
export async function signMessage(text, { socketPath, timeoutMs = 10_000 } = {}) {
  if (typeof text !== 'string') throw new TypeError('signMessage takes the message text');
  return connection(socketPath).call('sign', { message: text }, timeoutMs);
}

/**
 * A Nitrolite MessageSigner: given the request payload ([requestId, method, params, timestamp]), returns the
 * signature hex of custodian's key over the payload's SDK serialization.
 */
export function createCustodianSigner({ socketPath, timeoutMs = 10_000 } = {}) {
  if (!socketPath) throw new TypeError('createCustodianSigner needs socketPath');
  return async (payload) => {
    const result = await signMessage(serializePayload(payload), { socketPath, timeoutMs });
    return result.signature;
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Nitrolite v1 (nitronode, @yellow-org/sdk 1.x): custodian signs app-session states as a quorum participant. It reads
// the frame, checks the state against its policy, computes the ABI hash itself from the values it checked and returns
// the quorum signature (0xa1 ‖ EIP-191 signature over that hash) to pass to the SDK's quorumSigs.
// ---------------------------------------------------------------------------------------------------------------

const V1_INTENTS = { 0: 'operate', 1: 'deposit', 2: 'withdraw', 3: 'close' };

/** An amount in plain decimal notation: decimal.js's toString() would write 1e-7, which custodian refuses. */
function plainAmount(amount) {
  if (typeof amount === 'string') return amount;
  if (typeof amount === 'bigint') return amount.toString();
  if (amount && typeof amount.toFixed === 'function' && typeof amount !== 'number') return amount.toFixed();
  throw new TypeError('an amount is a Decimal, a bigint or a decimal string, never a JavaScript number');
}

/** The RPC form of an SDK AppStateUpdateV1 (as @yellow-org/sdk's transformAppStateUpdateToRPC, amounts plain). */
export function appStateUpdateToRPC(update) {
  if (!(update.intent in V1_INTENTS)) throw new TypeError(`custodian signs intents 0-3, not ${update.intent}`);
  return {
    app_session_id: update.appSessionId,
    intent: Number(update.intent),
    version: update.version.toString(),
    allocations: update.allocations.map((a) => ({ participant: a.participant, asset: a.asset, amount: plainAmount(a.amount) })),
    session_data: update.sessionData ?? '',
  };
}

/** The RPC form of an SDK AppDefinitionV1. */
export function appDefinitionToRPC(definition) {
  return {
    application_id: definition.applicationId,
    participants: definition.participants.map((p) => ({ wallet_address: p.walletAddress, signature_weight: p.signatureWeight })),
    quorum: definition.quorum,
    nonce: definition.nonce.toString(),
  };
}

/** A v1 request frame [1, id, method, payload, ts] as text. */
export function v1Frame(method, payload, { requestId = 1, timestamp = Date.now() } = {}) {
  return JSON.stringify([1, requestId, method, payload, timestamp]);
}

/**
 * Asks custodian to sign an app-state update (an SDK AppStateUpdateV1: intent operate, deposit, withdraw or close)
 * and resolves to its quorum signature, for submitAppState(update, quorumSigs) or submitAppSessionDeposit(...).
 * `quorumSigs`: the other participants' signatures so far (they ride along in the audit record). A deposit's
 * `userState` (the depositor's channel state, RPC form) is passed through unread; the quorum signature does not cover
 * it. Rejects with a CustodianError (reason e.g. 'policy.close_not_current') when the policy refuses.
 */
export async function signAppStateUpdate(update, { socketPath, quorumSigs = [], userState, timeoutMs = 10_000 } = {}) {
  const payload = { app_state_update: appStateUpdateToRPC(update), quorum_sigs: quorumSigs };
  let method = 'app_sessions.v1.submit_app_state';
  if (Number(update.intent) === 1) {
    method = 'app_sessions.v1.submit_deposit_state';
    payload.user_state = userState ?? {};
  }
  const result = await signMessage(v1Frame(method, payload), { socketPath, timeoutMs });
  return result.quorum_sig;
}

/**
 * Asks custodian to sign the creation of an app session (an SDK AppDefinitionV1 and its session data) and resolves to
 * its quorum signature, for createAppSession(definition, sessionData, quorumSigs).
 */
export async function signAppSessionCreation(definition, sessionData = '', { socketPath, quorumSigs = [], timeoutMs = 10_000 } = {}) {
  const payload = { definition: appDefinitionToRPC(definition), session_data: sessionData, quorum_sigs: quorumSigs };
  const result = await signMessage(v1Frame('app_sessions.v1.create_app_session', payload), { socketPath, timeoutMs });
  return result.quorum_sig;
}

// ---------------------------------------------------------------------------------------------------------------
// Nitrolite v1 home channels (@yellow-org/sdk's Client): the wallet's purse. The SDK hands every channel state to a
// StateSigner as packed bytes, which hide the recipient inside the transition hash; custodian never signs bytes it did
// not build. So the guard below takes the SDK's state-changing RPC calls instead: each request (submit_state,
// request_creation, submit_deposit_state) goes to custodian as the whole frame, custodian rebuilds the state from its
// own copy of the channel, checks it against the policy, signs its own 640-byte message and returns the frame with
// user_sig (and a deposit's quorum signature) filled in; that frame's payload is what reaches nitronode. The node's
// answers to get_latest_state go to custodian's `observe`, so that states the node issues (receives, releases) become
// its base. Nothing reaches custodian as bare bytes: the StateSigner the guard installs refuses every signMessage.
// ---------------------------------------------------------------------------------------------------------------

/** The user_sig the SDK's signState leaves in a state until custodian fills in its own (type byte 0x00, empty). */
export const PENDING_USER_SIG = '0x00';

/**
 * A StateSigner for @yellow-org/sdk that names custodian's address and signs nothing: every signMessage (bare packed
 * bytes, a challenge) is refused. Pair it with guardChannelClient, which sends whole frames instead.
 */
export function createCustodianStateSigner(address) {
  if (!/^0x[0-9a-fA-F]{40}$/.test(address ?? '')) throw new TypeError('createCustodianStateSigner needs the agent address');
  return {
    getAddress: () => address,
    signMessage: async () => {
      throw new CustodianError(
        'custodian signs no bare bytes: channel states go through guardChannelClient, challenges through '
          + '`custodian channel challenge`',
        { code: 'refused', reason: 'payload.method_not_allowed' });
    },
  };
}

/** The agent's address (the `address` method). */
export async function custodianAddress({ socketPath, timeoutMs = 10_000 } = {}) {
  return (await connection(socketPath).call('address', undefined, timeoutMs)).address;
}

const jsonText = (value) => JSON.stringify(value, (_, v) => (typeof v === 'bigint' ? v.toString() : v));

/** Sends `payload` as a v1 frame of `method` to custodian; resolves to the payload of the frame it returns. */
async function signedPayload(method, payload, { socketPath, timeoutMs }) {
  const text = JSON.stringify([1, 1, method, JSON.parse(jsonText(payload)), Date.now()]);
  const result = await signMessage(text, { socketPath, timeoutMs });
  const frame = JSON.parse(result.message);
  return frame[3];
}

/**
 * Guards an @yellow-org/sdk Client (or any object with its rpcClient and signState) so that custodian signs every
 * channel state it sends: deposit, withdraw, transfer, acknowledge, closeHomeChannel, channel creation and
 * submitAppSessionDeposit work as before, with custodian's policy deciding. Give the client a
 * createCustodianStateSigner(address) as its StateSigner. Returns the client. `onObserveError(error)` hears about
 * node answers custodian did not take (custodian then refuses the next state on that channel with its reason).
 */
export function guardChannelClient(client, { socketPath, timeoutMs = 10_000, onObserveError } = {}) {
  const rpc = client?.rpcClient;
  if (!rpc || !socketPath) throw new TypeError('guardChannelClient needs an SDK client (with rpcClient) and socketPath');
  const options = { socketPath, timeoutMs };
  // The SDK packs the state and asks its StateSigner; custodian fills in user_sig at the RPC layer instead.
  client.signState = async () => PENDING_USER_SIG;
  const wrap = (name, method) => {
    const original = rpc[name]?.bind(rpc);
    if (!original) throw new TypeError(`the SDK client's rpcClient has no ${name}`);
    rpc[name] = async (request) => original(await signedPayload(method, request, options));
  };
  wrap('channelsV1SubmitState', 'channels.v1.submit_state');
  wrap('channelsV1RequestCreation', 'channels.v1.request_creation');
  wrap('appSessionsV1SubmitDepositState', 'app_sessions.v1.submit_deposit_state');
  const latest = rpc.channelsV1GetLatestState?.bind(rpc);
  if (latest) {
    rpc.channelsV1GetLatestState = async (request) => {
      const response = await latest(request);
      if (response?.state) {
        const answer = JSON.stringify([2, 1, 'channels.v1.get_latest_state', { state: JSON.parse(jsonText(response.state)) }, Date.now()]);
        try {
          await connection(socketPath).call('observe', { message: answer }, timeoutMs);
        } catch (error) {
          onObserveError?.(error);
        }
      }
      return response;
    };
  }
  return client;
}

/** Closes the client's connections (for a clean process exit). */
export function closeCustodianConnections() {
  for (const existing of connections.values()) existing.socket?.end();
  connections.clear();
}
