import { ExportFormat, ExportServiceService } from '../../../../gen/ts/iot/monitoring/v1/export';
import { callerTenant, defineService, durationToMs, errors, isSubjectToken, METRIC_NAME, ServiceRegistration, Violations } from '@iot-mesh/runtime';
import { bucketsWithinLimit, exportFileName, TelemetryExport } from '../domain/export';
import { FileFormat, FORMAT_FILES } from '../domain/export-formats';
import { resolveTimeRange } from './time-range';
import { GROUP_ID, LATEST_LIMIT, MAX_BUCKETS, MAX_METRICS } from '../domain/telemetry';

const FORMATS: Partial<Record<ExportFormat, FileFormat>> = {
  [ExportFormat.EXPORT_FORMAT_UNSPECIFIED]: 'csv',
  [ExportFormat.EXPORT_FORMAT_CSV]: 'csv',
  [ExportFormat.EXPORT_FORMAT_NDJSON]: 'ndjson',
  [ExportFormat.EXPORT_FORMAT_PARQUET]: 'parquet',
};

/** ExportService: validate → the export domain, chunks sent as the stream takes them, scoped to the caller's tenant. */
export function exportService({ exports }: { exports: TelemetryExport }): ServiceRegistration {
  return defineService(ExportServiceService, {
    async exportPoints(request, ctx, send) {
      const tenantId = callerTenant(ctx);
      const v = new Violations();
      v.check(request.deviceIds.length > 0 || Object.keys(request.labels).length > 0 || request.deviceType !== '' || request.groupId !== '', 'device_ids', 'name devices, labels, a device type or a group');
      if (request.groupId) {
        v.check(GROUP_ID.test(request.groupId), 'group_id', 'is not a group id');
        v.check(request.deviceIds.length === 0, 'group_id', 'name devices or a group, not both');
      }
      v.check(request.deviceIds.length <= LATEST_LIMIT, 'device_ids', `at most ${LATEST_LIMIT} devices`);
      request.deviceIds.forEach((d, i) => v.check(isSubjectToken(d), `device_ids[${i}]`, 'is not a valid device id'));
      v.check(request.metrics.length <= MAX_METRICS, 'metrics', `at most ${MAX_METRICS} metrics`);
      request.metrics.forEach((m, i) => v.check(METRIC_NAME.test(m), `metrics[${i}]`, 'is not a valid metric name'));
      const { start, end } = resolveTimeRange(v, request.timeRange);
      const format = FORMATS[request.format];
      v.check(format !== undefined, 'format', 'is not a supported format');
      const bucketMs = durationToMs(request.bucketWidth);
      if (bucketMs !== undefined) {
        v.check(bucketMs >= 1, 'bucket_width', 'must be at least 1 ms');
        v.check(bucketMs < 1 || bucketsWithinLimit(start, end, bucketMs), 'bucket_width', `gives more than ${MAX_BUCKETS} buckets for this time range`);
      }
      v.throwIfAny();
      if (request.groupId && exports.unknownGroup(tenantId, [request.groupId])) throw errors.notFound('group', request.groupId);
      const exportRequest = {
        tenantId,
        selection: { deviceIds: request.deviceIds, labels: request.labels, deviceType: request.deviceType, groupId: request.groupId },
        metrics: request.metrics,
        start,
        end,
        format: format!,
        bucketMs,
      };
      // The first message names the file even when it ends up empty of rows.
      await send({ chunk: Buffer.alloc(0), contentType: FORMAT_FILES[format!].contentType, fileName: exportFileName(exportRequest) });
      await exports.run(exportRequest, (chunk) => send({ chunk: Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength), contentType: '', fileName: '' }), ctx.signal);
    },
  });
}
