/**
 * Incremental CSV tokenizer: text in, records out, with the line each record starts on.
 * Handles RFC 4180 quoting (doubled quotes, delimiters and line breaks inside quotes),
 * LF / CRLF / CR line ends, spaces around a quoted field, and skips blank lines.
 *
 * Lines without quotes take a fast path (one `split`), which is what numeric files are
 * made of; only lines with a quote or a bare CR go through the character-level scanner.
 */

export class CsvSyntaxError extends Error {
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(message);
    this.name = 'CsvSyntaxError';
  }
}

/** Records found by one `push`, in parallel arrays. */
export interface Records {
  fields: string[][];
  lines: number[];
}

const QUOTE = 34;
const LF = 10;
const CR = 13;
const SPACE = 32;
const TAB = 9;

/** Longest record (in characters) kept while waiting for its end: guards against an unclosed quote. */
export const MAX_RECORD_CHARS = 1 << 23;

export class CsvTokenizer {
  private carry = '';
  /** Line number at the start of `carry`. */
  private line = 1;
  private readonly delim: number;

  constructor(private readonly delimiter: string) {
    if (delimiter.length !== 1) throw new Error('delimiter must be one character');
    this.delim = delimiter.charCodeAt(0);
  }

  /** Space that may surround a quoted field (a tab only when it is not the delimiter). */
  private isPad(c: number): boolean {
    return c === SPACE || (c === TAB && this.delim !== TAB);
  }

  /**
   * Tokenizes `text` (following whatever earlier calls left incomplete) and appends the
   * complete records to `out`. With `final`, the input has ended and everything is flushed.
   */
  push(text: string, final: boolean, out: Records): void {
    const s = this.carry.length > 0 ? this.carry + text : text;
    const n = s.length;
    let p = 0;
    let line = this.line;
    while (p < n) {
      const c = s.charCodeAt(p);
      if (c === LF) {
        p += 1;
        line += 1;
        continue;
      }
      if (c === CR) {
        if (p + 1 >= n && !final) break; // is it CRLF? decide with more input
        p += p + 1 < n && s.charCodeAt(p + 1) === LF ? 2 : 1;
        line += 1;
        continue;
      }
      const nl = s.indexOf('\n', p);
      if (nl >= 0) {
        const end = nl > p && s.charCodeAt(nl - 1) === CR ? nl - 1 : nl;
        const text = s.slice(p, end);
        if (text.indexOf('"') < 0 && text.indexOf('\r') < 0) {
          if (!this.blank(text)) {
            out.fields.push(text.split(this.delimiter));
            out.lines.push(line);
          }
          p = nl + 1;
          line += 1;
          continue;
        }
      }
      const r = this.scanRecord(s, p, line, final);
      if (r === null) break;
      if (r.quoted || r.fields.length > 1 || !this.blank(r.fields[0])) {
        out.fields.push(r.fields);
        out.lines.push(line);
      }
      p = r.next;
      line = r.nextLine;
    }
    this.carry = p < n ? s.slice(p) : '';
    this.line = line;
    if (this.carry.length > MAX_RECORD_CHARS) {
      throw new CsvSyntaxError(line, `a record longer than ${MAX_RECORD_CHARS} characters (an unclosed quote?)`);
    }
  }

  private blank(text: string): boolean {
    for (let i = 0; i < text.length; i++) if (!this.isPad(text.charCodeAt(i))) return false;
    return true;
  }

  /**
   * Scans one record starting at `p`. Returns null when the input ends before the record
   * does (and more may come).
   */
  private scanRecord(
    s: string,
    p: number,
    line: number,
    final: boolean,
  ): { fields: string[]; next: number; nextLine: number; quoted: boolean } | null {
    const n = s.length;
    const fields: string[] = [];
    let ln = line;
    let quoted = false;
    let i = p;
    for (;;) {
      let j = i;
      while (j < n && this.isPad(s.charCodeAt(j))) j += 1;
      let k: number;
      if (j < n && s.charCodeAt(j) === QUOTE) {
        quoted = true;
        let value = '';
        let from = j + 1;
        for (;;) {
          const q = s.indexOf('"', from);
          if (q < 0) {
            if (final) throw new CsvSyntaxError(ln, 'a quoted field is not closed before the end of the input');
            return null;
          }
          if (q + 1 >= n && !final) return null; // a doubled quote may straddle the chunks
          value += s.slice(from, q);
          if (q + 1 < n && s.charCodeAt(q + 1) === QUOTE) {
            value += '"';
            from = q + 2;
            continue;
          }
          k = q + 1;
          break;
        }
        ln += lineBreaks(s, j, k);
        while (k < n && this.isPad(s.charCodeAt(k))) k += 1;
        if (k < n) {
          const c = s.charCodeAt(k);
          if (c !== this.delim && c !== LF && c !== CR) {
            throw new CsvSyntaxError(ln, 'unexpected text after a closing quote (a quote inside a quoted field must be doubled)');
          }
        } else if (!final) {
          return null;
        }
        fields.push(value);
      } else {
        k = i;
        while (k < n) {
          const c = s.charCodeAt(k);
          if (c === this.delim || c === LF || c === CR) break;
          if (c === QUOTE) throw new CsvSyntaxError(ln, 'a quote inside an unquoted field (quote the whole field and double the inner quotes)');
          k += 1;
        }
        if (k >= n && !final) return null;
        fields.push(s.slice(i, k));
      }
      if (k < n && s.charCodeAt(k) === this.delim) {
        i = k + 1;
        continue;
      }
      // End of the record: at a line break or the end of the input.
      if (k >= n) return { fields, next: n, nextLine: ln, quoted };
      if (s.charCodeAt(k) === LF) return { fields, next: k + 1, nextLine: ln + 1, quoted };
      if (k + 1 >= n && !final) return null; // CR: wait to see whether LF follows
      const next = k + 1 < n && s.charCodeAt(k + 1) === LF ? k + 2 : k + 1;
      return { fields, next, nextLine: ln + 1, quoted };
    }
  }
}

/** Line breaks (LF, CRLF or a bare CR) in s[from, to). */
function lineBreaks(s: string, from: number, to: number): number {
  let count = 0;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c === LF) count += 1;
    else if (c === CR && (i + 1 >= to || s.charCodeAt(i + 1) !== LF)) count += 1;
  }
  return count;
}
