/**
 * `RATE_LIMITS`: token buckets per client (the verified subject, else the client's IP) and per
 * route, e.g. `*=100/1s:200;meshwork.users.v1.UserService/Login=5/1m:5`: the key is a service
 * (`pkg.Service`), a method (`pkg.Service/Method`) or `*` (every route without its own rule);
 * the value is `<tokens>/<period>[:<burst>]` with the period in ms, s, m or h.
 */
export interface RateRule {
  key: string;
  /** Tokens added per second. */
  perSecond: number;
  /** Bucket size: the most calls at once. */
  burst: number;
  /** As written, for quota headers and the config dump. */
  text: string;
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

export function parseRateLimits(text: string): RateRule[] {
  const rules: RateRule[] = [];
  for (const part of text.split(";").map((p) => p.trim())) {
    if (!part) continue;
    const m = /^([*]|[A-Za-z_][\w.]*(?:\/\w+)?)\s*=\s*(\d+)\s*\/\s*(\d*)(ms|s|m|h)\s*(?::\s*(\d+))?$/.exec(
      part,
    );
    if (!m)
      throw new Error(
        `RATE_LIMITS: expected <route>=<tokens>/<period>[:<burst>], got ${JSON.stringify(part)}`,
      );
    const tokens = Number(m[2]);
    const periodMs = Number(m[3] || "1") * (UNIT_MS[m[4] as string] as number);
    const burst = m[5] === undefined ? tokens : Number(m[5]);
    if (tokens <= 0 || periodMs <= 0 || burst <= 0)
      throw new Error(`RATE_LIMITS: ${part}: every number must be positive`);
    rules.push({ key: m[1] as string, perSecond: (tokens * 1000) / periodMs, burst, text: part });
  }
  return rules;
}

interface Bucket {
  tokens: number;
  updated: number;
}

export type RateDecision =
  | { allowed: true; rule: RateRule | undefined; remaining: number }
  | { allowed: false; rule: RateRule; retryAfterS: number };

/** What the client is told past a rate limit (as RESOURCE_EXHAUSTED): a message and quota headers. */
export interface RateRefusal {
  message: string;
  headers: Record<string, string>;
}

/** The one refusal past a rate limit, whether the gateway forwards the call or answers it itself. */
export function rateRefusal(limit: { rule: RateRule; retryAfterS: number }): RateRefusal {
  const retryAfter = String(limit.retryAfterS);
  return {
    message: `rate limit ${limit.rule.text} exceeded; retry in ${retryAfter}s`,
    headers: {
      "retry-after": retryAfter,
      "x-ratelimit-limit": String(limit.rule.burst),
      "x-ratelimit-remaining": "0",
      "x-ratelimit-reset": retryAfter,
    },
  };
}

/** The most paths whose rule a {@link RateLimiter} remembers (a contract has fewer methods). */
export const RULE_CACHE_PATHS = 1024;

const UNLIMITED: RateDecision = { allowed: true, rule: undefined, remaining: Number.POSITIVE_INFINITY };

/**
 * `AUTH_RATE_LIMITS`' default: the public authentication methods, per client address, on unless
 * configured otherwise (an online guesser gets 30 tries a minute per address, and the users
 * service locks an account after a few failures on top of it).
 */
export const DEFAULT_AUTH_RATE_LIMITS =
  "meshwork.users.v1.UserService/Login=30/1m:30;" +
  "meshwork.users.v1.UserService/RegisterUser=10/1m:20;" +
  "meshwork.users.v1.UserService/CreateFirstAdmin=5/1m:5;" +
  // A legacy session traded for a mesh token: a credential check like Login.
  "meshwork.users.v1.UserService/ExchangeLegacyToken=30/1m:30";

/**
 * The buckets. Idle full buckets are dropped now and then, so memory follows active clients.
 *
 * Two sets of rules: the general ones (`RATE_LIMITS`, per verified subject else per address) and
 * the authentication ones (`AUTH_RATE_LIMITS`, method keys only), which always count per client
 * address. A method with an authentication rule is counted per address by the general rules too:
 * whatever token a Login carries (a fresh account's, say) must not buy a fresh bucket.
 */
export class RateLimiter {
  readonly rules: readonly RateRule[];
  readonly authRules: readonly RateRule[];
  readonly #byKey: Map<string, RateRule>;
  readonly #buckets = new Map<string, Bucket>();
  /**
   * The rule of each path looked up (null: none), the rules being fixed: a call looked its rule up
   * twice (its authentication rule, then the general one), each a slice, a split and up to three
   * lookups (ruleFor was 0.4% of the gateway's busy time in the bench, issue 23). Paths are the
   * client's choice: past {@link RULE_CACHE_PATHS} of them, the others are looked up each time.
   */
  readonly #ruleByPath = new Map<string, RateRule | null>();
  readonly #auth: RateLimiter | undefined;
  #sinceSweep = 0;

