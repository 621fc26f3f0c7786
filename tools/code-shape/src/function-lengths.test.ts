import { describe, expect, it } from "vitest";
import { ALLOWED_LONG_FUNCTIONS } from "./allowed.js";
import {
  formatLengths,
  MAX_FUNCTION_LINES,
  measureRepository,
  measureSource,
  overTheBar,
} from "./function-lengths.js";
import { repositoryRoot } from "./paths.js";

const body = (lines: number) => Array.from({ length: lines }, (_, i) => `  const v${i} = ${i};`).join("\n");

describe("measureSource", () => {
  it("names declarations, variables, methods, properties and nested functions, and counts their lines", () => {
    const source = [
      "export function createThing(): { run(): void } {", // 1
      "  const helper = (x: number): number => {", // 2
      "    return x + 1;", // 3
      "  };", // 4
      "  return {", // 5
      "    run() {", // 6
      "      helper(1);", // 7
      "    },", // 8
      "  };", // 9
      "}", // 10
      "class Store<T> {", // 11
      "  #open = async (): Promise<void> => {};", // 12
      "  read(id: string): T | undefined {", // 13
      "    return [id].map(function pick(x) { return x; }) as never;", // 14
      "  }", // 15
      "}", // 16
      "const e = 'é'; setTimeout(() => {", // 17: a non-ASCII character before the arrow
      "  void e;", // 18
      "}, 1);", // 19
    ].join("\n");
    const found = measureSource("x.ts", source).map(({ name, line, lines }) => ({ name, line, lines }));
    expect(found).toEqual([
      { name: "createThing", line: 1, lines: 10 },
      { name: "createThing > helper", line: 2, lines: 3 },
      { name: "createThing > run", line: 6, lines: 3 },
      { name: "Store.#open", line: 12, lines: 1 },
      { name: "Store.read", line: 13, lines: 3 },
      { name: "Store.read > pick", line: 14, lines: 1 },
      { name: "setTimeout(...) callback", line: 17, lines: 3 },
    ]);
  });

  it("refuses a file it cannot parse, naming it", () => {
    expect(() => measureSource("broken.ts", "function (")).toThrow(/broken\.ts: cannot parse/);
  });
});

describe("overTheBar", () => {
  const source = `function long() {\n${body(MAX_FUNCTION_LINES)}\n}\nfunction short() {\n${body(MAX_FUNCTION_LINES - 2)}\n}`;
  const found = measureSource("a.ts", source);

  it("lists a function longer than the bar and not one that just fits", () => {
    expect(found.map((fn) => [fn.name, fn.lines])).toEqual([
      ["long", MAX_FUNCTION_LINES + 2],
      ["short", MAX_FUNCTION_LINES],
    ]);
    expect(overTheBar(found, []).map((fn) => fn.name)).toEqual(["long"]);
  });

  it("leaves out what the allow-list names, by file and name", () => {
    expect(overTheBar(found, [{ file: "a.ts", name: "long", reason: "generated" }])).toEqual([]);
    expect(overTheBar(found, [{ file: "b.ts", name: "long", reason: "generated" }])).toHaveLength(1);
  });
});

describe("the repository", () => {
  const all = measureRepository(repositoryRoot);

  it("reads the apps' and libs' sources, not tests or generated code", () => {
    const files = new Set(all.map((fn) => fn.file));
    expect([...files].some((file) => file.startsWith("libs/runtime/src/"))).toBe(true);
    expect([...files].some((file) => file.startsWith("apps/gateway/src/"))).toBe(true);
    expect([...files].filter((file) => /\.test\.ts$|\/gen\/|^tools\//.test(file))).toEqual([]);
  });

  it(`has no function over ${MAX_FUNCTION_LINES} lines in apps/*/src and libs/*/src beyond the allow-list`, () => {
    const failing = overTheBar(all, ALLOWED_LONG_FUNCTIONS);
    expect(
      failing,
      `split these (or, if they truly cannot be, allow them with a reason):\n${formatLengths(failing)}`,
    ).toEqual([]);
  });

  it("has no stale allow-list entry (each names a function still over the bar, with a reason)", () => {
    const stale = ALLOWED_LONG_FUNCTIONS.filter(
      (entry) =>
        entry.reason.trim() === "" ||
        !all.some((fn) => fn.file === entry.file && fn.name === entry.name && fn.lines > MAX_FUNCTION_LINES),
    );
    expect(stale, "remove these entries: the function is gone, renamed or short enough now").toEqual([]);
  });
});
