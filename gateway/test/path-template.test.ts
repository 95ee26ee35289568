import { compilePathTemplate, matchPathTemplate } from '../src/path-template';
import { RestRouter } from '../src/rest';
import { buildRouteTable } from '../src/route-table';

describe('google.api.http path templates', () => {
  it('binds single-segment variables, percent-decoded', () => {
    const template = compilePathTemplate('/v1/devices/{device_id}/twin');
    expect(matchPathTemplate(template, '/v1/devices/pump%2D7/twin')).toEqual([{ variable: { fieldPath: ['device_id'], multiSegment: false }, value: 'pump-7' }]);
    expect(matchPathTemplate(template, '/v1/devices/a/b/twin')).toBeUndefined();
  });

  it('binds nested field paths and custom verbs', () => {
    expect(matchPathTemplate(compilePathTemplate('/v1/users/{user.id}'), '/v1/users/u1')?.[0].variable.fieldPath).toEqual(['user', 'id']);
    const verb = compilePathTemplate('/v1/alerts/{id}:acknowledge');
    expect(verb.verb).toBe('acknowledge');
    expect(matchPathTemplate(verb, '/v1/alerts/a1:acknowledge')?.[0].value).toBe('a1');
    expect(matchPathTemplate(verb, '/v1/alerts/a1')).toBeUndefined();
    expect(matchPathTemplate(compilePathTemplate('/v1/auth:login'), '/v1/auth:login')).toEqual([]);
  });

  it('keeps slashes in multi-segment variables', () => {
    const template = compilePathTemplate('/v1/{name=shelves/*/books/**}');
    expect(matchPathTemplate(template, '/v1/shelves/s1/books/a/b%2Fc')?.[0]).toEqual({ variable: { fieldPath: ['name'], multiSegment: true }, value: 'shelves/s1/books/a/b%2Fc' });
  });

  it('rejects templates it cannot serve', () => {
    expect(() => compilePathTemplate('v1/x')).toThrow(/must start with/);
    expect(() => compilePathTemplate('/v1/{a b}')).toThrow(/bad segment/);
  });
});

describe('REST routing over the real descriptor', () => {
  const router = new RestRouter(buildRouteTable());
  const rpc = (verb: string, path: string) => {
    const match = router.match(verb, path);
    return typeof match === 'object' ? match.route.grpcPath : match;
  };

  it('prefers literal paths over variables', () => {
    expect(rpc('POST', '/v1/users/me:changePassword')).toBe('/iot.signing.v1.UserService/ChangePassword');
    expect(rpc('GET', '/v1/users/u-1')).toBe('/iot.signing.v1.UserService/GetUser');
    expect(rpc('POST', '/v1/devices:batchCreate')).toBe('/iot.device.v1.DeviceService/BatchCreateDevices');
    expect(rpc('GET', '/.well-known/jwks.json')).toBe('/iot.signing.v1.AuthService/GetJwks');
  });

  it('tells a wrong verb from an unknown path', () => {
    expect(rpc('DELETE', '/v1/auth:login')).toBe('method-not-allowed');
    expect(rpc('GET', '/v1/nothing-here')).toBeUndefined();
  });
});
