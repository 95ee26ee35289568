import { callerPrincipal, CallContext, defineService, Role, RoleName, ServiceRegistration, Violations } from '@iot-mesh/runtime';
import { UserServiceService } from '../../../../gen/ts/iot/signing/v1/users';
import type { Users } from '../domain/users';
import { userMessage } from './messages';
import { checkEmail, checkId, checkNewPassword, checkPage, checkRole, normalEmail, originOf, OriginOptions } from './requests';

/** `iot.signing.v1.UserService`: the users of the caller's tenant and the caller's own password. */
export function userService(users: Users, originOptions: OriginOptions): ServiceRegistration {
  const origin = (ctx: CallContext) => originOf(ctx, originOptions);

  return defineService(UserServiceService, {
    async createUser(req, ctx) {
      const v = new Violations();
      const email = normalEmail(req.email);
      checkEmail(v, email, 'email');
      v.maxLength(req.displayName, 200, 'display_name');
      checkNewPassword(v, req.password, email, 'password');
      const role = checkRole(v, req.role, 'role');
      v.throwIfAny();
      const user = await users.create(callerPrincipal(ctx), { email, displayName: req.displayName.trim(), password: req.password, role: role! }, origin(ctx));
      return { user: userMessage(user) };
    },

    async getUser(req, ctx) {
      const v = new Violations();
      checkId(v, req.id, 'id');
      v.throwIfAny();
      return { user: userMessage(await users.get(callerPrincipal(ctx), req.id)) };
    },

    async listUsers(req, ctx) {
      const v = new Violations();
      const page = checkPage(v, req.page);
      v.throwIfAny();
      const result = await users.list(callerPrincipal(ctx), page.limit, page.pageToken);
      return { users: result.items.map(userMessage), page: { nextPageToken: result.nextPageToken } };
    },

    async updateUser(req, ctx) {
      const v = new Violations();
      const paths = (req.updateMask ?? []).map((p) => (p === 'displayName' ? 'display_name' : p));
      if (v.required(req.user?.id, 'user.id')) checkId(v, req.user!.id, 'user.id');
      v.check(paths.length > 0, 'update_mask', 'must name the fields to change: display_name, role');
      for (const path of paths) v.check(path === 'display_name' || path === 'role', 'update_mask', `${JSON.stringify(path)} cannot be changed; use display_name or role`);
      const changes: { displayName?: string; role?: RoleName } = {};
      if (paths.includes('display_name')) {
        v.maxLength(req.user?.displayName, 200, 'user.display_name');
        changes.displayName = (req.user?.displayName ?? '').trim();
      }
      if (paths.includes('role')) changes.role = checkRole(v, req.user?.role ?? Role.ROLE_UNSPECIFIED, 'user.role');
      v.throwIfAny();
      return { user: userMessage(await users.update(callerPrincipal(ctx), req.user!.id, changes, origin(ctx))) };
    },

    async deleteUser(req, ctx) {
      const v = new Violations();
      checkId(v, req.id, 'id');
      v.throwIfAny();
      await users.delete(callerPrincipal(ctx), req.id, origin(ctx));
      return {};
    },

    async changePassword(req, ctx) {
      const caller = callerPrincipal(ctx);
      const v = new Violations();
      v.required(req.currentPassword, 'current_password');
      v.maxLength(req.currentPassword, 1024, 'current_password');
      // The rule against containing the email is checked by the domain against the stored email (a bearer token carries none).
      checkNewPassword(v, req.newPassword, '', 'new_password');
      v.check(!req.newPassword || req.newPassword !== req.currentPassword, 'new_password', 'must differ from the current password');
      v.throwIfAny();
      return { changeTime: await users.changePassword(caller, { currentPassword: req.currentPassword, newPassword: req.newPassword }, origin(ctx)) };
    },
  });
}
