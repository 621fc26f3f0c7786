import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { parseSync } from "oxc-parser";

/** One function, method or arrow body found in a source file, with the lines it spans. */
export interface FunctionLength {
  /** Path relative to the repository root, with forward slashes. */
  file: string;
  /** A name a reader can find: `createX`, `Class.method`, `createX > inner`, `<arrow>` when it has none. */
  name: string;
  /** First line (1-based). */
  line: number;
  /** Lines from the line of its first character to the line of its last, inclusive. */
  lines: number;
}

/** The house bar (`STYLE.md`): a function that does not fit on a screen wants to be split. */
export const MAX_FUNCTION_LINES = 80;

const FUNCTION_TYPES = new Set(["FunctionDeclaration", "FunctionExpression", "ArrowFunctionExpression"]);

interface AstNode {
  type: string;
  start: number;
  end: number;
  [key: string]: unknown;
}

function isNode(value: unknown): value is AstNode {
  return typeof value === "object" && value !== null && typeof (value as AstNode).type === "string";
}

function keyName(key: unknown): string | undefined {
  if (!isNode(key)) return undefined;
  if (key.type === "Identifier") return String(key.name);
  if (key.type === "PrivateIdentifier") return `#${String(key.name)}`;
  if (key.type === "Literal") return String(key.value);
  return undefined;
}

/** The name a function gets from where it stands: its declaration, variable, property or method. */
function ownName(
  fn: AstNode,
  parent: AstNode | undefined,
  className: string | undefined,
): string | undefined {
  const id = keyName(fn.id);
  if (id) return id;
  if (!parent) return undefined;
  switch (parent.type) {
    case "VariableDeclarator":
      return keyName(parent.id);
    case "MethodDefinition":
    case "PropertyDefinition": {
      const name = keyName(parent.key);
      return className && name ? `${className}.${name}` : name;
    }
    case "Property":
      return keyName(parent.key);
    case "AssignmentExpression": {
      const left = parent.left;
      if (isNode(left) && left.type === "MemberExpression") return keyName(left.property);
      return keyName(left);
    }
    case "CallExpression": {
      const callee = parent.callee;
      const called =
        isNode(callee) && callee.type === "MemberExpression" ? keyName(callee.property) : keyName(callee);
      return called ? `${called}(...) callback` : undefined;
    }
    default:
      return undefined;
  }
}

function lineStarts(source: string): number[] {
  const starts = [0];
  for (let i = 0; i < source.length; i++) if (source.charCodeAt(i) === 10) starts.push(i + 1);
  return starts;
}

function lineOf(starts: number[], offset: number): number {
  let low = 0;
  let high = starts.length - 1;
  while (low < high) {
    const mid = (low + high + 1) >> 1;
    if ((starts[mid] ?? 0) <= offset) low = mid;
    else high = mid - 1;
  }
  return low + 1;
}

/** Every function, method and arrow body of one TypeScript source text, nested ones included. */
export function measureSource(file: string, source: string): FunctionLength[] {
  const parsed = parseSync(file, source, { lang: file.endsWith(".tsx") ? "tsx" : "ts" });
  const fatal = parsed.errors.find((error) => error.severity === "Error");
  if (fatal) throw new Error(`${file}: cannot parse: ${fatal.message}`);
  const starts = lineStarts(source);
  const found: FunctionLength[] = [];

  const visit = (node: AstNode, parent: AstNode | undefined, outer: string[], className?: string): void => {
    let path = outer;
    let currentClass = className;
    if (node.type === "ClassDeclaration" || node.type === "ClassExpression") {
      currentClass =
        keyName(node.id) ?? (parent?.type === "VariableDeclarator" ? keyName(parent.id) : undefined);
    }
    if (FUNCTION_TYPES.has(node.type)) {
      const name = ownName(node, parent, currentClass) ?? "<anonymous>";
      path = [...outer, name];
      const line = lineOf(starts, node.start);
      found.push({ file, name: path.join(" > "), line, lines: lineOf(starts, node.end - 1) - line + 1 });
    }
    for (const key of Object.keys(node)) {
      if (key === "type" || key === "start" || key === "end") continue;
      const child = node[key];
      if (Array.isArray(child)) {
        for (const item of child) if (isNode(item)) visit(item, node, path, currentClass);
      } else if (isNode(child)) {
        visit(child, node, path, currentClass);
      }
    }
  };
  visit(parsed.program as unknown as AstNode, undefined, []);
  return found;
}

function sourceFiles(directory: string): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(directory)) {
    if (entry === "node_modules" || entry === "gen") continue;
    const path = join(directory, entry);
    if (statSync(path).isDirectory()) files.push(...sourceFiles(path));
    else if (/\.tsx?$/.test(entry) && !/\.test\.tsx?$/.test(entry) && !entry.endsWith(".d.ts"))
      files.push(path);
  }
  return files;
}

/**
 * The source files the bar applies to: `apps/<name>/src` and `libs/<name>/src`, without tests,
 * declaration files and generated code (`src/gen`, protobuf-es output).
 */
export function checkedFiles(root: string): string[] {
  const files: string[] = [];
  for (const top of ["apps", "libs"]) {
    for (const pkg of readdirSync(join(root, top)).sort()) {
      const src = join(root, top, pkg, "src");
      try {
        if (!statSync(src).isDirectory()) continue;
      } catch {
        continue;
      }
      files.push(...sourceFiles(src));
    }
  }
  return files.sort();
}

/** Every function in the checked files, longest first. */
export function measureRepository(root: string): FunctionLength[] {
  const all = checkedFiles(root).flatMap((path) =>
    measureSource(relative(root, path).split("\\").join("/"), readFileSync(path, "utf8")),
  );
  return all.sort((a, b) => b.lines - a.lines || a.file.localeCompare(b.file) || a.line - b.line);
}

/** `file` and function `name` of a function allowed over the bar, with the reason it may be. */
export interface AllowedLongFunction {
  file: string;
  name: string;
  reason: string;
}

/** The functions over the bar that are not on the allow-list (the list is matched by file and name). */
export function overTheBar(
  functions: FunctionLength[],
  allowed: readonly AllowedLongFunction[],
  max = MAX_FUNCTION_LINES,
): FunctionLength[] {
  return functions.filter(
    (fn) => fn.lines > max && !allowed.some((entry) => entry.file === fn.file && entry.name === fn.name),
  );
}

/** One line per function: `lines  file:line  name`. */
export function formatLengths(functions: FunctionLength[]): string {
  return functions
    .map((fn) => `${String(fn.lines).padStart(5)}  ${fn.file}:${fn.line}  ${fn.name}`)
    .join("\n");
}
