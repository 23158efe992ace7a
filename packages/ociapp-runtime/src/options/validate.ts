/** Shared validation for the runtime's options: every message names the option and the value it got. */
import { OptionsError } from "../errors.js";

export function show(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean" || value === null || value === undefined) {
    return String(value);
  }
  if (Array.isArray(value)) return "an array";
  return `a ${typeof value}`;
}

export function integer(
  scope: string,
  name: string,
  value: unknown,
  fallback: number,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `between ${min} and ${max}`;
    throw new OptionsError(`${scope} option ${name} must be an integer ${range} (got ${show(value)})`);
  }
  return value;
}

export function boolean(name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== "boolean") {
    throw new OptionsError(`Runtime option ${name} must be a boolean (got ${show(value)})`);
  }
  return value;
}

export function stringRecord(name: string, value: unknown): Record<string, string> {
  if (value === undefined) return {};
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new OptionsError(`Runtime option ${name} must be an object of strings (got ${show(value)})`);
  }
  const result: Record<string, string> = {};
  for (const [key, entry] of Object.entries(value)) {
    if (typeof entry !== "string") {
      throw new OptionsError(`Runtime option ${name}.${key} must be a string (got ${show(entry)})`);
    }
    result[key] = entry;
  }
  return result;
}
