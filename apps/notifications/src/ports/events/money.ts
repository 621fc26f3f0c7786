/** One formatter per currency: building an Intl.NumberFormat costs far more than using one. */
const formats = new Map<string, { format: Intl.NumberFormat; digits: number }>();

/** An amount in minor units, written for people in its currency (JPY has no minor unit, EUR two). */
export function formatMoney(amountMinor: bigint, currency: string): string {
  let f = formats.get(currency);
  if (!f) {
    const format = new Intl.NumberFormat("en", { style: "currency", currency });
    f = { format, digits: format.resolvedOptions().maximumFractionDigits ?? 2 };
    formats.set(currency, f);
  }
  return f.format.format(Number(amountMinor) / 10 ** f.digits);
}
