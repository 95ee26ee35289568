import { Point } from '../../gen/ts/iot/telemetry/v1/telemetry';
import { Random } from './random';

/** The kinds of virtual device the simulator can be. */
export const PROFILE_NAMES = ['weather', 'power', 'gps'] as const;
export type ProfileName = (typeof PROFILE_NAMES)[number];

/** The device `type` registered for each profile. */
export const DEVICE_TYPES: Record<ProfileName, string> = {
  weather: 'weather-station',
  power: 'power-meter',
  gps: 'gps-tracker',
};

/** One reading of one metric. */
export interface Sample {
  metric: string;
  value: number | boolean | string;
}

/**
 * A device's sensor model: it keeps its own state (random walks, counters)
 * and yields one reading of every metric per call, at the given instant.
 * Instants must not go backwards.
 */
export interface SensorModel {
  readonly profile: ProfileName;
  readonly metrics: readonly string[];
  read(at: Date): Sample[];
}

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Local solar hour (0–24) at a longitude: the daily cycle follows the sun, not UTC. */
export function solarHour(at: Date, longitude: number): number {
  const hours = ((at.getTime() % DAY_MS) + DAY_MS) % DAY_MS / HOUR_MS + longitude / 15;
  return ((hours % 24) + 24) % 24;
}

/**
 * Weather station: temperature follows a daily cycle (coolest near 05:00,
 * warmest near 15:00 local solar time) plus correlated noise; relative
 * humidity moves against temperature; pressure wanders slowly; wind speed
 * is never negative and gusts; wind direction wanders around the compass.
 */
export class WeatherStation implements SensorModel {
  readonly profile = 'weather';
  readonly metrics = ['temperature', 'humidity', 'pressure', 'wind_speed', 'wind_direction'] as const;
  /** Mean temperature (°C) and half the daily swing, per device. */
  readonly meanTemperature: number;
  readonly dailySwing: number;
  readonly longitude: number;
  private temperatureNoise = 0;
  private pressure: number;
  private windSpeed: number;
  private windDirection: number;
  private last?: number;

  constructor(private readonly random: Random) {
    this.meanTemperature = random.between(5, 25);
    this.dailySwing = random.between(3, 8);
    this.longitude = random.between(-180, 180);
    this.pressure = random.gaussian(1013, 6);
    this.windSpeed = random.between(0, 6);
    this.windDirection = random.between(0, 360);
  }

  /** The noise-free temperature of the daily cycle at an instant. */
  cycleTemperature(at: Date): number {
    const hour = solarHour(at, this.longitude);
    return this.meanTemperature + this.dailySwing * Math.sin((2 * Math.PI * (hour - 9)) / 24);
  }

  read(at: Date): Sample[] {
    const r = this.random;
    const dtHours = this.last === undefined ? 1 / 60 : Math.max(0, at.getTime() - this.last) / HOUR_MS;
    this.last = at.getTime();
    // AR(1) noise that decays toward 0 within a couple of hours.
    const keep = Math.exp(-dtHours / 2);
    this.temperatureNoise = this.temperatureNoise * keep + r.gaussian(0, 0.4) * Math.sqrt(1 - keep * keep);
    const temperature = this.cycleTemperature(at) + this.temperatureNoise;
    const relative = (temperature - this.meanTemperature) / this.dailySwing;
    const humidity = clamp(60 - 25 * relative + r.gaussian(0, 2), 5, 100);
    this.pressure = clamp(this.pressure + r.gaussian(0, 0.5) * Math.sqrt(Math.min(dtHours, 24)) + (1013 - this.pressure) * 0.01, 950, 1060);
    this.windSpeed = clamp(this.windSpeed * 0.9 + r.gaussian(0.5, 1.2), 0, 60);
    const gust = r.next() < 0.05 ? r.between(3, 10) : 0;
    this.windDirection = (((this.windDirection + r.gaussian(0, 15)) % 360) + 360) % 360;
    return [
      { metric: 'temperature', value: round(temperature, 2) },
      { metric: 'humidity', value: round(humidity, 1) },
      { metric: 'pressure', value: round(this.pressure, 1) },
      { metric: 'wind_speed', value: round(this.windSpeed + gust, 2) },
      { metric: 'wind_direction', value: round(this.windDirection, 0) },
    ];
  }
}

/**
 * Power meter: mains voltage and frequency with small noise, a household
 * load with morning and evening peaks, power = V × I × power factor, and an
 * energy counter that integrates power and never decreases.
 */
export class PowerMeter implements SensorModel {
  readonly profile = 'power';
  readonly metrics = ['voltage', 'current', 'power', 'power_factor', 'energy', 'frequency'] as const;
  readonly nominalVoltage: number;
  readonly baseLoadW: number;
  /** kWh since the meter was installed. */
  energyKwh: number;
  private last?: number;

  constructor(private readonly random: Random) {
    this.nominalVoltage = random.next() < 0.8 ? 230 : 120;
    this.baseLoadW = random.between(150, 600);
    this.energyKwh = round(random.between(1000, 20000), 3);
  }

  /** Expected load (W) at a local hour: base plus morning and evening peaks. */
  loadAt(hour: number): number {
    const peak = (centre: number, width: number) => Math.exp(-(((hour - centre) / width) ** 2));
    return this.baseLoadW * (1 + 2.5 * peak(7.5, 1.5) + 4 * peak(19, 2.5));
  }

