import { createSensor, GpsTracker, PointSource, PowerMeter, solarHour, WeatherStation } from '../src/profiles';
import { Random, seedOf } from '../src/random';

const HOUR = 3_600_000;
const start = new Date('2026-06-01T00:00:00Z');

function series(sensor: { read(at: Date): { metric: string; value: unknown }[] }, metric: string, hours: number, stepMs: number) {
  const out: { at: Date; value: number }[] = [];
  for (let t = 0; t < hours * HOUR; t += stepMs) {
    const at = new Date(start.getTime() + t);
    const sample = sensor.read(at).find((s) => s.metric === metric)!;
    out.push({ at, value: sample.value as number });
  }
  return out;
}

describe('random', () => {
  it('repeats a sequence for the same seed and differs for another', () => {
    const a = new Random(42);
    const b = new Random(42);
    const c = new Random(43);
    const sa = Array.from({ length: 5 }, () => a.next());
    expect(Array.from({ length: 5 }, () => b.next())).toEqual(sa);
    expect(Array.from({ length: 5 }, () => c.next())).not.toEqual(sa);
  });

  it('draws gaussians with the asked mean and deviation', () => {
    const r = new Random(7);
    const xs = Array.from({ length: 20_000 }, () => r.gaussian(10, 2));
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length);
    expect(mean).toBeCloseTo(10, 1);
    expect(sd).toBeCloseTo(2, 1);
  });

  it('derives different seeds from different device ids', () => {
    expect(seedOf('dev-1')).not.toBe(seedOf('dev-2'));
    expect(seedOf('dev-1')).toBe(seedOf('dev-1'));
  });
});

describe('weather station', () => {
  it('follows a daily cycle: warmest in the afternoon, coolest before dawn, local to its longitude', () => {
    const station = new WeatherStation(new Random(1));
    const temps = series(station, 'temperature', 24 * 4, 10 * 60_000);
    const byHour = new Map<number, number[]>();
    for (const { at, value } of temps) {
      const h = Math.floor(solarHour(at, station.longitude));
      byHour.set(h, [...(byHour.get(h) ?? []), value]);
    }
    const avg = (h: number) => byHour.get(h)!.reduce((a, b) => a + b, 0) / byHour.get(h)!.length;
    expect(avg(15)).toBeGreaterThan(avg(3) + station.dailySwing);
    expect(avg(15)).toBeGreaterThan(station.meanTemperature);
    expect(avg(3)).toBeLessThan(station.meanTemperature);
  });

  it('adds noise around the cycle without drifting away from it', () => {
    const station = new WeatherStation(new Random(2));
    const temps = series(station, 'temperature', 48, 60_000);
    const residuals = temps.map(({ at, value }) => value - station.cycleTemperature(at));
    const spread = Math.max(...residuals) - Math.min(...residuals);
    expect(spread).toBeGreaterThan(0.1);
    expect(Math.max(...residuals.map(Math.abs))).toBeLessThan(3);
  });

  it('keeps humidity within 5–100 %, wind speed non-negative, direction within the compass, pressure plausible', () => {
    const station = new WeatherStation(new Random(3));
    for (let t = 0; t < 3 * 24 * HOUR; t += 5 * 60_000) {
      const reading = Object.fromEntries(station.read(new Date(start.getTime() + t)).map((s) => [s.metric, s.value as number]));
      expect(reading.humidity).toBeGreaterThanOrEqual(5);
      expect(reading.humidity).toBeLessThanOrEqual(100);
      expect(reading.wind_speed).toBeGreaterThanOrEqual(0);
      expect(reading.wind_direction).toBeGreaterThanOrEqual(0);
      expect(reading.wind_direction).toBeLessThanOrEqual(360);
      expect(reading.pressure).toBeGreaterThanOrEqual(950);
      expect(reading.pressure).toBeLessThanOrEqual(1060);
    }
  });

  it('moves humidity against temperature', () => {
    const station = new WeatherStation(new Random(4));
    const readings = Array.from({ length: 24 * 6 }, (_, i) => {
      const r = Object.fromEntries(station.read(new Date(start.getTime() + i * 10 * 60_000)).map((s) => [s.metric, s.value as number]));
      return [r.temperature, r.humidity];
    });
    const mt = readings.reduce((a, [t]) => a + t, 0) / readings.length;
    const mh = readings.reduce((a, [, h]) => a + h, 0) / readings.length;
    const cov = readings.reduce((a, [t, h]) => a + (t - mt) * (h - mh), 0);
    expect(cov).toBeLessThan(0);
  });
});

