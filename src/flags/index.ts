export { FlagSet, type Flag, type FlagOptions, type FlagParseResult } from './flag-set.ts';
export {
  BoolFlagValue,
  DurationFlagValue,
  Float32FlagValue,
  GoUint64FlagValue,
  IntFlagValue,
  LabelSelectorFlagValue,
  StringFlagValue,
  StringSliceFlagValue,
  type FlagValue,
} from './flag-values.ts';
export {
  formatGoDurationMs,
  formatGoDurationNs,
  GoDurationError,
  parseGoDurationMs,
  parseGoDurationNs,
} from './go-duration.ts';
export { GoNumError, goQuote, parseGoBool, parseGoFloat32, parseGoInt, parseGoUint } from './go-strconv.ts';
export { parseGoUrlQuery, goQueryUnescape, type GoQueryResult } from './go-url-query.ts';
export { registerKlogFlags, UPSTREAM_DEFAULT_VERBOSITY, type KlogOptions, type VmodulePattern } from './klog-flags.ts';
export { LabelSelector, LabelSelectorError, type LabelOperator, type LabelRequirement } from './label-selector.ts';
export { OptionsError, type OptionsErrorKind } from './options-error.ts';
