import { Command, Option } from 'commander';
import { Role, roleToJSON } from '../../../gen/ts/iot/common/v1/common';
import { ApiKey } from '../../../gen/ts/iot/signing/v1/api_keys';
import { User } from '../../../gen/ts/iot/signing/v1/auth';
import { deleteCommand, idCommand, listCommand, run } from '../command-context';
import { formatTime, printOne, View } from '../output';
import { enumChoices, enumLabel, parseDuration } from '../parse';
import { ask, readStdinLine } from '../prompt';

const ROLE = enumChoices(Role, 'ROLE_');

const userView: View<User> = {
  columns: [
    { header: 'ID', value: (u) => u.id },
    { header: 'EMAIL', value: (u) => u.email },
    { header: 'NAME', value: (u) => u.displayName },
    { header: 'ROLE', value: (u) => enumLabel(roleToJSON(u.role), 'ROLE_') },
    { header: 'CREATED', value: (u) => formatTime(u.createTime) },
  ],
  toJson: (u) => User.toJSON(u),
};

const apiKeyView: View<ApiKey> = {
  columns: [
    { header: 'ID', value: (k) => k.id },
    { header: 'NAME', value: (k) => k.name },
    { header: 'PREFIX', value: (k) => k.prefix },
    { header: 'ROLE', value: (k) => enumLabel(roleToJSON(k.role), 'ROLE_') },
    { header: 'CREATED', value: (k) => formatTime(k.createTime) },
    { header: 'EXPIRES', value: (k) => formatTime(k.expireTime) },
    { header: 'REVOKED', value: (k) => formatTime(k.revokeTime) },
    { header: 'LAST USED', value: (k) => formatTime(k.lastUsedTime) },
  ],
  toJson: (k) => ApiKey.toJSON(k),
};

/** A new key prints with its secret, which the server shows this once. */
const createdKeyView: View<{ apiKey: ApiKey; secret: string }> = {
  columns: [...apiKeyView.columns.map((c) => ({ header: c.header, value: (r: { apiKey: ApiKey }) => c.value(r.apiKey) })), { header: 'SECRET', value: (r) => r.secret }],
  toJson: (r) => ({ apiKey: ApiKey.toJSON(r.apiKey), secret: r.secret }),
};

function roleOption(): Option {
  return new Option('--role <role>', 'role').choices(Object.keys(ROLE)).makeOptionMandatory();
}

/** `users list|create|delete` and `api-keys list|create|revoke` (admins of a tenant). */
export function adminCommands(program: Command): void {
  const users = program.command('users').description('users of the caller\'s tenant');

  listCommand(users, 'list users', userView, async (connection, page) => {
    const res = await connection.call(connection.users, connection.users.listUsers, { page });
    return { items: res.users, page: res.page };
  });

  users
    .command('create')
    .description('create a user; the password is asked, or read with --password-stdin')
    .requiredOption('--email <email>', 'email (the login name)')
    .option('--display-name <name>', 'display name', '')
    .addOption(roleOption())
    .option('--password-stdin', 'read the password from the first line of standard input')
    .action((_o, command: Command) =>
      run<{ email: string; displayName: string; role: string; passwordStdin?: boolean }>(command, async (connection, options) => {
        const password = options.passwordStdin ? await readStdinLine() : await ask(`password for ${options.email}`, { secret: true, instead: '--password-stdin' });
        const res = await connection.call(connection.users, connection.users.createUser, { email: options.email, displayName: options.displayName, password, role: ROLE[options.role] });
        printOne(options.output, userView, res.user!);
      }),
    );

  deleteCommand(users, 'delete a user (their sessions end)', 'user', ['<id>', 'user id'], (connection, id) => connection.call(connection.users, connection.users.deleteUser, { id }));

  const apiKeys = program.command('api-keys').description('API keys for scripts and machines (pass one as --api-key or IOTCTL_API_KEY)');

  listCommand(apiKeys, 'list API keys', apiKeyView, async (connection, page) => {
    const res = await connection.call(connection.apiKeys, connection.apiKeys.listApiKeys, { page });
    return { items: res.apiKeys, page: res.page };
  });

  apiKeys
    .command('create')
    .description('create an API key; its secret is printed this once')
    .requiredOption('--name <name>', 'key name')
    .addOption(roleOption())
    .addOption(new Option('--expires <duration>', 'lifetime, such as 90d (default: never)').argParser((v) => new Date(Date.now() + parseDuration(v))))
    .action((_o, command: Command) =>
      run<{ name: string; role: string; expires?: Date }>(command, async (connection, options) => {
        const res = await connection.call(connection.apiKeys, connection.apiKeys.createApiKey, { name: options.name, role: ROLE[options.role], expireTime: options.expires });
        printOne(options.output, createdKeyView, { apiKey: res.apiKey!, secret: res.secret });
      }),
    );

  idCommand(apiKeys, 'revoke', 'revoke an API key (it stops working at once)', ['<id>', 'API key id'], async (connection, id, options) => {
    const res = await connection.call(connection.apiKeys, connection.apiKeys.revokeApiKey, { id });
    printOne(options.output, apiKeyView, res.apiKey!);
  });
}
