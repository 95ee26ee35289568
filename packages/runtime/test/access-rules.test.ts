import { create, fromBinary, setExtension, toBinary } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema, MethodDescriptorProto, MethodOptionsSchema } from '@bufbuild/protobuf/wkt';
import { accessReader, accessRulesOf, descriptorRegistry, methodsWithoutAccess, readDescriptorSet } from '@iot-mesh/runtime';

/** The real descriptor set with each edit applied to the method of its gRPC path. */
function editedDescriptor(edits: Record<string, (method: MethodDescriptorProto) => void>): Uint8Array {
  const set = fromBinary(FileDescriptorSetSchema, readDescriptorSet());
  for (const [path, edit] of Object.entries(edits)) {
    const [, serviceName, methodName] = path.split('/');
    const file = set.file.find((f) => serviceName.startsWith(`${f.package}.`) && f.service.some((s) => `${f.package}.${s.name}` === serviceName));
    const method = file?.service.find((s) => `${file.package}.${s.name}` === serviceName)?.method.find((m) => m.name === methodName);
    if (!method) throw new Error(`${path} not in the descriptor set`);
    edit(method);
  }
  return toBinary(FileDescriptorSetSchema, set);
}

const realRegistry = descriptorRegistry(readDescriptorSet());
const accessExtension = realRegistry.getExtension('iot.common.v1.access')!;

describe('access rules read from the descriptor set', () => {
  test('an RPC without the option, with ACCESS_UNSPECIFIED or with a value this code does not know has no rule, and is reported', () => {
    const registry = descriptorRegistry(
      editedDescriptor({
        '/iot.device.v1.DeviceService/GetDevice': (m) => {
          m.options = undefined;
        },
        '/iot.signing.v1.AuthService/Login': (m) => {
          m.options = create(MethodOptionsSchema);
          setExtension(m.options, accessExtension, 0);
        },
        '/iot.monitoring.v1.AlertService/ListAlerts': (m) => {
          m.options = create(MethodOptionsSchema);
          setExtension(m.options, accessExtension, 99);
        },
      }),
    );
    expect(methodsWithoutAccess(registry)).toEqual(['/iot.device.v1.DeviceService/GetDevice', '/iot.monitoring.v1.AlertService/ListAlerts', '/iot.signing.v1.AuthService/Login']);
    const rules = accessRulesOf(registry);
    expect(rules['iot.device.v1.DeviceService'].GetDevice).toBeUndefined();
    expect(rules['iot.signing.v1.AuthService'].Login).toBeUndefined();
    expect(rules['iot.monitoring.v1.AlertService'].ListAlerts).toBeUndefined();
    // The rest of the same services is untouched.
    expect(rules['iot.device.v1.DeviceService'].CreateDevice).toBe('operator');
    expect(rules['iot.signing.v1.AuthService'].Refresh).toBe('public');
  });

  test('each ACCESS_ value maps to its rule', () => {
    const registry = realRegistry;
    const values = accessExtension.fieldKind === 'enum' ? accessExtension.enum.values.map((v) => v.name) : [];
    expect(values).toEqual(['ACCESS_UNSPECIFIED', 'ACCESS_PUBLIC', 'ACCESS_AUTHENTICATED', 'ACCESS_VIEWER', 'ACCESS_OPERATOR', 'ACCESS_ADMIN', 'ACCESS_PLATFORM_ADMIN', 'ACCESS_DEVICE_CREDENTIAL']);
    const seen = new Set(Object.values(accessRulesOf(registry)).flatMap((rpcs) => Object.values(rpcs)));
    expect([...seen].sort()).toEqual(['admin', 'authenticated', 'device_credential', 'operator', 'platform_admin', 'public', 'viewer']);
    expect(accessRulesOf(registry)['iot.device.v1.FirmwareService'].DownloadDeviceFirmware).toBe('device_credential');
    expect(accessReader(registry).accessOf(registry.getService('iot.signing.v1.AuthService')!.methods.find((m) => m.name === 'RotateSigningKey')!)).toBe('platform_admin');
  });

  test('a descriptor set without access.proto is refused at start, not on the first call', () => {
    const set = fromBinary(FileDescriptorSetSchema, readDescriptorSet());
    const withoutAccess = create(FileDescriptorSetSchema, { file: set.file.filter((f) => f.name === 'google/protobuf/descriptor.proto') });
    expect(() => accessReader(descriptorRegistry(toBinary(FileDescriptorSetSchema, withoutAccess)))).toThrow(/lacks iot\.common\.v1\.access/);
  });
});
