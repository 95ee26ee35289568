import readline from 'node:readline';
import { Writable } from 'node:stream';
import { UsageError } from './cli-error';

/** The first line of standard input (`--password-stdin`), without its line ending. */
export async function readStdinLine(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  const line = Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0];
  if (!line) throw new UsageError('standard input held no password');
  return line;
}

/**
 * Asks on the terminal (prompt on stderr, so stdout stays clean for output);
 * with `secret` nothing typed is echoed. Without a terminal it is a usage
 * error naming the option that would have given the value.
 */
export async function ask(question: string, options: { secret?: boolean; instead: string }): Promise<string> {
  if (!process.stdin.isTTY) throw new UsageError(`no terminal to ask "${question}": pass ${options.instead}`);
  let muted = false;
  const output = new Writable({
    write(chunk, _encoding, done) {
      if (!muted) process.stderr.write(chunk);
      done();
    },
  });
  const rl = readline.createInterface({ input: process.stdin, output, terminal: true });
  try {
    const answer = new Promise<string>((resolve) => rl.question(`${question}: `, resolve));
    muted = options.secret === true;
    const value = await answer;
    if (options.secret) process.stderr.write('\n');
    if (!value) throw new UsageError(`${question} is required`);
    return value;
  } finally {
    rl.close();
  }
}
