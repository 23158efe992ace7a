import type { ExecutorStats } from "../../executor.js";
import { ROUTES } from "../http/wire.js";

/** Upper bounds (seconds) of the call-duration histogram. */
const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * The agent's counters, served as Prometheus text exposition format 0.0.4 on GET /metrics. Label
 * values are token ids, routes, codes and digests: all from the agent's own vocabulary, never a
 * client's free text, so the number of series is bounded by the configuration.
 */
export class AgentMetrics {
  private readonly requests = new Map<string, number>();
  private readonly buckets = new Array<number>(BUCKETS.length + 1).fill(0);
  private durationSum = 0;
  private durationCount = 0;
  authFailures = 0;
  uploadBytes = 0;
  uploads = 0;
  pulls = 0;
  inFlight = 0;

  /** One answered request: its route, the token id ("-" when unauthenticated) and its outcome. */
  count(route: string, token: string, outcome: string): void {
    const key = `route="${route}",token="${token}",outcome="${outcome}"`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
  }

  /** One execute call's duration, ms. */
  observe(durationMs: number): void {
    const seconds = durationMs / 1000;
    let i = 0;
    while (i < BUCKETS.length && seconds > (BUCKETS[i] as number)) i++;
    this.buckets[i] = (this.buckets[i] ?? 0) + 1;
    this.durationSum += seconds;
    this.durationCount++;
  }

  render(stats: ExecutorStats, draining: boolean, held: number): string {
    const lines: string[] = [];
    const metric = (name: string, type: string, help: string) => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    };
    metric(
      "ociapp_agent_requests_total",
      "counter",
      "Requests answered, by route, token and outcome (a code or ok).",
    );
    for (const [labels, value] of this.requests)
      lines.push(`ociapp_agent_requests_total{${labels}} ${value}`);
    metric("ociapp_agent_call_duration_seconds", "histogram", "Execute calls, from headers to answer.");
    let cumulative = 0;
    BUCKETS.forEach((bound, i) => {
      cumulative += this.buckets[i] ?? 0;
      lines.push(`ociapp_agent_call_duration_seconds_bucket{le="${bound}"} ${cumulative}`);
    });
    cumulative += this.buckets[BUCKETS.length] ?? 0;
    lines.push(`ociapp_agent_call_duration_seconds_bucket{le="+Inf"} ${cumulative}`);
    lines.push(`ociapp_agent_call_duration_seconds_sum ${this.durationSum}`);
    lines.push(`ociapp_agent_call_duration_seconds_count ${this.durationCount}`);
    metric("ociapp_agent_calls_in_flight", "gauge", "Execute calls being served now.");
    lines.push(`ociapp_agent_calls_in_flight ${this.inFlight}`);
    metric(
      "ociapp_agent_auth_failures_total",
      "counter",
      "Requests refused before authentication succeeded.",
    );
    lines.push(`ociapp_agent_auth_failures_total ${this.authFailures}`);
    metric("ociapp_agent_uploads_total", "counter", "Artifacts uploaded and verified.");
    lines.push(`ociapp_agent_uploads_total ${this.uploads}`);
    metric("ociapp_agent_upload_bytes_total", "counter", "Bytes of uploads received (verified or not).");
    lines.push(`ociapp_agent_upload_bytes_total ${this.uploadBytes}`);
    metric("ociapp_agent_pulls_total", "counter", "Artifacts pulled from a registry and verified.");
    lines.push(`ociapp_agent_pulls_total ${this.pulls}`);
    metric("ociapp_agent_artifacts_held", "gauge", "Verified artifacts in the store.");
    lines.push(`ociapp_agent_artifacts_held ${held}`);
    metric("ociapp_agent_draining", "gauge", "1 while the agent drains (SIGTERM).");
    lines.push(`ociapp_agent_draining ${draining ? 1 : 0}`);
    metric("ociapp_agent_instances", "gauge", "Containers per artifact and state.");
    for (const artifact of stats.artifacts) {
      for (const [state, value] of Object.entries(artifact.instances)) {
        lines.push(`ociapp_agent_instances{digest="${artifact.digest}",state="${state}"} ${value}`);
      }
    }
    metric("ociapp_agent_queued", "gauge", "Calls waiting for a container, per artifact.");
    for (const artifact of stats.artifacts) {
      lines.push(`ociapp_agent_queued{digest="${artifact.digest}"} ${artifact.queued}`);
    }
    return `${lines.join("\n")}\n`;
  }
}

/**
 * The `route` label of a request in /metrics: a route the agent serves, or "other" for any method
 * and path that match none. Method and path are the client's free text: labelled as sent, every
 * new path (unauthenticated ones too) would add series to /metrics without bound.
 */
export function seriesOf(method: string | undefined, path: string, match: RegExpExecArray | null): string {
  if (method === "GET" && (path === ROUTES.metrics || path === ROUTES.status)) return `GET ${path}`;
  if (match === null) return "other";
  const action = match[2];
  if (action === undefined && (method === "HEAD" || method === "GET" || method === "PUT")) {
    return `${method} /v1/artifacts/`;
  }
  if (action !== undefined && method === "POST") return `POST /v1/artifacts/${action}`;
  return "other";
}

/** One audit record per answered request, written as one JSON line. */
export interface AuditRecord {
  time: string;
  /** The token's id, or null when the request was not authenticated. */
  token: string | null;
  route: string;
  digest: string | null;
  /** "ok", or the error code answered. */
  outcome: string;
  status: number;
  durationMs: number;
  /** The peer's address. */
  peer: string;
}

export type AuditSink = (record: AuditRecord) => void;

/** How long an audit line may wait for others to share its write, ms. */
const AUDIT_DELAY_MS = 20;
/** Records held at most: this many are written at once, without waiting. */
const AUDIT_BATCH_RECORDS = 128;

let pending: AuditRecord[] = [];
let timer: NodeJS.Timeout | undefined;

/** Writes the audit lines still pending (the agent does so when it has drained). */
export function flushAudit(): void {
  if (timer !== undefined) clearTimeout(timer);
  timer = undefined;
  if (pending.length === 0) return;
  const records = pending;
  pending = [];
  let lines = "";
  for (const record of records) lines += `${JSON.stringify({ audit: "ociapp-agent", ...record })}\n`;
  process.stderr.write(lines);
}

/**
 * The default sink: one JSON line per record on stderr. Records are gathered for up to 20 ms (or
 * 128 records) and written together: one write per call was a system call (stderr is synchronous
 * for files and pipes) in each call's path, and the lines are made at that write, not in the tick
 * that sends an answer. The timer does not keep the process alive, and whatever is pending when
 * the process exits (a drained agent, an uncaught error, process.exit) is written then; only a
 * process killed outright (SIGKILL) loses its last 20 ms of lines.
 */
export const stderrAudit: AuditSink = (record) => {
  pending.push(record);
  if (pending.length >= AUDIT_BATCH_RECORDS) flushAudit();
  else if (timer === undefined) {
    timer = setTimeout(flushAudit, AUDIT_DELAY_MS);
    timer.unref();
  }
};
process.once("exit", flushAudit);
