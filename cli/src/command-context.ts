import { Command, Option } from 'commander';
import { PageRequest, PageResponse } from '../../gen/ts/iot/common/v1/common';
import { Connection, GlobalOptions } from './connection';
import { printDone, printList, View } from './output';
import { parsePositiveInt } from './parse';

/** The options of one command merged with the global ones. */
export type CommandOptions<T = Record<string, unknown>> = GlobalOptions & T;

/**
 * Runs a command's body with a {@link Connection} built from its options
 * (global ones included) and closes the channels afterwards, so the process
 * exits as soon as the work is done.
 */
export async function run<T>(command: Command, body: (connection: Connection, options: CommandOptions<T>) => Promise<void>): Promise<void> {
  const options = command.optsWithGlobals<CommandOptions<T>>();
  const connection = new Connection(options);
  try {
    await body(connection, options);
  } finally {
    connection.close();
  }
}

/** The options of a paged list. */
export interface PageOptions {
  pageSize?: number;
  pageToken?: string;
  all?: boolean;
}

/** Adds `--page-size`, `--page-token` and `--all` to a list command. */
export function pageOptions(command: Command): Command {
  return command
    .addOption(new Option('--page-size <n>', 'items per page (the server caps it)').argParser(parsePositiveInt))
    .option('--page-token <token>', 'continue from the token a previous page printed')
    .option('--all', 'follow next-page tokens until the last page');
}

/**
 * Fetches one page, or every page with `--all`. When more remain, the next
 * page's token is printed on stderr, so stdout stays one parseable document.
 */
export async function listPages<T>(options: PageOptions, fetchPage: (page: PageRequest) => Promise<{ items: T[]; page?: PageResponse }>): Promise<T[]> {
  const items: T[] = [];
  let pageToken = options.pageToken ?? '';
  for (;;) {
    const res = await fetchPage({ pageSize: options.pageSize ?? 0, pageToken });
    items.push(...res.items);
    pageToken = res.page?.nextPageToken ?? '';
    if (!pageToken) return items;
    if (!options.all) {
      process.stderr.write(`more results: --page-token ${pageToken} (or --all)\n`);
      return items;
    }
  }
}

/**
 * Adds a paged `list` (or `name`) subcommand printing `view`; its filters are options the
 * caller adds to the returned command, read by `fetchPage` from `options`.
 */
export function listCommand<T, O = object>(
  parent: Command,
  description: string,
  view: View<T>,
  fetchPage: (connection: Connection, page: PageRequest, options: CommandOptions<O>) => Promise<{ items: T[]; page?: PageResponse }>,
  name = 'list',
): Command {
  return pageOptions(parent.command(name).description(description)).action((_o, command: Command) =>
    run<O & PageOptions>(command, async (connection, options) => {
      printList(options.output, view, await listPages(options, (page) => fetchPage(connection, page, options)));
    }),
  );
}

/**
 * Adds a subcommand taking one id argument (`argument` is its name and help),
 * so every by-id command parses, connects and closes the same way.
 */
export function idCommand<O = object>(
  parent: Command,
  name: string,
  description: string,
  argument: [name: string, description: string],
  body: (connection: Connection, id: string, options: CommandOptions<O>) => Promise<void>,
): Command {
  return parent
    .command(name)
    .description(description)
    .argument(...argument)
    .action((id: string, _o, command: Command) => run<O>(command, (connection, options) => body(connection, id, options)));
}

/**
 * Adds `delete <id>`: calls `remove`, then prints `deleted <noun> <id>`
 * (or `{"deleted": id}` as JSON).
 */
export function deleteCommand(
  parent: Command,
  description: string,
  noun: string,
  argument: [name: string, description: string],
  remove: (connection: Connection, id: string) => Promise<unknown>,
): Command {
  return idCommand(parent, 'delete', description, argument, async (connection, id, options) => {
    await remove(connection, id);
    printDone(options.output, `deleted ${noun} ${id}`, { deleted: id });
  });
}
