/**
 * The deepest nesting of arrays and objects any framegate JSON needs. Protocol messages and REST
 * bodies are a few levels deep; 64 leaves room for free-form `msg` bodies while keeping every
 * recursive walk (JSON.parse, schema validation, JSON.stringify of an error) far from the stack
 * limit, which deeply nested input reaches at a few thousand levels.
 */
export const MAX_JSON_DEPTH = 64;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;

/**
 * Whether `text` nests arrays/objects deeper than `maxDepth`, by one linear scan of brackets
 * outside strings: no parse, no recursion, no allocation, so it is safe to run on untrusted input
 * before JSON.parse. It does not validate the JSON; malformed text that is not too deep is left
 * for the parser to refuse.
 */
export function exceedsJsonDepth(text: string | Buffer, maxDepth: number): boolean {
  // Brackets, quotes and backslashes are ASCII, so UTF-16 code units and UTF-8 bytes scan alike.
  const at: (i: number) => number =
    typeof text === 'string' ? (i) => text.charCodeAt(i) : (i) => text[i];
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = at(i);
    if (inString) {
      if (c === BACKSLASH) {
        i++;
      } else if (c === QUOTE) {
        inString = false;
      }
    } else if (c === QUOTE) {
      inString = true;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > maxDepth) {
        return true;
      }
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--;
    }
  }
  return false;
}
