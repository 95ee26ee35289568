import type { DataPoint, Value } from '../../../gen/ts/iot/monitoring/v1/telemetry';
import type { SampleValue, StoredPoint } from './store/telemetry-store';

/** A stored or live sample's value as the API's `Value`. */
export function toValue(value: SampleValue): Value {
  if (value.number !== undefined) return { numberValue: value.number };
  if (value.bool !== undefined) return { boolValue: value.bool };
  return { stringValue: value.string ?? '' };
}

/** A sample as the API's `DataPoint`. */
export function toDataPoint(point: Pick<StoredPoint, 'deviceId' | 'metric' | 'time' | 'value'>): DataPoint {
  return { deviceId: point.deviceId, metric: point.metric, time: point.time, value: toValue(point.value) };
}
