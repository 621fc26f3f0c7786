import { type Attributes, type HrTime, ValueType } from "@opentelemetry/api";
import { hrTime } from "@opentelemetry/core";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  AggregationTemporality,
  type CollectionResult,
  DataPointType,
  type HistogramMetricData,
  type MetricData,
  type MetricProducer,
  type SumMetricData,
} from "@opentelemetry/sdk-metrics";

export interface BoundHistogramOptions {
  description: string;
  unit: string;
  /** Inclusive upper bounds of the finite buckets, ascending. */
  boundaries: readonly number[];
}

/**
 * A histogram for hot paths, exported as an ordinary OpenTelemetry histogram (cumulative) by the
 * same readers as the meter's instruments. The SDK's `Histogram.record` hashes its attribute set
 * on every call; here the caller binds an attribute set once and records with a bucket
 * increment, which is what a per-call RPC duration needs.
 */
export interface BoundHistogram {
  /** A recorder for one attribute set; keep it (the set is not copied and must not change). */
  bind(attributes: Attributes): (value: number) => void;
}

interface Series {
  attributes: Attributes;
  counts: number[];
  count: number;
  sum: number;
  min: number;
  max: number;
}

interface Instrument {
  name: string;
  options: BoundHistogramOptions;
  boundaries: number[];
  startTime: HrTime;
  series: Series[];
}

/** A monotonic counter for hot paths, bound to attribute sets the same way. */
export interface BoundCounter {
  /** An adder for one attribute set; keep it (the set is not copied and must not change). */
  bind(attributes: Attributes): (n?: number) => void;
}

interface CounterInstrument {
  name: string;
  description: string;
  startTime: HrTime;
  series: Array<{ attributes: Attributes; value: number }>;
}

/** The producer behind {@link BoundHistogram}s and {@link BoundCounter}s: give it to the readers. */
export class BoundHistogramProducer implements MetricProducer {
  readonly #instruments: Instrument[] = [];
  readonly #counters: CounterInstrument[] = [];
  readonly #scope: { name: string; version?: string };

  constructor(scope: { name: string; version?: string }) {
    this.#scope = scope;
  }

  create(name: string, options: BoundHistogramOptions): BoundHistogram {
    const boundaries = [...options.boundaries];
    for (let i = 1; i < boundaries.length; i++) {
      if (!((boundaries[i] as number) > (boundaries[i - 1] as number))) {
        throw new Error(`histogram ${name}: boundaries must ascend`);
      }
    }
    const instrument: Instrument = { name, options, boundaries, startTime: hrTime(), series: [] };
    this.#instruments.push(instrument);
    return {
      bind(attributes) {
        const s: Series = {
          attributes,
          counts: new Array<number>(boundaries.length + 1).fill(0),
          count: 0,
          sum: 0,
          min: Number.POSITIVE_INFINITY,
          max: Number.NEGATIVE_INFINITY,
        };
        instrument.series.push(s);
        const last = boundaries.length;
        return (value) => {
          let i = 0;
          while (i < last && value > (boundaries[i] as number)) i++;
          (s.counts[i] as number)++;
          s.count++;
          s.sum += value;
          if (value < s.min) s.min = value;
          if (value > s.max) s.max = value;
        };
      },
    };
  }

  createCounter(name: string, description: string): BoundCounter {
    const instrument: CounterInstrument = { name, description, startTime: hrTime(), series: [] };
    this.#counters.push(instrument);
    return {
      bind(attributes) {
        const s = { attributes, value: 0 };
        instrument.series.push(s);
        return (n = 1) => {
          s.value += n;
        };
      },
    };
  }

  async collect(): Promise<CollectionResult> {
    const endTime = hrTime();
    const counters: SumMetricData[] = this.#counters.map((c) => ({
      descriptor: { name: c.name, description: c.description, unit: "", valueType: ValueType.INT },
      aggregationTemporality: AggregationTemporality.CUMULATIVE,
      dataPointType: DataPointType.SUM,
      isMonotonic: true,
      dataPoints: c.series
        .filter((s) => s.value > 0)
        .map((s) => ({ attributes: s.attributes, startTime: c.startTime, endTime, value: s.value })),
    }));
    const histograms: HistogramMetricData[] = this.#instruments.map((inst) => ({
      descriptor: {
        name: inst.name,
        description: inst.options.description,
        unit: inst.options.unit,
        valueType: ValueType.DOUBLE,
      },
      aggregationTemporality: AggregationTemporality.CUMULATIVE,
      dataPointType: DataPointType.HISTOGRAM,
      dataPoints: inst.series
        .filter((s) => s.count > 0)
        .map((s) => ({
          attributes: s.attributes,
          startTime: inst.startTime,
          endTime,
          value: {
            buckets: { boundaries: inst.boundaries, counts: [...s.counts] },
            count: s.count,
            sum: s.sum,
            min: s.min,
            max: s.max,
          },
        })),
    }));
    return {
      // The reader keeps its own resource and takes only the scope metrics from here.
      resourceMetrics: {
        resource: resourceFromAttributes({}),
        scopeMetrics: [{ scope: this.#scope, metrics: [...counters, ...histograms] as MetricData[] }],
      },
      errors: [],
    };
  }
}
