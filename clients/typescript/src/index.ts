/**
 * Switchyard's events client: sends a product's events with a workspace's publishable key.
 *
 * - Every call carries an idempotency key (generated unless given), and every retry of the call
 *   carries the same one, so a retry never stores an event twice.
 * - Retries, with exponential backoff and full jitter, follow network errors, timeouts, 429 (after
 *   its `Retry-After`) and 5xx answers; other answers are final.
 * - No dependencies: the platform's `fetch` (Node 18+, browsers, edge runtimes), or one you pass.
 */

/** One event, as `POST /api/v1/events` takes it. */
export interface SwitchyardEvent {
  /** The event's name: 1..128 characters of `[A-Za-z0-9_.:-]`, e.g. `user.created`. */
  event: string;
  /** A JSON object; `{}` when absent. */
  payload?: Record<string, unknown>;
  /** The product's record the event is about (give both or neither). */
  resource?: string;
  resource_id?: string;
  /** When it happened in the product. */
  occurred_at?: string | Date;
  /** Makes a repeat of this event (within 24 hours) return the first instead of storing another. */
  idempotency_key?: string;
}

export interface SwitchyardOptions {
  /** Where Switchyard is, e.g. `https://switchyard.example.com`. Default `http://127.0.0.1:8080`. */
  baseUrl?: string;
  /** How long one attempt may take, in milliseconds (default 10,000). */
  timeoutMs?: number;
  /** Retries after the first attempt (default 3). */
  retries?: number;
  /** The first backoff, in milliseconds (default 250); each retry waits up to twice the last. */
  backoffMs?: number;
  /** The longest a single wait may be, in milliseconds (default 10,000). */
  maxBackoffMs?: number;
  /** A `fetch` to use instead of the global one. */
  fetch?: typeof fetch;
}

export interface EmitOptions {
  /** The call's idempotency key; one is generated when absent. */
  idempotencyKey?: string;
  signal?: AbortSignal;
}

/** What Switchyard answered for an accepted event. */
export interface Accepted {
  id: string;
  event: string;
  workspace_id: string;
  received_at: string;
  status: string;
  /** True when the idempotency key matched an earlier event (the answer names that one). */
  duplicate: boolean;
}

/** One event of a batch: accepted (with its id), a duplicate of an earlier one, or refused. */
export interface BatchItem {
  /** Its index in the array given to `emitBatch`. */
  index: number;
  id?: string;
  duplicate?: boolean;
  error?: { code: string; message: string; details?: { field: string; message: string }[] };
}

export interface BatchResult {
  accepted: number;
  rejected: number;
  results: BatchItem[];
}

/** A refusal or failure, with the API's error code and message. */
export class SwitchyardError extends Error {
  /** The HTTP status, or 0 when no answer came (see `code`). */
  readonly status: number;
  /** The API's stable code (`validation_failed`, `unauthorized`, ...), or `network` / `timeout`. */
  readonly code: string;
  readonly details: { field: string; message: string }[];
  /** Seconds the server asked to wait (429, 503). */
  readonly retryAfter?: number;
  /** How many attempts were made. */
  readonly attempts: number;

  constructor(init: { status: number; code: string; message: string; details?: { field: string; message: string }[]; retryAfter?: number; attempts: number }) {
    super(init.message);
    this.name = "SwitchyardError";
    this.status = init.status;
    this.code = init.code;
    this.details = init.details ?? [];
    this.retryAfter = init.retryAfter;
    this.attempts = init.attempts;
  }
}

/** The server's limits on one bulk request. */
export const MAX_BATCH_EVENTS = 1000;
export const MAX_BATCH_BYTES = 15 * 1024 * 1024;

/** A random idempotency key (a UUID where the platform has one). */
export function newIdempotencyKey(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string; getRandomValues?: (a: Uint8Array) => Uint8Array } }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  const bytes = new Uint8Array(16);
  if (c?.getRandomValues) c.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

interface Answer {
  status: number;
  body: unknown;
  /** `Retry-After`, in seconds, when the answer had one. */
  retryAfter?: number;
}

export class Switchyard {
  private readonly key: string;
  private readonly base: string;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly backoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly fetchImpl: typeof fetch;

  constructor(publishableKey: string, options: SwitchyardOptions = {}) {
    if (!publishableKey || !publishableKey.startsWith("pk_")) {
      throw new TypeError("Switchyard needs a workspace's publishable key (pk_...)");
    }
    const f = options.fetch ?? (globalThis as { fetch?: typeof fetch }).fetch;
    if (!f) throw new TypeError("no fetch: pass options.fetch on this platform");
    this.key = publishableKey;
    this.base = (options.baseUrl ?? "http://127.0.0.1:8080").replace(/\/+$/, "");
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.retries = Math.max(0, options.retries ?? 3);
    this.backoffMs = options.backoffMs ?? 250;
    this.maxBackoffMs = options.maxBackoffMs ?? 10_000;
    this.fetchImpl = f.bind(globalThis);
  }