describe('power meter', () => {
  it('never lets the energy counter go down and integrates power', () => {
    const meter = new PowerMeter(new Random(5));
    let previous = -Infinity;
    let expectedKwh = 0;
    const first = meter.energyKwh;
    let lastPower = 0;
    for (let t = 0; t < 24 * HOUR; t += 60_000) {
      const r = Object.fromEntries(meter.read(new Date(start.getTime() + t)).map((s) => [s.metric, s.value as number]));
      expect(r.energy).toBeGreaterThanOrEqual(previous);
      previous = r.energy;
      if (t > 0) expectedKwh += (r.power * 60_000) / HOUR / 1000;
      lastPower = r.power;
      expect(r.power).toBeGreaterThanOrEqual(0);
      expect(r.power_factor).toBeGreaterThanOrEqual(0.7);
      expect(r.power_factor).toBeLessThanOrEqual(1);
      expect(r.current).toBeCloseTo(r.power / (r.voltage * r.power_factor), 1);
    }
    expect(lastPower).toBeGreaterThanOrEqual(0);
    expect(meter.energyKwh - first).toBeCloseTo(expectedKwh, 1);
  });

  it('peaks in the evening', () => {
    const meter = new PowerMeter(new Random(6));
    expect(meter.loadAt(19)).toBeGreaterThan(2 * meter.loadAt(3));
  });
});

describe('gps tracker', () => {
  it('moves no faster than its speed allows and emits every value kind', () => {
    const tracker = new GpsTracker(new Random(8));
    let prev: Record<string, unknown> | undefined;
    const kinds = new Set<string>();
    for (let t = 0; t < HOUR; t += 10_000) {
      const reading = tracker.read(new Date(start.getTime() + t));
      for (const s of reading) kinds.add(typeof s.value);
      const r = Object.fromEntries(reading.map((s) => [s.metric, s.value]));
      if (prev) {
        const dLatKm = Math.abs((r.latitude as number) - (prev.latitude as number)) * 111.32;
        // 130 km/h for 10 s is at most ~0.36 km.
        expect(dLatKm).toBeLessThan(0.4);
      }
      expect(r.moving).toBe((r.speed as number) > 0);
      expect(['none', '2d', '3d']).toContain(r.fix);
      prev = r;
    }
    expect([...kinds].sort()).toEqual(['boolean', 'number', 'string']);
  });
});

describe('points per message', () => {
  it('rotates through the metrics when K is below one reading', () => {
    const source = new PointSource(createSensor('weather', 1));
    const metrics = Array.from({ length: 5 }, () => source.next(2, start, 1000).map((p) => p.metric)).flat();
    expect(new Set(metrics)).toEqual(new Set(['temperature', 'humidity', 'pressure', 'wind_speed', 'wind_direction']));
  });

  it('batches several readings spread over the interval when K is above one reading', () => {
    const source = new PointSource(createSensor('power', 1));
    const end = new Date(start.getTime() + 60_000);
    const points = source.next(24, end, 60_000);
    expect(points).toHaveLength(24);
    const times = [...new Set(points.map((p) => p.time!.getTime()))];
    expect(times).toHaveLength(4);
    expect(Math.max(...times)).toBe(end.getTime());
    expect(Math.min(...times)).toBe(end.getTime() - 45_000);
    for (const p of points) expect(p.numberValue ?? p.boolValue ?? p.stringValue).toBeDefined();
  });

  it('produces the same points for the same seed', () => {
    const a = new PointSource(createSensor('gps', 99)).next(14, start, 1000);
    const b = new PointSource(createSensor('gps', 99)).next(14, start, 1000);
    expect(a).toEqual(b);
  });
});
