import { View, parse } from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import type { Rate } from "./metrics.ts";

export interface ChartRow {
  contestant: string;
  metric: string;
  rate: Rate;
}

/**
 * The rates with their 95% intervals, one row per metric and one colour per contestant, drawn by
 * Vega-Lite and rendered to SVG headless (no browser, no canvas).
 */
export async function ratesChart(rows: readonly ChartRow[], title: string, subtitle: string): Promise<string> {
  const values = rows
    .filter((r) => r.rate.rate !== null)
    .map((r) => ({ contestant: r.contestant, metric: r.metric, rate: r.rate.rate, low: r.rate.ci95[0], high: r.rate.ci95[1], n: r.rate.n }));
  const spec: TopLevelSpec = {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: { text: title, subtitle },
    width: 480,
    data: { values },
    encoding: {
      y: { field: "metric", type: "nominal", title: null, sort: null },
      yOffset: { field: "contestant", type: "nominal", sort: null },
      color: { field: "contestant", type: "nominal", title: "contestant", sort: null },
    },
    layer: [
      {
        mark: { type: "rule", strokeWidth: 2 },
        encoding: {
          x: { field: "low", type: "quantitative", title: "rate (dot) with 95% Wilson interval (bar)", scale: { domain: [0, 1] }, axis: { format: "%" } },
          x2: { field: "high" },
        },
      },
      { mark: { type: "point", filled: true, size: 50 }, encoding: { x: { field: "rate", type: "quantitative" } } },
    ],
    config: { font: "sans-serif" },
  };
  const view = new View(parse(compile(spec).spec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