  read(at: Date): Sample[] {
    const r = this.random;
    const voltage = this.nominalVoltage * (1 + r.gaussian(0, 0.008));
    const powerFactor = clamp(r.gaussian(0.95, 0.02), 0.7, 1);
    const power = Math.max(0, this.loadAt(solarHour(at, 0)) * (1 + r.gaussian(0, 0.1)));
    const current = power / (voltage * powerFactor);
    if (this.last !== undefined) this.energyKwh += (power * Math.max(0, at.getTime() - this.last)) / HOUR_MS / 1000;
    this.last = at.getTime();
    return [
      { metric: 'voltage', value: round(voltage, 2) },
      { metric: 'current', value: round(current, 3) },
      { metric: 'power', value: round(power, 1) },
      { metric: 'power_factor', value: round(powerFactor, 3) },
      { metric: 'energy', value: round(this.energyKwh, 4) },
      { metric: 'frequency', value: round((this.nominalVoltage === 230 ? 50 : 60) + r.gaussian(0, 0.02), 3) },
    ];
  }
}

/**
 * GPS tracker: a vehicle that drives (speed and heading wander, turns now
 * and then) and stops; position follows speed and heading; the battery drains.
 * Emits a boolean `moving` and a string `fix` too, so every value kind of
 * the payload is exercised.
 */
export class GpsTracker implements SensorModel {
  readonly profile = 'gps';
  readonly metrics = ['latitude', 'longitude', 'speed', 'heading', 'battery', 'moving', 'fix'] as const;
  latitude: number;
  longitude: number;
  speedKmh: number;
  heading: number;
  battery: number;
  private last?: number;

  constructor(private readonly random: Random) {
    this.latitude = random.between(-60, 60);
    this.longitude = random.between(-180, 180);
    this.speedKmh = random.between(0, 80);
    this.heading = random.between(0, 360);
    this.battery = random.between(40, 100);
  }

  read(at: Date): Sample[] {
    const r = this.random;
    const dtS = this.last === undefined ? 1 : Math.max(0, at.getTime() - this.last) / 1000;
    this.last = at.getTime();
    if (r.next() < 0.02) this.speedKmh = this.speedKmh > 0 ? 0 : r.between(20, 60);
    else if (this.speedKmh > 0) this.speedKmh = clamp(this.speedKmh + r.gaussian(0, 3), 5, 130);
    if (r.next() < 0.05) this.heading += r.next() < 0.5 ? 90 : -90;
    this.heading = (((this.heading + r.gaussian(0, 5)) % 360) + 360) % 360;
    const distanceKm = (this.speedKmh * dtS) / 3600;
    const rad = (this.heading * Math.PI) / 180;
    this.latitude = clamp(this.latitude + (distanceKm * Math.cos(rad)) / 111.32, -89.9, 89.9);
    const kmPerDegreeLon = 111.32 * Math.max(0.01, Math.cos((this.latitude * Math.PI) / 180));
    this.longitude = ((this.longitude + (distanceKm * Math.sin(rad)) / kmPerDegreeLon + 540) % 360) - 180;
    this.battery = this.battery <= 5 ? 100 : this.battery - dtS * 0.0005;
    const fix = r.next() < 0.01 ? 'none' : r.next() < 0.1 ? '2d' : '3d';
    return [
      { metric: 'latitude', value: round(this.latitude, 6) },
      { metric: 'longitude', value: round(this.longitude, 6) },
      { metric: 'speed', value: round(this.speedKmh, 1) },
      { metric: 'heading', value: round(this.heading, 0) },
      { metric: 'battery', value: round(this.battery, 2) },
      { metric: 'moving', value: this.speedKmh > 0 },
      { metric: 'fix', value: fix },
    ];
  }
}

/** A new sensor model of a profile, seeded (same seed → same readings). */
export function createSensor(profile: ProfileName, seed: number): SensorModel {
  const random = new Random(seed);
  switch (profile) {
    case 'weather':
      return new WeatherStation(random);
    case 'power':
      return new PowerMeter(random);
    case 'gps':
      return new GpsTracker(random);
  }
}

/** A sample as a payload point. */
export function toPoint(sample: Sample, time: Date | undefined): Point {
  const point: Point = { metric: sample.metric, time };
  if (typeof sample.value === 'number') point.numberValue = sample.value;
  else if (typeof sample.value === 'boolean') point.boolValue = sample.value;
  else point.stringValue = sample.value;
  return point;
}

/**
 * Turns a sensor's readings into message points. A message of K points takes
 * them from successive full readings spread evenly over the span that ends
 * at the message's time — one reading is every metric once, so K above the
 * metric count batches several readings, as devices that buffer do; K below
 * it sends part of one reading, rotating so every metric gets its turn.
 */
export class PointSource {
  private offset = 0;

  constructor(readonly sensor: SensorModel) {}

  /** `count` points ending at `end`, spread over `spanMs`. */
  next(count: number, end: Date, spanMs: number): Point[] {
    const perReading = this.sensor.metrics.length;
    if (count < perReading) {
      const reading = this.sensor.read(end);
      const points: Point[] = [];
      for (let i = 0; i < count; i++) points.push(toPoint(reading[(this.offset + i) % perReading], end));
      this.offset = (this.offset + count) % perReading;
      return points;
    }
    const readings = Math.ceil(count / perReading);
    const points: Point[] = [];
    for (let i = 0; i < readings; i++) {
      const at = new Date(end.getTime() - Math.round((spanMs * (readings - 1 - i)) / readings));
      for (const sample of this.sensor.read(at)) {
        if (points.length === count) break;
        points.push(toPoint(sample, at));
      }
    }
    return points;
  }
}
