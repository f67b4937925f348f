/**
 * What decides whether a JPEG can go to ffmpeg as it is, read from its marker segments (no
 * decoding): a plain baseline or progressive Huffman JPEG of 1 (grey) or 3 (YCbCr) components,
 * without EXIF. EXIF may rotate the picture (ffmpeg's image decoder ignores the orientation) and
 * may embed a thumbnail JPEG, whose markers could confuse the MJPEG stream splitter; CMYK (4
 * components, Adobe) and arithmetic coding are not what ffmpeg decodes reliably. Anything else
 * is converted by sharp first.
 */
export function isPlainJpeg(b: Buffer): boolean {
  if (b.length < 4 || b[0] !== 0xff || b[1] !== 0xd8) {
    return false;
  }
  let i = 2;
  while (i + 4 <= b.length) {
    if (b[i] !== 0xff) {
      return false;
    }
    const marker = b[i + 1];
    if (marker === 0xff) {
      i++;
      continue;
    }
    const length = b.readUInt16BE(i + 2);
    if (length < 2) {
      return false;
    }
    if (marker === 0xe1 && b.toString('latin1', i + 4, i + 8) === 'Exif') {
      return false;
    }
    // Adobe's segment: its colour transform may say RGB or CMYK rather than YCbCr.
    if (marker === 0xee && b.toString('latin1', i + 4, i + 9) === 'Adobe') {
      return false;
    }
    // SOF0 (baseline), SOF1 (extended), SOF2 (progressive): Huffman coded, 8-bit.
    if (marker === 0xc0 || marker === 0xc1 || marker === 0xc2) {
      const components = b[i + 9];
      return i + 10 <= b.length && b[i + 4] === 8 && (components === 1 || components === 3);
    }
    // Any other frame header (lossless, hierarchical, arithmetic), or scan data before a frame.
    if (
      (marker >= 0xc3 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) ||
      marker === 0xda
    ) {
      return false;
    }
    i += 2 + length;
  }
  return false;
}
