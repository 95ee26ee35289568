import { Comparison, NoDataCondition, Severity, ThresholdCondition } from '../../../gen/ts/iot/monitoring/v1/alerts';
import type { FieldViolation } from './errors';
import { durationToMs } from './time';

const WEEK_MS = 7 * 86_400_000;

/** What an alert condition holds: an alert rule's (monitoring) or a device type's default rule's (device). */
export interface AlertCondition {
  threshold?: ThresholdCondition;
  noData?: NoDataCondition;
  severity: Severity;
}

/** True for a value the enum declares, not its `UNRECOGNIZED` stand-in for a number it does not. */
function declared<E extends Record<string, string | number>>(values: E, value: number): boolean {
  return value >= 0 && values[value] !== undefined;
}

/**
 * What makes an alert condition invalid, as field violations under `prefix`:
 * exactly one of threshold and no_data, a declared comparison, finite numbers,
 * durations within a week, a declared severity (unset is the default,
 * warning). Monitoring checks alert rules with it and the device service a
 * device type's default alert rules, so a rule refused by one is refused by
 * the other when it is written, not later.
 */
export function alertConditionViolations(condition: AlertCondition, prefix: string): FieldViolation[] {
  const out: FieldViolation[] = [];
  const check = (ok: boolean, field: string, description: string) => {
    if (!ok) out.push({ field: `${prefix}.${field}`, description });
  };
  check(!!condition.threshold || !!condition.noData, 'condition', 'set threshold or no_data');
  check(!(condition.threshold && condition.noData), 'condition', 'set only one of threshold and no_data');
  if (condition.threshold) {
    const t = condition.threshold;
    check(t.comparison !== Comparison.COMPARISON_UNSPECIFIED && declared(Comparison, t.comparison), 'threshold.comparison', 'is required');
    check(Number.isFinite(t.threshold), 'threshold.threshold', 'must be a finite number');
    check(Number.isFinite(t.hysteresis) && t.hysteresis >= 0, 'threshold.hysteresis', 'must be a non-negative number');
    const d = durationToMs(t.duration) ?? 0;
    check(d >= 0 && d <= WEEK_MS, 'threshold.duration', 'must be between 0 and 7 days');
  }
  if (condition.noData) {
    const d = durationToMs(condition.noData.timeout) ?? 0;
    check(d >= 1000 && d <= WEEK_MS, 'no_data.timeout', 'must be between 1 s and 7 days');
  }
  check(declared(Severity, condition.severity), 'severity', 'is not a severity');
  return out;
}
