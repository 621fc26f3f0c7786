/** Types of `start.mjs` (plain JavaScript: it runs before anything is built). */
export function stampFile(root: string): string;
export function buildNeeded(root: string): string | undefined;
export function build(root: string): number;
export function buildReason(setting: string | undefined, root: string): string | undefined;
