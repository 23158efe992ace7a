import { type OciappRuntimeError, QueueFullError } from "../../errors.js";
import { AgentUnavailableError, UnknownArtifactError } from "../errors.js";
import { errorFromBody } from "../http/wire.js";
import { type AgentLink, type Answer, type Exchange, NeverSent } from "./agent-link.js";
import type { AgentDirectory } from "./directory.js";

/** What sending a call needs of its RemoteExecutor. */
export interface DispatchContext {
  directory: AgentDirectory;
  /** Calls outstanding per agent at most (RemoteExecutorOptions.maxOutstanding). */
  maxOutstanding: number;
  /** Uploads the artifact at `path` to an agent that lacks it (shared by concurrent callers). */
  upload(agent: AgentLink, digest: string, path: string, signal: AbortSignal | undefined): Promise<void>;
}

/** An answer with status 200 and the agent that gave it. */
export interface Sent {
  answer: Answer;
  agent: AgentLink;
}

/** The set of agents already tried for a call's first attempt. */
const NONE_TRIED: ReadonlySet<AgentLink> = new Set();

/**
 * Sends `exchange` to one agent after another until one answers: agents where it was never sent
 * (NeverSent, 503 draining or closed) are left out and the next is picked; an agent that lacks the
 * artifact gets it uploaded (when the caller named a path) and the call again (it never ran there).
 * An agent that refused the call on a session that was up (its GOAWAY: the session, not the agent,
 * is going away) gets it once more on a new session before it is left out.
 */
export function send(
  context: DispatchContext,
  digest: string,
  path: string | undefined,
  exchange: Exchange,
): Promise<Sent> {
  // The usual case, one agent answering 200 at once, without the retry loop's set and async frame.
  const agent = context.directory.pick(digest, NONE_TRIED, context.maxOutstanding);
  if (agent === undefined) {
    return sendEach(context, digest, path, exchange);
  }
  return agent.request(exchange).then(
    (answer) =>
      answer.status === 200 ? { answer, agent } : sendEach(context, digest, path, exchange, agent, answer),
    (error: unknown) => {
      if (!(error instanceof NeverSent)) throw error;
      return sendEach(context, digest, path, exchange, agent, error);
    },
  );
}

/** One request to `agent`: its answer, or NeverSent when it certainly did not run there. */
async function attempt(agent: AgentLink, exchange: Exchange): Promise<Answer | NeverSent> {
  try {
    return await agent.request(exchange);
  } catch (error) {
    if (!(error instanceof NeverSent)) throw error;
    return error;
  }
}

/**
 * The retry loop: `first` is the agent already tried and what it gave (an answer that was not 200,
 * or NeverSent); without one, the loop starts by picking.
 */
async function sendEach(
  context: DispatchContext,
  digest: string,
  path: string | undefined,
  exchange: Exchange,
  first?: AgentLink,
  firstOutcome?: Answer | NeverSent,
): Promise<Sent> {
  const tried = new Set<AgentLink>();
  /** Agents already given the call again on a new session (once each). */
  let renewed: Set<AgentLink> | undefined;
  let lastReason: unknown;
  let given = first;
  for (;;) {
    let agent: AgentLink | undefined;
    let outcome: Answer | NeverSent;
    if (given !== undefined) {
      agent = given;
      outcome = firstOutcome as Answer | NeverSent;
      given = undefined;
    } else {
      agent = context.directory.pick(digest, tried, context.maxOutstanding);
      if (agent === undefined) {
        if (tried.size === 0 && context.directory.size > 0)
          throw new QueueFullError(
            context.maxOutstanding,
            `every agent has ${context.maxOutstanding} calls outstanding (maxOutstanding); RemoteExecutor has no queue of its own`,
          );
        throw new AgentUnavailableError(
          `no agent could take the call (${tried.size} tried): ${(lastReason as Error)?.message ?? "none reachable"}`,
          { cause: lastReason },
        );
      }
      outcome = await attempt(agent, exchange);
    }
    if (outcome instanceof NeverSent && outcome.freshSession && !renewed?.has(agent)) {
      renewed ??= new Set();
      renewed.add(agent);
      lastReason = outcome;
      outcome = await attempt(agent, exchange);
    }
    tried.add(agent);
    if (outcome instanceof NeverSent) {
      agent.healthy = false;
      agent.lastError = outcome.message;
      lastReason = outcome;
      continue;
    }
    const answer = outcome;
    if (answer.status === 200) return { answer, agent };
    const failure = answerError(answer, agent, digest);
    if (failure.code === "OCIAPP_AGENT_UNAVAILABLE" || failure.code === "OCIAPP_RUNTIME_CLOSED") {
      // Draining or closing: not picked again until a health check says otherwise.
      agent.healthy = false;
      lastReason = failure;
      continue; // the agent says the call did not run
    }
    if (failure instanceof UnknownArtifactError && path !== undefined) {
      try {
        await context.upload(agent, digest, path, exchange.signal);
      } catch (error) {
        // The agent is busy receiving other artifacts (503): the call never ran, another may take it.
        if (!(error instanceof AgentUnavailableError)) throw error;
        lastReason = error;
        continue;
      }
      const again = await attempt(agent, exchange);
      if (again instanceof NeverSent) {
        // Refused after the upload: the call still never ran, so another agent may take it.
        agent.healthy = false;
        lastReason = again;
        continue;
      }
      if (again.status === 200) return { answer: again, agent };
      throw answerError(again, agent, digest);
    }
    throw failure;
  }
}

/** The error an answer that is not a success stands for (its JSON body, or AgentError). */
export function answerError(answer: Answer, agent: AgentLink, digest: string): OciappRuntimeError {
  let body: unknown;
  try {
    body = JSON.parse(answer.body.toString("utf8"));
  } catch {
    body = undefined;
  }
  return errorFromBody(answer.status, body, agent.url, digest);
}
