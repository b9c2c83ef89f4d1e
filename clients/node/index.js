// custodian client for Node.js: zero dependencies, `net` only.
//
//   import { createCustodianSigner, signMessage, CustodianError } from 'custodian-client';
//   const signer = createCustodianSigner({ socketPath: '/run/custodian/agent.sock' });
//   const message = await createCloseAppSessionMessage(signer, params);   // @erc7824/nitrolite (v0)
//
//   import { signAppStateUpdate } from 'custodian-client';                // @yellow-org/sdk (v1)
//   const mine = await signAppStateUpdate(update, { socketPath, quorumSigs: [theirs] });
//   await client.submitAppState(update, [theirs, mine]);
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

/** Closes the client's connections (for a clean process exit). */
export function closeCustodianConnections() {
  for (const existing of connections.values()) existing.socket?.end();
  connections.clear();
}
