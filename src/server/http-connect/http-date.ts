/**
 * HTTP-date in the IMF-fixdate form Go's server writes in its Date header
 * (http.TimeFormat, "Mon, 02 Jan 2006 15:04:05 GMT"), at whole seconds.
 */
export function formatHttpDate(date: Date): string {
  // toUTCString is specified (ECMA-262 Date.prototype.toUTCString) to produce exactly this form.
  return date.toUTCString();
}