  /** Sends one event. Resolves once Switchyard has stored it durably (or found it stored). */
  async emit(event: SwitchyardEvent, options: EmitOptions = {}): Promise<Accepted> {
    const key = options.idempotencyKey ?? event.idempotency_key ?? newIdempotencyKey();
    const { idempotency_key: _ignored, ...rest } = event;
    const answer = await this.send("/api/v1/events", normalise(rest), key, options.signal);
    const body = answer.body as Omit<Accepted, "duplicate">;
    return { ...body, duplicate: answer.status === 200 };
  }

  /**
   * Sends many events, in as many requests as the server's limits need (1,000 events and 15 MiB
   * each). Each event gets its own idempotency key unless it has one; retries reuse them. The
   * results are in the order given, across requests.
   */
  async emitBatch(events: SwitchyardEvent[], options: { signal?: AbortSignal } = {}): Promise<BatchResult> {
    const keyed = events.map((e) => normalise({ ...e, idempotency_key: e.idempotency_key ?? newIdempotencyKey() }));
    const out: BatchResult = { accepted: 0, rejected: 0, results: [] };
    let start = 0;
    while (start < keyed.length) {
      let end = start;
      let bytes = 2;
      while (end < keyed.length && end - start < MAX_BATCH_EVENTS) {
        const size = JSON.stringify(keyed[end]).length + 1;
        if (end > start && bytes + size > MAX_BATCH_BYTES) break;
        bytes += size;
        end++;
      }
      const chunk = keyed.slice(start, end);
      const answer = await this.send("/api/v1/events/bulk", chunk, null, options.signal);
      const body = answer.body as BatchResult;
      out.accepted += body.accepted;
      out.rejected += body.rejected;
      for (const item of body.results) out.results.push({ ...item, index: item.index + start });
      start = end;
    }
    return out;
  }

  /** One request, retried as the module says. */
  private async send(path: string, body: unknown, idempotencyKey: string | null, signal?: AbortSignal): Promise<Answer> {
    const text = JSON.stringify(body);
    for (let attempt = 1; ; attempt++) {
      let failure: SwitchyardError;
      try {
        const answer = await this.attempt(path, text, idempotencyKey, signal);
        if (answer.status >= 200 && answer.status < 300) return answer;
        failure = errorFrom(answer, attempt);
        // A refusal is final; only 429 and the server's own failures are worth another try.
        if (answer.status !== 429 && answer.status < 500) throw failure;
      } catch (e) {
        if (e instanceof SwitchyardError && e.status > 0) throw e;
        if (signal?.aborted) throw new SwitchyardError({ status: 0, code: "aborted", message: "the call was aborted", attempts: attempt });
        failure =
          e instanceof SwitchyardError
            ? new SwitchyardError({ status: 0, code: e.code, message: e.message, attempts: attempt })
            : new SwitchyardError({ status: 0, code: "network", message: `Switchyard could not be reached: ${String((e as Error)?.message ?? e)}`, attempts: attempt });
      }
      if (attempt > this.retries) throw failure;
      await sleep(this.wait(attempt, failure.retryAfter), signal);
    }
  }

  private wait(attempt: number, retryAfter?: number): number {
    const ceiling = Math.min(this.maxBackoffMs, this.backoffMs * 2 ** (attempt - 1));
    const jittered = Math.random() * ceiling;
    return retryAfter !== undefined ? Math.max(retryAfter * 1000, jittered) : jittered;
  }

  private async attempt(path: string, text: string, idempotencyKey: string | null, signal?: AbortSignal): Promise<Answer> {
    const controller = new AbortController();
    const onAbort = () => controller.abort();
    signal?.addEventListener("abort", onAbort, { once: true });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, this.timeoutMs);
    try {
      const headers: Record<string, string> = { "Content-Type": "application/json", Authorization: `Bearer ${this.key}` };
      if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
      const response = await this.fetchImpl(this.base + path, { method: "POST", headers, body: text, signal: controller.signal });
      const raw = await response.text();
      let body: unknown = null;
      try {
        body = raw ? JSON.parse(raw) : null;
      } catch {
        body = null;
      }
      const header = response.headers.get("retry-after");
      const retryAfter = header !== null && /^\d+$/.test(header.trim()) ? Number(header.trim()) : undefined;
      return { status: response.status, body, retryAfter };
    } catch (e) {
      if (timedOut) {
        throw new SwitchyardError({ status: 0, code: "timeout", message: `no answer within ${this.timeoutMs} ms`, attempts: 0 });
      }
      throw e;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
  }
}

function normalise(e: SwitchyardEvent): Record<string, unknown> {
  const out: Record<string, unknown> = { ...e };
  if (e.occurred_at instanceof Date) out.occurred_at = e.occurred_at.toISOString();
  for (const k of Object.keys(out)) if (out[k] === undefined) delete out[k];
  return out;
}

function errorFrom(answer: Answer, attempts: number): SwitchyardError {
  const body = (answer.body ?? {}) as { error?: { code?: string; message?: string; details?: { field: string; message: string }[] } };
  return new SwitchyardError({
    status: answer.status,
    code: body.error?.code ?? "http_" + answer.status,
    message: body.error?.message ?? `Switchyard answered HTTP ${answer.status}`,
    details: body.error?.details,
    retryAfter: answer.retryAfter,
    attempts,
  });
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });
}
