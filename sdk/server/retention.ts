import { TERMINAL_STATES } from './progress.js'
import type { JobRecord } from './store.js'

// Which ended jobs the server deletes on its own, so that the jobs directory does not only grow.

export interface Retention {
  /** Keep at most this many ended jobs, the most recently ended; undefined: no count limit. */
  keepJobs: number | undefined
  /** Delete ended jobs that ended more than this many days ago; undefined: no age limit. */
  keepDays: number | undefined
}

const DAY_MS = 86_400_000

/** When a job ended (its creation for a record without an end time, which only a crash leaves). */
const endedAt = (r: JobRecord) => Date.parse(r.finished_at ?? r.created_at)

/**
 * The ids of the ended jobs (succeeded, failed, cancelled, interrupted) that `retention` removes: those
 * beyond the newest `keepJobs`, and those that ended more than `keepDays` before `now`. Queued and
 * running jobs are never removed.
 */
export function jobsToRemove(records: readonly JobRecord[], retention: Retention, now: Date): string[] {
  const ended = records
    .filter((r) => TERMINAL_STATES.includes(r.state))
    .sort((a, b) => endedAt(b) - endedAt(a) || b.id.localeCompare(a.id))
  const cutoff = retention.keepDays === undefined ? -Infinity : now.getTime() - retention.keepDays * DAY_MS
  return ended
    .filter(
      (r, rank) => (retention.keepJobs !== undefined && rank >= retention.keepJobs) || endedAt(r) < cutoff,
    )
    .map((r) => r.id)
}
