import type { EventOf } from '../contracts/events.js'
import {
  CancelledError,
  ConfigError,
  DataError,
  DistributedError,
  NonFiniteError,
  OutOfMemoryError,
  RunFailedError,
  type RunFailure,
  StoryboardError,
  type TttVideoError,
  WeightsError,
  WeightsNotFoundError,
} from '../errors.js'

/** The typed error of a run's `error` event: the same class TS raises for the same problem itself. */
export function errorFromEvent(event: EventOf<'error'>, failure: RunFailure): TttVideoError {
  const details: RunFailure = {
    ...failure,
    pythonCode: event.code,
    ...(event.hint ? { hint: event.hint } : {}),
    ...(event.traceback ? { traceback: event.traceback } : {}),
  }
  const issues =
    event.issues && event.issues.length > 0 ? event.issues : [{ path: '', message: event.message }]
  switch (event.code) {
    case 'CONFIG':
      return new ConfigError(issues)
    case 'STORYBOARD':
      return new StoryboardError(issues)
    case 'DATA':
      return new DataError(issues)
    case 'WEIGHTS_MISSING':
      return new WeightsNotFoundError(event.message, details)
    case 'WEIGHTS':
      return new WeightsError(event.message, details)
    case 'OUT_OF_MEMORY':
      return new OutOfMemoryError(event.message, details)
    case 'NON_FINITE':
      return new NonFiniteError(event.message, details)
    case 'DISTRIBUTED':
      return new DistributedError(event.message, details)
    case 'CANCELLED':
      return new CancelledError(event.message, failure.runDir)
    default:
      return new RunFailedError(`${event.message}${event.traceback ? `\n${event.traceback}` : ''}`, details)
  }
}
