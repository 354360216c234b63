// Types of parent_death.mjs, which stays plain JS so that the Node launcher can load it without a loader.
export declare function dieWithParent(): string[];
