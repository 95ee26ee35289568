import type { DescEnum, DescField, DescMessage, DescMethod, DescService } from '@bufbuild/protobuf';
import { DescriptorProtoSchema, FileDescriptorProtoSchema, ServiceDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';

/** What can carry a proto comment in the reference and the README tables. */
export type CommentedDesc = DescService | DescMethod | DescMessage | DescField | DescEnum;

/** The source-info path of a descriptor (google/protobuf/descriptor.proto SourceCodeInfo.Location.path). */
function sourcePath(desc: CommentedDesc): number[] | undefined {
  switch (desc.kind) {
    case 'service':
      return [FileDescriptorProtoSchema.field.service.number, desc.file.services.indexOf(desc)];
    case 'rpc':
      return [...sourcePath(desc.parent)!, ServiceDescriptorProtoSchema.field.method.number, desc.parent.methods.indexOf(desc)];
    case 'message':
    case 'enum': {
      const listField = desc.kind === 'message' ? 'nestedType' : 'enumType';
      if (desc.parent) {
        const siblings = desc.kind === 'message' ? desc.parent.nestedMessages : desc.parent.nestedEnums;
        return [...sourcePath(desc.parent)!, DescriptorProtoSchema.field[listField].number, (siblings as CommentedDesc[]).indexOf(desc)];
      }
      const top = desc.kind === 'message' ? desc.file.messages : desc.file.enums;
      const fileField = desc.kind === 'message' ? FileDescriptorProtoSchema.field.messageType : FileDescriptorProtoSchema.field.enumType;
      return [fileField.number, (top as CommentedDesc[]).indexOf(desc)];
    }
    case 'field':
      return [...sourcePath(desc.parent)!, DescriptorProtoSchema.field.field.number, desc.parent.fields.indexOf(desc)];
  }
}

/** The leading comment of a descriptor, from the source info `buf build` keeps in the descriptor set ('' when none), without `buf:lint:ignore` lines (they are for buf, not readers). */
export function leadingComment(desc: CommentedDesc): string {
  const path = sourcePath(desc);
  const file = desc.kind === 'rpc' || desc.kind === 'field' ? desc.parent.file : desc.file;
  if (!path) return '';
  const location = file.proto.sourceCodeInfo?.location.find((l) => l.path.length === path.length && l.path.every((p, i) => p === path[i]));
  return (location?.leadingComments ?? '').replace(/^ ?buf:lint:ignore .*\n?/gm, '');
}
