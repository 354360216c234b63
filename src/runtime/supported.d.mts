// Types of supported.mjs, which stays plain JS so that the launcher checks the runtime before anything else.
export declare const MINIMUM: { node: number; deno: number };
export declare function unsupportedRuntime(versions: { node?: string; bun?: string } | undefined, deno: string | undefined): string | undefined;
