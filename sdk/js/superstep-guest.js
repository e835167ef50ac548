// Write superstep executors in JavaScript (built with componentize-js by build.mjs).
//
// An executor is a class with a JSON-serialisable `state` and a `handle(ctx, message)`
// method; `exportExecutor` turns it into the component's exports, with `snapshot` and
// `restore` done for you (the state as JSON):
//
//     import { exportExecutor } from "superstep-guest";
//     class Reverse {
//       state = { count: 0 };
//       handle(ctx, message) {
//         ctx.send("text", [...message.json()].reverse().join(""));
//         this.state.count += 1;
//       }
//     }
//     export const { init, handle, onResponse, snapshot, restore } = exportExecutor(Reverse);
// componentize-js names WIT imports with the package version.
import * as host from "superstep:workflow/context@0.1.0";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Encodes a value as UTF-8 JSON, as the Rust SDK does. */
export function toJson(value) {
  return encoder.encode(JSON.stringify(value));
}

/** A message delivered to an executor. */
export class Incoming {
  constructor(source, kind, body) {
    this.source = source; // the sending executor ("$input" for the run's input)
    this.kind = kind; // the routing kind
    this.body = body; // Uint8Array, JSON by convention
  }

  /** Decodes the body as JSON. */
  json() {
    try {
      return JSON.parse(decoder.decode(this.body));
    } catch (e) {
      throw new Error(`message of kind '${this.kind}' from '${this.source}' is not JSON: ${e.message}`);
    }
  }
}

/** What an executor may do; every effect is buffered by the host until the barrier. */
export class Context {
  constructor(executorId, config) {
    this.executorId = executorId;
    this.config = config; // the manifest's config table, decoded
  }

  /** Sends `value` as JSON along every edge accepting `kind`, or to `target`. */
  send(kind, value, target) {
    this.sendBytes(kind, toJson(value), target);
  }

  /** Sends raw body bytes. */
  sendBytes(kind, body, target) {
    host.sendMessage({ kind, body }, target);
  }

  /** Emits `value` as JSON as a workflow output. */
  yieldOutput(kind, value) {
    host.yieldOutput({ kind, body: toJson(value) });
  }

  /** Reads a shared-state value as JSON (`undefined` when absent). */
  getShared(key) {
    const raw = host.getShared(key);
    return raw === undefined ? undefined : JSON.parse(decoder.decode(raw));
  }

  /** Writes a shared-state value as JSON; others see it after the barrier. */
  setShared(key, value) {
    host.setShared(key, toJson(value));
  }

  /** Deletes a shared-state value at the barrier. */
  deleteShared(key) {
    host.deleteShared(key);
  }

  /** Asks for outside input; returns the request id. */
  requestInfo(kind, value) {
    return host.requestInfo({ kind, body: toJson(value) });
  }

  /** Emits a log event; `level` is trace, debug, info, warn or error. */
  log(level, text) {
    host.log(level, text);
  }
}

/** Runs `call`; any exception becomes the WIT error string instead of a trap. */
function errorsAsErr(call) {
  try {
    return call();
  } catch (e) {
    if (e instanceof StateError) throw e.message;
    throw e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  }
}

/**
 * Returns the world's exports, backed by one instance of `ExecutorClass`. The state is
 * encoded at the end of every call that may change it, so that a state that is not
 * JSON (a BigInt, a cycle) fails that call, naming why, and `snapshot` (which cannot
 * fail but by trapping) returns what was encoded.
 */
export function exportExecutor(ExecutorClass) {
  let ctx;
  let executor;
  let encoded;
  const call = (work) =>
    errorsAsErr(() => {
      work();
      try {
        encoded = toJson(executor.state);
      } catch (e) {
        throw new StateError(`state of '${ctx.executorId}' is not JSON: ${e.message}`);
      }
    });
  return {
    init(executorId, config) {
      call(() => {
        ctx = new Context(executorId, config.length ? JSON.parse(decoder.decode(config)) : {});
        executor = new ExecutorClass();
      });
    },
    handle(envelope) {
      const { kind, body } = envelope.message;
      call(() => executor.handle(ctx, new Incoming(envelope.source, kind, body)));
    },
    onResponse(requestId, response) {
      call(() => {
        if (!executor.onResponse) throw new Error(`executor '${ctx.executorId}' asked for no input`);
        executor.onResponse(ctx, requestId, new Incoming(requestId, response.kind, response.body));
      });
    },
    snapshot() {
      return encoded;
    },
    restore(state) {
      call(() => {
        executor.state = JSON.parse(decoder.decode(state));
      });
    },
  };
}

/** A state that cannot be encoded: its message says so without a class name. */
class StateError extends Error {}
