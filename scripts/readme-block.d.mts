// Types of scripts/readme-block.mjs, for the tests that read the README's blocks.

/** A fenced code block of README.md marked `<!-- readme-block: NAME -->`. */
export interface ReadmeBlock {
  /** The first word of the fence's info string, e.g. `sh` or `ts`. */
  lang: string;
  /** The whole info string. */
  info: string;
  /** The block's text, ending with a newline. */
  text: string;
}

/** Every marked block of the README (or of `path`), by name; throws on a malformed or duplicate marker. */
export function readmeBlocks(path?: string): Map<string, ReadmeBlock>;

/** The text of one marked block; throws naming the blocks there are when it is missing. */
export function readmeBlock(name: string, path?: string): string;
