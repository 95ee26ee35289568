import { Command } from 'commander';
import { roleToJSON } from '../../../gen/ts/iot/common/v1/common';
import { Principal, principalKindToJSON } from '../../../gen/ts/iot/signing/v1/auth';
import { credentialsPath, readSession, writeSession } from '../credentials-store';
import { run } from '../command-context';
import { sessionOf } from '../connection';
import { enumLabel } from '../parse';
import { printDone, printOne, View } from '../output';
import { ask, readStdinLine } from '../prompt';

/** How a principal prints (`whoami`). */
export const principalView: View<Principal> = {
  columns: [
    { header: 'KIND', value: (p) => enumLabel(principalKindToJSON(p.kind), 'PRINCIPAL_KIND_') },
    { header: 'ID', value: (p) => p.id },
    { header: 'NAME', value: (p) => p.name },
    { header: 'TENANT', value: (p) => p.tenantId },
    { header: 'ROLE', value: (p) => enumLabel(roleToJSON(p.role), 'ROLE_') },
    { header: 'PLATFORM ADMIN', value: (p) => (p.platformAdmin ? 'yes' : 'no') },
  ],
  toJson: (p) => Principal.toJSON(p),
};

/** `login`, `logout`, `whoami`. */
export function authCommands(program: Command): void {
  program
    .command('login')
    .description(`log in with a password; the tokens are kept in ${credentialsPath().replace(process.env.HOME ?? '\0', '~')} (mode 0600), per signing address, and refreshed when they expire`)
    .option('--tenant <name>', 'tenant name (asked when missing)')
    .option('--email <email>', 'user email (asked when missing)')
    .option('--password-stdin', 'read the password from the first line of standard input instead of asking')
    .action((_options, command: Command) =>
      run<{ tenant?: string; email?: string; passwordStdin?: boolean }>(command, async (connection, options) => {
        const tenant = options.tenant ?? (await ask('tenant', { instead: '--tenant' }));
        const email = options.email ?? (await ask('email', { instead: '--email' }));
        const password = options.passwordStdin ? await readStdinLine() : await ask('password', { secret: true, instead: '--password-stdin' });
        const res = await connection.anonymous(connection.auth, connection.auth.login, { tenant, email, password });
        writeSession(connection.signingAddress, sessionOf(res.tokens!, { tenant, email, userId: res.user!.id }));
        printDone(options.output, `logged in to ${tenant} as ${email} (${enumLabel(roleToJSON(res.user!.role), 'ROLE_')}) at ${connection.signingAddress}`, {
          tenant,
          user: res.user && { id: res.user.id, email: res.user.email, role: roleToJSON(res.user.role) },
          signingAddress: connection.signingAddress,
        });
      }),
    );

  program
    .command('logout')
    .description('end the session at the server (its refresh token stops working) and forget the tokens')
    .action((_options, command: Command) =>
      run(command, async (connection, options) => {
        const session = readSession(connection.signingAddress);
        if (!session) return printDone(options.output, `not logged in to ${connection.signingAddress}`, { loggedOut: false });
        // Forget the tokens even when the server cannot be told: the user asked to be logged out here.
        writeSession(connection.signingAddress, undefined);
        await connection.anonymous(connection.auth, connection.auth.logout, { refreshToken: session.refreshToken });
        printDone(options.output, `logged out of ${session.tenant} (${session.email})`, { loggedOut: true });
      }),
    );

  program
    .command('whoami')
    .description('show who the server takes this caller for (session or API key)')
    .action((_options, command: Command) =>
      run(command, async (connection, options) => {
        const res = await connection.call(connection.auth, connection.auth.whoAmI, {});
        printOne(options.output, principalView, res.principal!);
      }),
    );
}
