import * as nodeModule from 'node:module';

/** What Node's `module` has for the compile cache (22.1+; `flushCompileCache` 22.10+). */
interface CompileCacheApi {
  flushCompileCache?: () => void;
}

const api = nodeModule as unknown as CompileCacheApi;

/**
 * Writes what Node's compile cache gathered so far to disk, when the user turned it on with
 * `NODE_COMPILE_CACHE` (it is not on by default: Node's default place for it is the shared
 * temporary directory, where another local user could plant code). Node writes it at a clean exit; a
 * long-running sidecar calls this once it has started, so a start after a `kill -9` or an
 * out-of-memory kill is fast too.
 */
export function flushCliCompileCache(): void {
  try {
    api.flushCompileCache?.();
  } catch {
    // An optimisation only.
  }
}
