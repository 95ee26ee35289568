import { Server, ServerDuplexStream, status as GrpcStatus } from '@grpc/grpc-js';
import { fromBinary } from '@bufbuild/protobuf';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import { DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import {
  ServerReflectionRequest,
  ServerReflectionResponse,
  ServerReflectionService as ReflectionV1,
} from '../../../gen/ts/grpc/reflection/v1/reflection';
import { ServerReflectionService as ReflectionV1Alpha } from '../../../gen/ts/grpc/reflection/v1alpha/reflection';

/** The reflection services every server carries, both versions: grpcurl and grpcio still ask v1alpha first in many releases. */
export const REFLECTION_SERVICE_NAMES = ['grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection'] as const;

/** One proto file of the descriptor set: its name, its bytes exactly as built, its parsed form. */
interface IndexedFile {
  readonly name: string;
  readonly bytes: Uint8Array;
  readonly proto: FileDescriptorProto;
}

/**
 * Splits a serialized FileDescriptorSet into its files without re-encoding
 * them: reflection must hand clients the bytes `buf build` wrote, not a copy
 * rebuilt by some other library (which is how merged files without imports
 * came about before).
 */
export function splitDescriptorSet(set: Uint8Array): Uint8Array[] {
  const reader = new BinaryReader(set);
  const files: Uint8Array[] = [];
  while (reader.pos < reader.len) {
    const [fieldNo, wireType] = reader.tag();
    if (fieldNo === 1 && wireType === WireType.LengthDelimited) files.push(reader.bytes());
    else reader.skip(wireType);
  }
  return files;
}

/**
 * What server reflection answers, indexed once from the descriptor set:
 * files by name, the file declaring each fully-qualified symbol, and
 * extensions by the message they extend.
 */
export class DescriptorIndex {
  private readonly files = new Map<string, IndexedFile>();
  private readonly symbols = new Map<string, IndexedFile>();
  /** `google.protobuf.MethodOptions` → field number → declaring file. */
  private readonly extensions = new Map<string, Map<number, IndexedFile>>();

  constructor(descriptorSet: Uint8Array) {
    for (const bytes of splitDescriptorSet(descriptorSet)) {
      const proto = fromBinary(FileDescriptorProtoSchema, bytes);
      const file: IndexedFile = { name: proto.name, bytes, proto };
      this.files.set(file.name, file);
      const scope = proto.package ? `${proto.package}.` : '';
      for (const message of proto.messageType) this.indexMessage(file, scope, message);
      for (const enumType of proto.enumType) this.indexEnum(file, scope, enumType);
      for (const extension of proto.extension) this.indexExtension(file, scope, extension);
      for (const service of proto.service) {
        const serviceName = scope + service.name;
        this.symbols.set(serviceName, file);
        for (const method of service.method) this.symbols.set(`${serviceName}.${method.name}`, file);
      }
    }
  }

  /** Whether the set declares a service of this fully-qualified name. */
  hasService(name: string): boolean {
    const file = this.symbols.get(name);
    const scope = file?.proto.package ? `${file.proto.package}.` : '';
    return !!file && file.proto.service.some((s) => scope + s.name === name);
  }

  /** The file of this name, or undefined. */
  fileByName(name: string): IndexedFile | undefined {
    return this.files.get(name);
  }

  /** The file declaring a fully-qualified symbol (message, field, enum, enum value, service, method, extension). */
  fileContainingSymbol(symbol: string): IndexedFile | undefined {
    return this.symbols.get(symbol.replace(/^\./, ''));
  }

  /** The file declaring extension `number` of message `extendee`. */
  fileContainingExtension(extendee: string, number: number): IndexedFile | undefined {
    return this.extensions.get(extendee.replace(/^\./, ''))?.get(number);
  }

  /** Every extension number known for a message, or undefined when the message is unknown. */
  extensionNumbersOf(extendee: string): number[] | undefined {
    const name = extendee.replace(/^\./, '');
    if (!this.symbols.has(name)) return undefined;
    return [...(this.extensions.get(name)?.keys() ?? [])].sort((a, b) => a - b);
  }

  /**
   * `file` and every file it imports, transitively, leaving out those in
   * `alreadySent` (the spec lets a server skip files sent earlier on the same
   * stream; the requested file itself is always sent).
   */
  withDependencies(file: IndexedFile, alreadySent: Set<string>): IndexedFile[] {
    const out: IndexedFile[] = [file];
    alreadySent.add(file.name);
    const visit = (name: string) => {
      if (alreadySent.has(name)) return;
      alreadySent.add(name);
      const dependency = this.files.get(name);
      if (!dependency) return;
      out.push(dependency);
      dependency.proto.dependency.forEach(visit);
    };
    file.proto.dependency.forEach(visit);
    return out;
  }

  private indexMessage(file: IndexedFile, scope: string, message: DescriptorProto): void {
    const name = scope + message.name;
    this.symbols.set(name, file);
    for (const field of message.field) this.symbols.set(`${name}.${field.name}`, file);
    for (const oneof of message.oneofDecl) this.symbols.set(`${name}.${oneof.name}`, file);
    for (const nested of message.nestedType) this.indexMessage(file, `${name}.`, nested);
    for (const enumType of message.enumType) this.indexEnum(file, `${name}.`, enumType);
    for (const extension of message.extension) this.indexExtension(file, `${name}.`, extension);
  }

  private indexEnum(file: IndexedFile, scope: string, enumType: EnumDescriptorProto): void {
    this.symbols.set(scope + enumType.name, file);
    // Enum values are siblings of their enum in protobuf's scoping rules.
    for (const value of enumType.value) this.symbols.set(scope + value.name, file);
  }

  private indexExtension(file: IndexedFile, scope: string, extension: FieldDescriptorProto): void {
    this.symbols.set(scope + extension.name, file);
    const extendee = extension.extendee.replace(/^\./, '');
    let numbers = this.extensions.get(extendee);
    if (!numbers) this.extensions.set(extendee, (numbers = new Map()));
    numbers.set(extension.number, file);
  }
}

/**
 * Answers one reflection request. `sent` holds the files already sent on
 * this stream, so dependencies go out once per stream.
 */
export function answerReflectionRequest(
  index: DescriptorIndex,
  services: readonly string[],
  request: ServerReflectionRequest,
  sent: Set<string>,
): ServerReflectionResponse {
  const response: ServerReflectionResponse = { validHost: request.host, originalRequest: request };
  const notFound = (what: string): ServerReflectionResponse => ({ ...response, errorResponse: { errorCode: GrpcStatus.NOT_FOUND, errorMessage: `${what} not found` } });
  const files = (file: IndexedFile | undefined, what: string): ServerReflectionResponse =>
    file ? { ...response, fileDescriptorResponse: { fileDescriptorProto: index.withDependencies(file, sent).map((f) => Buffer.from(f.bytes)) } } : notFound(what);

  if (request.listServices !== undefined) {
    return { ...response, listServicesResponse: { service: services.map((name) => ({ name })) } };
  }
  if (request.fileByFilename !== undefined) {
    return files(index.fileByName(request.fileByFilename), `file ${request.fileByFilename}`);
  }
  if (request.fileContainingSymbol !== undefined) {
    return files(index.fileContainingSymbol(request.fileContainingSymbol), `symbol ${request.fileContainingSymbol}`);
  }
  if (request.fileContainingExtension !== undefined) {
    const { containingType, extensionNumber } = request.fileContainingExtension;
    return files(index.fileContainingExtension(containingType, extensionNumber), `extension ${extensionNumber} of ${containingType}`);
  }
  if (request.allExtensionNumbersOfType !== undefined) {
    const numbers = index.extensionNumbersOf(request.allExtensionNumbersOfType);
    if (!numbers) return notFound(`type ${request.allExtensionNumbersOfType}`);
    return { ...response, allExtensionNumbersResponse: { baseTypeName: request.allExtensionNumbersOfType.replace(/^\./, ''), extensionNumber: numbers } };
  }
  return { ...response, errorResponse: { errorCode: GrpcStatus.INVALID_ARGUMENT, errorMessage: 'the request names no known message_request' } };
}

/**
 * Adds `grpc.reflection.v1.ServerReflection` and its v1alpha twin (the same
 * messages on the wire) to a server. Every file is served exactly as it is
 * in the descriptor set, with its imports; `services` is what
 * list_services answers.
 */
export function addReflection(server: Server, index: DescriptorIndex, services: readonly string[]): void {
  const listed = [...new Set([...services, ...REFLECTION_SERVICE_NAMES])].sort();
  const serve = (call: ServerDuplexStream<ServerReflectionRequest, ServerReflectionResponse>) => {
    const sent = new Set<string>();
    call.on('data', (request: ServerReflectionRequest) => call.write(answerReflectionRequest(index, listed, request, sent)));
    call.on('end', () => call.end());
    // A cancelled stream needs nothing more; without a listener grpc-js would report it as unhandled.
    call.on('error', () => undefined);
  };
  for (const definition of [ReflectionV1, ReflectionV1Alpha]) server.addService(definition as never, { serverReflectionInfo: serve });
}
