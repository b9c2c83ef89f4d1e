// custodian client for Node.js: zero dependencies, `net` only.
//
//   import { createCustodianSigner, signMessage, CustodianError } from 'custodian-client';
//   const signer = createCustodianSigner({ socketPath: '/run/custodian/agent.sock' });
//   const message = await createCloseAppSessionMessage(signer, params);   // @erc7824/nitrolite
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
 * Asks custodian to sign a NitroRPC message text (an envelope or a bare req array). Resolves to the `sign`
 * result: { signature, address, request_hash, message, audit_seq }; rejects with a CustodianError.
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

/** Closes the client's connections (for a clean process exit). */
export function closeCustodianConnections() {
  for (const existing of connections.values()) existing.socket?.end();
  connections.clear();
}
