// Types of typescript.mjs, which stays plain JS so that a thread's entry and the launcher load it before any `.ts`.
export declare function enableTypeScriptImports(what?: string): Promise<void>;
