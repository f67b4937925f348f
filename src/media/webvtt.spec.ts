import { parseWebVtt } from '../../test/support/webvtt-probe';
import {
  CUE_MAX_CHARS,
  CUE_MAX_MS,
  CUE_MAX_END_MS,
  cueText,
  messageCues,
  renderWebVtt,
  webVttTime,
} from './webvtt';

describe('WebVTT captions of messages', () => {
  it('shows the text field, else a string body, else compact JSON', () => {
    expect(cueText({ text: 'customer signed', other: 1 })).toBe('customer signed');
    expect(cueText('plain words')).toBe('plain words');
    expect(cueText({ amount: 120, ok: true })).toBe('{"amount":120,"ok":true}');
    expect(cueText({ text: '   ', step: 2 })).toBe('{"text":"   ","step":2}');
    expect(cueText({ text: 7 })).toBe('{"text":7}');
    expect(cueText(null)).toBe('null');
    expect(cueText([1, 'a'])).toBe('[1,"a"]');
  });

  it('escapes &, < and > so a body can hold no tag, timestamp or cue timing arrow', () => {
    expect(cueText({ text: 'a & b <b>c</b> --> <00:00:01.000>' })).toBe(
      'a &amp; b &lt;b&gt;c&lt;/b&gt; --&gt; &lt;00:00:01.000&gt;',
    );
  });

  it('keeps line breaks but never a blank line, and drops control characters', () => {
    expect(
      cueText({ text: 'one\r\ntwo\r\rthree\n \t \nfour\u0000\u0007\u001b\u0085\u2028x' }),
    ).toBe('one\ntwo\nthree\nfourx');
  });

  it('replaces lone surrogates and keeps pairs', () => {
    expect(cueText({ text: 'a\uD800b\uDC00c😀' })).toBe('a\uFFFDb\uFFFDc😀');
  });

  it(`cuts a caption at ${CUE_MAX_CHARS} characters (code points) with an ellipsis`, () => {
    const text = cueText({ text: '😀'.repeat(CUE_MAX_CHARS + 5) });
    expect(Array.from(text)).toHaveLength(CUE_MAX_CHARS + 1);
    expect(text.endsWith('😀…')).toBe(true);
  });

  it('writes WebVTT times with hours, minutes, seconds and milliseconds', () => {
    expect(webVttTime(0)).toBe('00:00:00.000');
    expect(webVttTime(3_723_004)).toBe('01:02:03.004');
    expect(webVttTime(99 * 3_600_000 + 59_999)).toBe('99:00:59.999');
  });

  it(`shows each message until the next one, at most ${CUE_MAX_MS} ms, in arrival order`, () => {
    const cues = messageCues([
      { direction: 'out', body: { text: 'b' }, recordingMs: 2_000 },
      { direction: 'in', body: { text: 'a' }, recordingMs: 0 },
      { direction: 'in', body: { text: 'c' }, recordingMs: 9_000 },
    ]);
    expect(cues).toEqual([
      { startMs: 0, endMs: 2_000, text: '<v client>a</v>' },
      { startMs: 2_000, endMs: 2_000 + CUE_MAX_MS, text: '<v server>b</v>' },
      { startMs: 9_000, endMs: 9_000 + CUE_MAX_MS, text: '<v client>c</v>' },
    ]);
  });

  it('puts messages of the same millisecond in one cue, one line each, so none lasts 0 ms', () => {
    const cues = messageCues([
      { direction: 'in', body: { text: 'a' }, recordingMs: 1_000 },
      { direction: 'out', body: { text: 'b' }, recordingMs: 1_000 },
      { direction: 'in', body: { text: 'c' }, recordingMs: 1_001 },
    ]);
    expect(cues).toEqual([
      { startMs: 1_000, endMs: 1_001, text: '<v client>a</v>\n<v server>b</v>' },
      { startMs: 1_001, endMs: 1_001 + CUE_MAX_MS, text: '<v client>c</v>' },
    ]);
  });

  it('leaves out cues that would end after 100 hours (two-digit hours in the MP4 muxer)', () => {
    const cues = messageCues([
      { direction: 'in', body: 'ok', recordingMs: CUE_MAX_END_MS - CUE_MAX_MS - 1 },
      { direction: 'in', body: 'late', recordingMs: CUE_MAX_END_MS },
    ]);
    expect(cues.map((c) => c.text)).toEqual(['<v client>ok</v>']);
  });

  it('renders a file where every message stays one cue, whatever its body holds', () => {
    const hostile = [
      { text: 'x\n\n00:00:00.000 --> 00:00:09.000\ninjected' },
      { text: 'WEBVTT\n\nNOTE hi\n\nSTYLE\n::cue { color: red }' },
      { text: '</v><v admin>forged' },
      { text: '\n\n\n' },
      '-->',
      { text: 'fine' },
    ];
    const file = renderWebVtt(
      messageCues(hostile.map((body, i) => ({ direction: 'in', body, recordingMs: i * 1000 }))),
    );
    const cues = parseWebVtt(file);
    expect(cues.map((c) => c.startMs)).toEqual([0, 1000, 2000, 3000, 4000, 5000]);
    expect(cues.map((c) => c.endMs)).toEqual([1000, 2000, 3000, 4000, 5000, 5000 + CUE_MAX_MS]);
    expect(cues[0]?.text).toBe('<v client>x\n00:00:00.000 --&gt; 00:00:09.000\ninjected</v>');
    expect(cues[2]?.text).toBe('<v client>&lt;/v&gt;&lt;v admin&gt;forged</v>');
    expect(cues[3]?.text).toBe('<v client>{"text":"\\n\\n\\n"}</v>');
    expect(cues[5]?.text).toBe('<v client>fine</v>');
  });

  it('renders the header alone for a recording without messages', () => {
    expect(renderWebVtt([])).toBe('WEBVTT\n\n');
    expect(parseWebVtt(renderWebVtt([]))).toEqual([]);
  });
});
