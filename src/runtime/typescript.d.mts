// Types of typescript.mjs, which stays plain JS so that a thread's entry can load it before any `.ts`.
export declare function enableTypeScriptImports(): Promise<void>;
