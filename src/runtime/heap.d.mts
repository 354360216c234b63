// Types of heap.mjs, which stays plain JS so that the Node launcher can load it without a loader.
export declare const defaultHeapMb: number;
export declare const firstHeapBytes: number;
export declare function bunHeapEnv(env: Record<string, string | undefined>): Record<string, string>;
