import { doctor } from '../../python/doctor.js'
import { resolveVenvDir, venvExists } from '../../python/paths.js'
import { listPresets } from '../../runs/presets.js'
import type { components } from '../api.gen.js'
import { openapiDocument } from '../openapi.js'
import { DEMO_BUNDLE } from '../validate.js'
import { json, type Route, type RouteDeps } from './types.js'

// The routes about the service itself: its description, health, doctor report, presets and bundles.

type Schemas = components['schemas']

/** Whether jobs can run: the managed Python environment exists (doctor checks it in depth). */
export function runtimeStatus(venvDir: string | undefined): Schemas['RuntimeStatus'] {
  const venv = resolveVenvDir(venvDir)
  if (venvExists(venv)) return { ready: true, venv }
  return {
    ready: false,
    venv,
    problem: `no Python environment at ${venv}`,
    fix: `ttt-video setup${venvDir !== undefined ? ` --venv ${venvDir}` : ''}`,
  }
}

function health(deps: RouteDeps): Schemas['Health'] {
  const runtime = runtimeStatus(deps.venvDir)
  return {
    status: runtime.ready ? 'ok' : 'degraded',
    version: deps.version,
    uptime_seconds: Math.round((Date.now() - deps.startedAt) / 100) / 10,
    concurrency: deps.service.concurrency,
    jobs: deps.service.counts(),
    runtime,
  }
}

export function serviceRoutes(deps: RouteDeps): Route[] {
  return [
    { pattern: /^\/openapi\.json$/, methods: { GET: (ctx) => json(ctx, 200, openapiDocument) } },
    {
      pattern: /^\/v1\/health$/,
      methods: {
        GET: (ctx) => {
          const body = health(deps)
          json(ctx, body.status === 'ok' ? 200 : 503, body)
        },
      },
    },
    {
      pattern: /^\/v1\/doctor$/,
      methods: {
        GET: async (ctx) => {
          const options = deps.venvDir !== undefined ? { venvDir: deps.venvDir } : {}
          const report = await deps.bridge.run(() => doctor(options))
          json(ctx, 200, report satisfies Omit<Schemas['DoctorReport'], 'python'>)
        },
      },
    },
    {
      pattern: /^\/v1\/presets$/,
      methods: { GET: (ctx) => json(ctx, 200, { presets: listPresets() } satisfies Schemas['PresetList']) },
    },
    {
      pattern: /^\/v1\/bundles$/,
      methods: {
        GET: (ctx) =>
          json(ctx, 200, {
            default: deps.defaultBundle,
            bundles: Object.entries(deps.bundles).map(([name, path]) => ({
              name,
              demo: path === DEMO_BUNDLE,
            })),
          } satisfies Schemas['BundleList']),
      },
    },
  ]
}
