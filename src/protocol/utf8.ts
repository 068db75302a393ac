/**
 * UTF-8 validation. Whole messages go through the native `isUtf8`; fragmented
 * text and partial frames go through `Utf8Validator`, which fails on the first
 * byte that cannot begin or continue a valid sequence (so a fragmented text
 * message fails fast, RFC 6455 §8.1), yet still hands the bulk of each chunk
 * to the native checker.
 */
import { isUtf8 } from 'node:buffer';

export { isUtf8 };

// DFA states (Unicode 15, Table 3-7 "Well-Formed UTF-8 Byte Sequences").
const ACCEPT = 0;
const REJECT = 1;
const NEED1 = 2; // one more 80..BF
const NEED2 = 3; // two more 80..BF
const AFTER_E0 = 4; // A0..BF then NEED1 (no overlongs)
const AFTER_ED = 5; // 80..9F then NEED1 (no surrogates)
const NEED3 = 6; // three more 80..BF
const AFTER_F0 = 7; // 90..BF then NEED2 (no overlongs)
const AFTER_F4 = 8; // 80..8F then NEED2 (nothing above U+10FFFF)

function step(state: number, b: number): number {
  switch (state) {
    case ACCEPT:
      if (b < 0x80) return ACCEPT;
      if (b < 0xc2) return REJECT;
      if (b < 0xe0) return NEED1;
      if (b === 0xe0) return AFTER_E0;
      if (b === 0xed) return AFTER_ED;
      if (b < 0xf0) return NEED2;
      if (b === 0xf0) return AFTER_F0;
      if (b < 0xf4) return NEED3;
      if (b === 0xf4) return AFTER_F4;
      return REJECT;
    case NEED1:
      return b >= 0x80 && b <= 0xbf ? ACCEPT : REJECT;
    case NEED2:
      return b >= 0x80 && b <= 0xbf ? NEED1 : REJECT;
    case NEED3:
      return b >= 0x80 && b <= 0xbf ? NEED2 : REJECT;
    case AFTER_E0:
      return b >= 0xa0 && b <= 0xbf ? NEED1 : REJECT;
    case AFTER_ED:
      return b >= 0x80 && b <= 0x9f ? NEED1 : REJECT;
    case AFTER_F0:
      return b >= 0x90 && b <= 0xbf ? NEED2 : REJECT;
    case AFTER_F4:
      return b >= 0x80 && b <= 0x8f ? NEED2 : REJECT;
    default:
      return REJECT;
  }
}

/** Length of the sequence a lead byte starts (1 for ASCII and for bytes that cannot lead). */
function sequenceLength(b: number): number {
  if (b >= 0xf0) return 4;
  if (b >= 0xe0) return 3;
  if (b >= 0xc0) return 2;
  return 1;
}

/** Incremental UTF-8 checker: `write` each piece, `end` at the end of the message. */
export class Utf8Validator {
  private state = ACCEPT;

  /** Returns false as soon as `bytes` (following the earlier pieces) cannot be valid UTF-8. */
  write(bytes: Uint8Array): boolean {
    const n = bytes.length;
    let i = 0;
    let state = this.state;
    // Finish a sequence left open by the previous piece.
    while (state !== ACCEPT && i < n) {
      state = step(state, bytes[i++]!);
      if (state === REJECT) return this.reject();
    }
    if (i < n) {
      // Leave an incomplete trailing sequence to the DFA; the rest is complete.
      let cut = n;
      const stop = Math.max(i, n - 3);
      for (let j = n - 1; j >= stop; j--) {
        const b = bytes[j]!;
        if ((b & 0xc0) !== 0x80) {
          if (n - j < sequenceLength(b)) cut = j;
          break;
        }
      }
      if (cut > i && !isUtf8(i === 0 && cut === n ? bytes : bytes.subarray(i, cut))) return this.reject();
      for (let j = cut; j < n; j++) {
        state = step(state, bytes[j]!);
        if (state === REJECT) return this.reject();
      }
    }
    this.state = state;
    return true;
  }

  /** True when everything written forms complete, valid UTF-8. Resets for the next message. */
  end(): boolean {
    const ok = this.state === ACCEPT;
    this.state = ACCEPT;
    return ok;
  }

  reset(): void {
    this.state = ACCEPT;
  }

  private reject(): false {
    this.state = REJECT;
    return false;
  }
}
