import { parser } from "@prometheus-io/lezer-promql";

/**
 * The metric names a PromQL expression selects (`rate(x_total[5m]) / y` gives x_total and y),
 * read from the syntax tree of Prometheus's own PromQL grammar: label names, function names and
 * aggregation labels are not metric names, and a regex cannot tell them apart.
 */
export function metricNames(expr: string): string[] {
  const names = new Set<string>();
  parser.parse(expr).iterate({
    enter(node) {
      if (node.name === "Identifier" && node.node.parent?.name === "VectorSelector") {
        names.add(expr.slice(node.from, node.to));
      }
    },
  });
  return [...names];
}

/** Where the grammar failed to parse `expr` (empty when it parses). */
export function syntaxErrors(expr: string): Array<{ at: number; near: string }> {
  const errors: Array<{ at: number; near: string }> = [];
  parser.parse(expr).iterate({
    enter(node) {
      if (node.type.isError) errors.push({ at: node.from, near: expr.slice(node.from, node.from + 20) });
    },
  });
  return errors;
}

/**
 * Grafana's variables replaced with values Prometheus accepts, so a panel's query can be parsed
 * and run as written: `$__rate_interval`, `$__interval` and `$__range` become durations, every
 * other `$var` (a multi-value label variable) the regex `.+`.
 */
export function expandGrafanaVariables(
  expr: string,
  durations: { rate?: string; range?: string } = {},
): string {
  return expr
    .replace(/\$__rate_interval\b/g, durations.rate ?? "1m")
    .replace(/\$__interval\b/g, durations.rate ?? "1m")
    .replace(/\$__range\b/g, durations.range ?? "1h")
    .replace(/\$\{?[A-Za-z_][A-Za-z0-9_]*\}?/g, ".+");
}