  constructor(rules: readonly RateRule[], authRules: readonly RateRule[] = []) {
    this.rules = rules;
    this.authRules = authRules;
    this.#byKey = new Map(rules.map((r) => [r.key, r]));
    for (const r of authRules) {
      if (!r.key.includes("/"))
        throw new Error(`AUTH_RATE_LIMITS: ${r.text}: name one method (pkg.Service/Method)`);
    }
    this.#auth = authRules.length > 0 ? new RateLimiter(authRules) : undefined;
  }

  /**
   * One call's admission: the authentication rule of its method (per address) first, then the
   * general rule, per `subject` unless the method has an authentication rule or no subject is
   * known, then per address.
   */
  takeForCall(
    path: string,
    subject: string | undefined,
    address: string,
    now = performance.now(),
  ): RateDecision {
    const byAddress = `ip:${address}`;
    const auth = this.#auth?.ruleFor(path) ? this.#auth.take(path, byAddress, now) : undefined;
    if (auth && !auth.allowed) return auth;
    const general = this.take(path, auth || subject === undefined ? byAddress : subject, now);
    if (!general.allowed || !auth) return general;
    return general.remaining <= auth.remaining ? general : auth;
  }

  /** The rule for a method path `/pkg.Service/Method`: the method's, else the service's, else `*`. */
  ruleFor(path: string): RateRule | undefined {
    const known = this.#ruleByPath.get(path);
    if (known !== undefined) return known ?? undefined;
    const method = path.slice(1);
    const rule =
      this.#byKey.get(method) ?? this.#byKey.get(method.split("/", 1)[0] ?? "") ?? this.#byKey.get("*");
    if (this.#ruleByPath.size < RULE_CACHE_PATHS) this.#ruleByPath.set(path, rule ?? null);
    return rule;
  }

  take(path: string, client: string, now = performance.now()): RateDecision {
    if (this.rules.length === 0) return UNLIMITED;
    const rule = this.ruleFor(path);
    if (!rule) return { allowed: true, rule: undefined, remaining: Number.POSITIVE_INFINITY };
    const key = `${rule.key}\u0000${client}`;
    let b = this.#buckets.get(key);
    if (!b) {
      b = { tokens: rule.burst, updated: now };
      this.#buckets.set(key, b);
      if (++this.#sinceSweep >= 1024) this.#sweep(now);
    } else {
      b.tokens = Math.min(rule.burst, b.tokens + ((now - b.updated) / 1000) * rule.perSecond);
      b.updated = now;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return { allowed: true, rule, remaining: Math.floor(b.tokens) };
    }
    return { allowed: false, rule, retryAfterS: Math.max(1, Math.ceil((1 - b.tokens) / rule.perSecond)) };
  }

  /** Buckets tracked now (for the admin page and tests). */
  get size(): number {
    return this.#buckets.size + (this.#auth?.size ?? 0);
  }

  #sweep(now: number) {
    this.#sinceSweep = 0;
    for (const [key, b] of this.#buckets) {
      const rule = this.#byKey.get(key.slice(0, key.indexOf("\u0000")));
      // Full again (it would start full if made anew): nothing to remember.
      if (!rule || b.tokens + ((now - b.updated) / 1000) * rule.perSecond >= rule.burst)
        this.#buckets.delete(key);
    }
  }
}
